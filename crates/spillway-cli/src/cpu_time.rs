//! The CPU time this process has used, split into user and kernel time, so that a series can
//! show when the kernel, not the jobs, takes the cores (page faults of memory never touched
//! before stall a whole pool on some machines).

use std::time::Duration;

/// The kernel's unit for the two times in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux
/// architecture that spillway builds for).
const TICKS_PER_S: f64 = 100.0;

/// CPU time used since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuTime {
    /// Time spent running the process's own code.
    pub user: Duration,
    /// Time the kernel spent on the process's behalf (system calls, page faults).
    pub system: Duration,
}

impl CpuTime {
    /// This process's CPU time now; `None` where `/proc` does not tell (not Linux).
    pub(crate) fn of_self() -> Option<CpuTime> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        parse_stat(&stat)
    }

    /// The time used between `earlier` and `self`, as (user, system) seconds.
    pub(crate) fn since(self, earlier: CpuTime) -> (f64, f64) {
        (
            self.user.saturating_sub(earlier.user).as_secs_f64(),
            self.system.saturating_sub(earlier.system).as_secs_f64(),
        )
    }
}

/// The user and system times of a `/proc/<pid>/stat` line (fields 14 and 15, counted after the
/// command name, which may itself hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<CpuTime> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = || -> Option<Duration> {
        let n: u64 = fields.next()?.parse().ok()?;
        Some(Duration::from_secs_f64(n as f64 / TICKS_PER_S))
    };
    let user = ticks()?;
    let system = ticks()?;
    Some(CpuTime { user, system })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_times_are_read_after_the_command_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1519 0 0 0 250 37 0 0 20 0 6 0 \
                    1234 8446672 3300 18446744073709551615";
        let t = parse_stat(line).expect("a stat line");
        assert_eq!(t.user, Duration::from_millis(2500));
        assert_eq!(t.system, Duration::from_millis(370));
    }

    #[test]
    fn a_truncated_line_has_no_reading() {
        assert_eq!(parse_stat("4242 (spillway) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn busy_work_shows_as_cpu_time() {
        let Some(before) = CpuTime::of_self() else {
            return; // not Linux: nothing to read
        };
        // Spin until 20 ms of CPU show (two of the kernel's ticks), however loaded the machine;
        // a reading that never moves fails after 10 s of wall time.
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        let mut spins = 0u64;
        loop {
            for _ in 0..100_000 {
                spins = std::hint::black_box(spins + 1);
            }
            let (user, system) = CpuTime::of_self().expect("read again").since(before);
            if user + system >= 0.02 {
                break;
            }
            let busy_for_long = std::time::Instant::now() >= give_up;
            assert!(
                !busy_for_long,
                "no CPU time after 10 s busy: {user} + {system} s"
            );
        }
    }
}
