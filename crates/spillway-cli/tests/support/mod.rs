//! Helpers the CLI's integration tests share: raw HTTP/1.1 requests and replies, and the
//! accounting check of a `simulate` JSON report.

#![allow(dead_code)] // each test binary uses its own part

pub(crate) mod running;

/// A `GET path` request that asks the server to close the connection after answering.
pub(crate) fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
}

/// An HTTP/1.1 reply, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Reply {
    /// Splits raw reply bytes into status, head and body.
    ///
    /// # Panics
    ///
    /// When the reply has no status line.
    pub(crate) fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        Reply {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    /// The value of header `name`, case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Asserts that one mode of a `simulate` JSON report accounts for every offered job:
/// `offered == completed + shed + expired + in_flight_at_end`, each counted on its own.
pub(crate) fn assert_every_job_accounted(mode: &serde_json::Value) {
    let count = |field: &str| {
        mode[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {field} in {mode}"))
    };
    let parts: u64 = ["completed", "shed", "expired", "in_flight_at_end"]
        .into_iter()
        .map(count)
        .sum();
    assert_eq!(
        count("offered"),
        parts,
        "{}: offered must split into completed, shed, expired and in flight",
        mode["mode"]
    );
}

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
