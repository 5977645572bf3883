//! A child process that cannot outlive its test.

/// A child process killed if a test fails before it ends, so no server outlives its test.
pub(crate) struct Reaper(pub(crate) std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaper {
    /// Waits for the child to exit, at most `limit`.
    ///
    /// # Panics
    ///
    /// When the child is still running at `limit`.
    pub(crate) fn wait_at_most(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("the child can be waited for") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child did not exit in {limit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends the child `signal` (e.g. `"TERM"`) with `kill`.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} failed");
    }
}

/// Which of a child's output streams [`serve_on_a_free_port`] reads its address from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announced {
    /// `serve`'s own line on stdout.
    OnStdout,
    /// The same line on stderr, where `serve` says it when its stdout is closed; its stdout is
    /// a pipe closed before it starts.
    OnStderrWithStdoutClosed,
}

/// Starts `command` (a `spillway serve` given `--addr 127.0.0.1:0`, so the kernel picks the
/// port and no other process can take it in between) and waits for the address it says it
/// listens on. The stream read is drained until the child ends, so its later lines never
/// block it.
///
/// # Panics
///
/// When the child exits, or says nothing, within [`super::PATIENCE`].
pub(crate) fn serve_on_a_free_port(
    mut command: std::process::Command,
    announced: Announced,
) -> (Reaper, String) {
    use std::io::BufRead;
    use std::process::Stdio;
    let (stdout, stderr) = match announced {
        Announced::OnStdout => (Stdio::piped(), Stdio::null()),
        Announced::OnStderrWithStdoutClosed => {
            // A pipe whose read end is closed before the child starts: every write to its
            // stdout fails, its first line included.
            let (reader, writer) = std::io::pipe().expect("a pipe");
            drop(reader);
            (Stdio::from(writer), Stdio::piped())
        }
    };
    let mut child = Reaper(
        command
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the child starts"),
    );
    let read: Box<dyn std::io::Read + Send> = match announced {
        Announced::OnStdout => Box::new(child.0.stdout.take().expect("piped")),
        Announced::OnStderrWithStdoutClosed => Box::new(child.0.stderr.take().expect("piped")),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(read).lines().map_while(Result::ok);
        let addr = lines.by_ref().find_map(|line| announced_addr(&line));
        let _ = tx.send(addr);
        lines.for_each(drop);
    });
    match rx.recv_timeout(super::PATIENCE) {
        Ok(Some(addr)) => (child, addr),
        Ok(None) => panic!(
            "the child ended its output without saying where it listens: {:?}",
            child.0.wait()
        ),
        Err(_) => panic!(
            "the child did not say where it listens in {:?}",
            super::PATIENCE
        ),
    }
}

/// The address in `serve`'s line "spillway serve: listening on http://ADDR ...".
fn announced_addr(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on http://")?;
    rest.split_whitespace().next().map(str::to_string)
}
