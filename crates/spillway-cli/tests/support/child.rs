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

/// Whether something listens at `addr` (a port picked free for a child server). A connection
/// the kernel made to itself does not count: connecting to a free port in the ephemeral range
/// can pick that same port as its source and succeed by TCP simultaneous open, which would
/// read as "listening" before the child binds, and the next connect is then refused.
pub(crate) fn listening(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_ok_and(|s| {
        s.local_addr()
            .ok()
            .is_some_and(|local| Some(local) != s.peer_addr().ok())
    })
}
