//! The child-process protocol of `simulate` and `load`. The parent runs this program again as
//! `spillway child <task>` and writes the task's settings, already parsed and checked, to the
//! child's stdin as one JSON document; the child streams its results back as JSON lines on
//! stdout. Durations cross as exact seconds and nanoseconds, never re-rendered as flags.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Which subcommand a child process works for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChildOf {
    /// One mode, or the calibration, of `simulate`.
    Simulate,
    /// One share of a `load` run.
    Load,
}

impl ChildOf {
    fn as_str(self) -> &'static str {
        match self {
            ChildOf::Simulate => "simulate",
            ChildOf::Load => "load",
        }
    }
}

/// The allocator settings every child gets unless the user set the variable: mimalloc, the
/// global allocator, reads them from the environment when the process starts.
///
/// * `MIMALLOC_PURGE_DELAY=10000`: freed memory stays committed 10 s (jemalloc's default decay)
///   rather than mimalloc's 1 s. With 1 s a mode returned 100-350 MiB to the OS about once a
///   second as the number of jobs in flight dipped, and faulted it in again when it rose
///   (session 5: kernel CPU of the adaptive step and spike runs 1.3-4.5 s with 4-6 such
///   returns, 1.3-1.8 s with 0-1; loaded machine).
/// * `MIMALLOC_ALLOW_THP=0`: no transparent huge pages. The test VM reports free memory to its
///   host (`page_reporting`), so a 2 MiB huge page is usually memory the host must back anew:
///   `perf` put 21% of a slowdown run in `clear_page_erms` under `folio_zero_user`, at 16-20 us
///   of kernel CPU per 4 KiB grown, against 7-10 us without huge pages (kernel CPU of the run
///   4.1-4.4 s against 2.0-2.3 s, session 5, quiet machine).
const ALLOCATOR_DEFAULTS: [(&str, &str); 2] = [
    ("MIMALLOC_PURGE_DELAY", "10000"),
    ("MIMALLOC_ALLOW_THP", "0"),
];

/// The allocator settings to hand a child: ours, except those the user set.
fn allocator_env(
    is_set: impl Fn(&str) -> bool,
) -> impl Iterator<Item = (&'static str, &'static str)> {
    ALLOCATOR_DEFAULTS
        .into_iter()
        .filter(move |(var, _)| !is_set(var))
}

/// A running child, and the lines it printed so far.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// What [`ChildProcess::next`] saw.
#[derive(Debug)]
pub(crate) enum Next<T> {
    /// One line of results.
    Line(T),
    /// Nothing within the wait.
    Quiet,
    /// The child closed its stdout: it has ended.
    Ended,
}

impl ChildProcess {
    /// Starts `spillway child <of>` and hands it `settings`.
    ///
    /// # Errors
    ///
    /// When this program cannot be found or started, or does not take its settings.
    pub(crate) fn spawn<S: Serialize>(of: ChildOf, settings: &S) -> anyhow::Result<ChildProcess> {
        let exe = std::env::current_exe().context("cannot find this program to re-run it")?;
        let mut child = Command::new(&exe)
            .envs(allocator_env(|var| std::env::var_os(var).is_some()))
            .args(["child", of.as_str()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let handed = hand_settings(&mut child, settings);
        let stdout = child.stdout.take().context("the child's stdout")?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        let (tx, lines) = mpsc::channel();
        let mut process = ChildProcess {
            child,
            lines,
            stdout: Some(std::thread::spawn(move || forward_lines(stdout, &tx))),
            stderr: Some(std::thread::spawn(move || read_all(stderr))),
        };
        if let Err(err) = handed {
            let stderr = process.kill();
            bail!("cannot hand the child its settings: {err} {stderr}");
        }
        Ok(process)
    }

    /// The child's process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next line of results, waiting at most `wait` for it.
    ///
    /// # Errors
    ///
    /// A line that is not the JSON of a `T`.
    pub(crate) fn next<T: DeserializeOwned>(&self, wait: Duration) -> anyhow::Result<Next<T>> {
        match self.lines.recv_timeout(wait) {
            Ok(line) => serde_json::from_str(&line)
                .map(Next::Line)
                .with_context(|| format!("the child printed an unexpected line: {line}")),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(Next::Quiet),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(Next::Ended),
        }
    }

    /// Every line of results until the child ends; the last one.
    ///
    /// # Errors
    ///
    /// An unexpected line, or a child that printed none.
    pub(crate) fn last<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        let mut last = None;
        loop {
            match self.next(Duration::from_secs(1))? {
                Next::Line(line) => last = Some(line),
                Next::Quiet => {}
                Next::Ended => return last.context("the child printed no result"),
            }
        }
    }

    /// Waits for the child to exit.
    ///
    /// # Errors
    ///
    /// A child that failed: its status and what it wrote on stderr.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        let status = self
            .child
            .wait()
            .context("the child could not be waited for")?;
        let stderr = self.join_readers();
        if !status.success() {
            bail!("{status}: {}", stderr.trim());
        }
        if !stderr.trim().is_empty() {
            eprint!("{stderr}");
        }
        Ok(())
    }

    /// Kills the child; returns what it wrote on stderr.
    pub(crate) fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_readers()
    }

    fn join_readers(&mut self) -> String {
        if let Some(stdout) = self.stdout.take() {
            let _ = stdout.join();
        }
        self.stderr
            .take()
            .and_then(|stderr| stderr.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.stdout.is_some() {
            self.kill();
        }
    }
}

fn hand_settings<S: Serialize>(child: &mut Child, settings: &S) -> anyhow::Result<()> {
    let mut stdin = child.stdin.take().context("the child's stdin")?;
    serde_json::to_writer(&mut stdin, settings)?;
    stdin.flush()?;
    // Dropping stdin closes it: the child reads to its end.
    Ok(())
}

fn forward_lines(stdout: impl Read, tx: &mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if tx.send(line).is_err() {
            break;
        }
    }
}

fn read_all(mut stderr: impl Read) -> String {
    let mut text = String::new();
    let _ = stderr.read_to_string(&mut text);
    text
}

/// In the child: the settings the parent handed over on stdin.
///
/// # Errors
///
/// When stdin does not hold the JSON of an `S`.
pub(crate) fn settings<S: DeserializeOwned>() -> anyhow::Result<S> {
    serde_json::from_reader(std::io::stdin().lock())
        .context("a child process reads its settings as JSON on stdin")
}

/// In the child: prints one line of results for the parent.
///
/// # Errors
///
/// When stdout is closed.
pub(crate) fn emit<T: Serialize>(line: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, line)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_freed_memory_and_small_pages_unless_the_user_chose_otherwise() {
        let all: Vec<_> = allocator_env(|_| false).collect();
        assert_eq!(
            all,
            [
                ("MIMALLOC_PURGE_DELAY", "10000"),
                ("MIMALLOC_ALLOW_THP", "0")
            ]
        );
        let kept: Vec<_> = allocator_env(|var| var == "MIMALLOC_PURGE_DELAY").collect();
        assert_eq!(kept, [("MIMALLOC_ALLOW_THP", "0")]);
    }
}
