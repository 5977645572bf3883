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
/// `offered == completed + failed + shed + expired + displaced + in_flight_at_end`, each counted on its
/// own.
pub(crate) fn assert_every_job_accounted(mode: &serde_json::Value) {
    let count = |field: &str| {
        mode[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {field} in {mode}"))
    };
    let parts: u64 = [
        "completed",
        "failed",
        "shed",
        "expired",
        "displaced",
        "in_flight_at_end",
    ]
    .into_iter()
    .map(count)
    .sum();
    assert_eq!(
        count("offered"),
        parts,
        "{}: offered must split into completed, failed, shed, expired, displaced and in flight",
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

/// Longest a helper here waits for one step before failing instead of hanging.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// `spillway serve` with `extra` flags, running in this process on an ephemeral loopback port.
pub(crate) struct InProcess {
    pub(crate) addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<spillway_cli::serve::DrainReport>>,
}

impl InProcess {
    /// Binds and starts serving.
    ///
    /// # Panics
    ///
    /// When the flags are not `serve`'s, or the server cannot bind.
    pub(crate) async fn start(extra: &[&str]) -> InProcess {
        use clap::Parser as _;
        let mut argv = vec!["spillway", "serve", "--addr", "127.0.0.1:0"];
        argv.extend_from_slice(extra);
        let parsed = spillway_cli::Cli::try_parse_from(argv).expect("valid arguments");
        let spillway_cli::Command::Serve(args) = parsed.command else {
            panic!("not parsed as serve")
        };
        let server = spillway_cli::serve::Server::bind(&args)
            .await
            .expect("server binds");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        InProcess { addr, stop, task }
    }

    /// `GET path` on a fresh connection, read whole.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connects");
        stream
            .write_all(get_request(path).as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
            .await
            .expect("answered in time")
            .expect("the connection reads");
        Reply::parse(&raw)
    }

    /// The value of one `/metrics` series.
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.body;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in {text}"))
    }

    /// Polls `/metrics` until `series` reaches `want` (bounded by [`PATIENCE`]).
    pub(crate) async fn wait_metric(&self, series: &str, want: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.metric(series).await != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} never reached {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Drains and stops the server; its report.
    pub(crate) async fn stop(self) -> spillway_cli::serve::DrainReport {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE * 2, self.task)
            .await
            .expect("the drain ends")
            .expect("no panic")
            .expect("a report")
    }
}
