//! Resident memory of a process and the machine's total memory, read through `sysinfo` so that
//! they are known on Linux, macOS, Windows and the BSDs alike.

use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

/// Reads the resident memory of one process, again and again.
#[derive(Debug)]
pub(crate) struct Rss {
    system: System,
    pid: Pid,
}

impl Rss {
    /// The reader for this process.
    pub(crate) fn of_self() -> Rss {
        Rss::of(std::process::id())
    }

    /// The reader for process `pid`.
    pub(crate) fn of(pid: u32) -> Rss {
        Rss {
            system: System::new(),
            pid: Pid::from_u32(pid),
        }
    }

    /// The process's resident memory now, in bytes; `None` where it cannot be read (the
    /// platform does not tell, or the process is gone).
    pub(crate) fn read(&mut self) -> Option<u64> {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        let bytes = self.system.process(self.pid)?.memory();
        (bytes > 0).then_some(bytes)
    }
}

/// The machine's total memory in bytes, if known.
pub(crate) fn total_ram() -> Option<u64> {
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let bytes = system.total_memory();
    (bytes > 0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_the_machine_have_a_memory_reading() {
        let mut rss = Rss::of_self();
        let first = rss.read().expect("this process's RSS");
        let held = vec![1u8; 32 << 20];
        std::hint::black_box(&held);
        let second = rss.read().expect("read again");
        assert!(second >= first, "{first} then {second}");
        let ram = total_ram().expect("total RAM");
        assert!(ram > second, "{ram} <= {second}");
    }

    #[test]
    fn a_process_that_does_not_exist_has_no_reading() {
        assert_eq!(Rss::of(u32::MAX - 7).read(), None);
    }
}
