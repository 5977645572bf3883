//! A `spillway serve` running in this process, on an ephemeral loopback port.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser as _;
use spillway_cli::serve::{DrainReport, Server};
use spillway_cli::{Cli, Command};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{Reply, get_request};

/// How long a reply or a drain may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// A server running in this process until [`Running::drain`].
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<DrainReport>>,
}

impl Running {
    /// `spillway serve --addr 127.0.0.1:0 flags...`, bound and serving.
    pub(crate) async fn start(flags: &[&str]) -> Running {
        let mut argv = vec!["spillway", "serve", "--addr", "127.0.0.1:0"];
        argv.extend_from_slice(flags);
        let Command::Serve(args) = Cli::parse_from(argv).command else {
            unreachable!("serve parses as serve")
        };
        let server = Server::bind(&args).await.expect("the server binds");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Running { addr, stop, task }
    }

    /// `GET path` on a new connection: the whole reply.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(get_request(path).as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
            .await
            .expect("the server answers in time")
            .unwrap();
        Reply::parse(&raw)
    }

    /// Signals the server and waits for its drain report.
    pub(crate) async fn drain(self) -> DrainReport {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the drain ends in time")
            .unwrap()
            .expect("the server drains")
    }
}
