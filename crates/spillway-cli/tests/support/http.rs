//! Raw HTTP/1.1 over loopback, written by hand so that tests control every byte: requests,
//! whole replies, and connections left open on purpose.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::PATIENCE;

/// A `GET path` request that asks the server to close the connection after answering.
pub(crate) fn get_request(path: &str) -> String {
    get_with(path, &[])
}

/// A `GET path` request with `headers` (each `name: value`), asking the server to close the
/// connection after answering.
pub(crate) fn get_with(path: &str, headers: &[&str]) -> String {
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for header in headers {
        raw.push_str(header);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    raw
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

/// Sends `raw` on a new connection to `addr`: the whole reply.
pub(crate) async fn send_to(addr: SocketAddr, raw: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream
        .write_all(raw.as_bytes())
        .await
        .expect("the request is sent");
    read_reply(&mut stream).await
}

/// `GET path` on a new connection to `addr`: the whole reply.
pub(crate) async fn get_at(addr: SocketAddr, path: &str) -> Reply {
    send_to(addr, &get_request(path)).await
}

/// Sends `raw` from a task of its own, to be awaited later.
pub(crate) fn spawn_send(addr: SocketAddr, raw: String) -> tokio::task::JoinHandle<Reply> {
    tokio::spawn(async move { send_to(addr, &raw).await })
}

/// Reads until the server closes the connection (bounded by [`PATIENCE`]): the reply.
pub(crate) async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("the server answers in time")
        .expect("the connection reads");
    Reply::parse(&raw)
}

/// A keep-alive connection to `addr` that has sent `GET path` and is left open, its reply
/// unread: a request in flight for as long as the test holds it.
pub(crate) async fn open_get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    stream
}

/// A keep-alive `GET path`: whatever arrives before the server closes the connection, or
/// before [`PATIENCE`] runs out (nothing, for a request the server abandons).
pub(crate) async fn get_raw(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = open_get(addr, path).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf)).await;
    buf
}
