//! `spillway serve` against hostile HTTP/1.1 and HTTP/2 clients, each a bounded client written
//! for its attack: the server's answer to the attacker is asserted, and so is that a healthy
//! client is still served, within [`NORMAL`], during and after the attack.
//!
//! The HTTP/2 attackers speak raw frames (h2c prior knowledge) so that they can break the rules
//! a real client library would keep.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{Reply, Running, get_request};

/// Longest any single step of a test may take before it fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// The most a healthy request may take while the server is attacked: far above what loopback
/// takes on a busy shared machine, far below a server that is stuck or starved.
const NORMAL: Duration = Duration::from_secs(2);

/// Asserts that a fresh client gets `/healthz` and a `/work` job answered 200 within
/// [`NORMAL`] each.
async fn serves_others(server: &Running) {
    for path in ["/healthz", "/work"] {
        let reply = tokio::time::timeout(NORMAL, server.get(path))
            .await
            .unwrap_or_else(|_| panic!("{path} not answered within {NORMAL:?}"));
        assert_eq!(reply.status, 200, "{path}");
    }
}

/// Sends `raw` on a fresh connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, raw: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(raw.as_bytes()).await.expect("writes");
    read_until_closed(&mut stream).await
}

/// Reads until the peer closes (EOF or a reset), bounded by [`PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("the server closes the connection in time");
    raw
}

/// A `GET /healthz` with one header `X-Big` of `bytes` bytes.
fn big_head(bytes: usize) -> String {
    format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(bytes)
    )
}

#[tokio::test]
async fn oversized_http1_headers_get_431_past_the_limit() {
    let server = Running::start(&["--wait-ms", "0"]).await;
    let fits = exchange(server.addr, &big_head(60 << 10)).await;
    assert_eq!(Reply::parse(&fits).status, 200, "60 KiB is within 64 KiB");
    for bytes in [70 << 10, 500 << 10] {
        let refused = exchange(server.addr, &big_head(bytes)).await;
        assert!(
            refused.starts_with(b"HTTP/1.1 431"),
            "{bytes} bytes: {:?}",
            String::from_utf8_lossy(&refused[..refused.len().min(80)])
        );
    }
    serves_others(&server).await;
    server.drain().await;

    let strict = Running::start(&["--wait-ms", "0", "--max-header-bytes", "16KiB"]).await;
    let refused = exchange(strict.addr, &big_head(20 << 10)).await;
    assert!(refused.starts_with(b"HTTP/1.1 431"), "{refused:?}");
    let fits = exchange(strict.addr, &big_head(10 << 10)).await;
    assert_eq!(Reply::parse(&fits).status, 200);
    strict.drain().await;
}

#[tokio::test]
async fn too_many_header_fields_get_431() {
    let server = Running::start(&["--wait-ms", "0"]).await;
    let fields: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
    let head = format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n");
    let refused = exchange(server.addr, &head).await;
    assert!(refused.starts_with(b"HTTP/1.1 431"), "{refused:?}");
    serves_others(&server).await;
    server.drain().await;
}

#[tokio::test]
async fn pipelined_http1_requests_are_answered_in_order() {
    let server = Running::start(&["--wait-ms", "0"]).await;
    let mut batch: String = (0..99)
        .map(|i| format!("GET /work?wait_ms={} HTTP/1.1\r\nHost: t\r\n\r\n", i % 3))
        .collect();
    batch.push_str(&get_request("/healthz"));
    let replies = String::from_utf8(exchange(server.addr, &batch).await).unwrap();
    assert_eq!(replies.matches("HTTP/1.1 200 OK").count(), 100, "{replies}");
    // The /work answers come first, then the last request's.
    assert_eq!(replies.matches("ok\n").count(), 100);
    serves_others(&server).await;
    server.drain().await;
}

#[tokio::test]
async fn slowloris_on_headers_is_closed_while_others_are_served() {
    let server = Running::start(&["--wait-ms", "0", "--header-timeout", "500ms"]).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /work HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // One more byte a little later each: never the end of the head.
    for stream in &mut slow {
        let _ = stream.write_all(b"X").await;
    }
    serves_others(&server).await;
    for stream in &mut slow {
        let got = read_until_closed(stream).await;
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{got:?}"
        );
    }
    server
        .wait_metric("spillway_http_connections_open", 1.0)
        .await; // the scrape's own
    serves_others(&server).await;
    server.drain().await;
}

#[tokio::test]
async fn slowloris_on_a_body_gets_408() {
    let server = Running::start(&["--wait-ms", "0", "--header-timeout", "500ms"]).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /work HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    serves_others(&server).await;
    let got = read_until_closed(&mut stream).await;
    assert_eq!(Reply::parse(&got).status, 408, "{got:?}");
    serves_others(&server).await;
    server.drain().await;
}

/// Raw HTTP/2 frames, enough to misbehave.
mod h2 {
    use super::*;

    pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub(crate) const HEADERS: u8 = 0x1;
    pub(crate) const RST_STREAM: u8 = 0x3;
    pub(crate) const SETTINGS: u8 = 0x4;
    pub(crate) const PING: u8 = 0x6;
    pub(crate) const GOAWAY: u8 = 0x7;
    pub(crate) const CONTINUATION: u8 = 0x9;
    pub(crate) const END_STREAM: u8 = 0x1;
    pub(crate) const END_HEADERS: u8 = 0x4;
    pub(crate) const CANCEL: u32 = 0x8;
    pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;

    /// One frame: its 9-byte header and `payload`.
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A header block for `GET path` (HPACK static table entries and literals, no Huffman).
    pub(crate) fn get(path: &str) -> Vec<u8> {
        // :method GET, :scheme http, then :path and :authority as literals without indexing.
        let mut block = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 0x01, b't']);
        block
    }

    /// A connection that has sent the preface and `settings` (id, value pairs).
    pub(crate) async fn connect(addr: SocketAddr, settings: &[(u16, u32)]) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let payload: Vec<u8> = settings
            .iter()
            .flat_map(|(id, v)| [id.to_be_bytes().to_vec(), v.to_be_bytes().to_vec()].concat())
            .collect();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &payload));
        stream.write_all(&hello).await.unwrap();
        stream
    }

    /// The frames in `raw` (kind, flags, stream, payload), a trailing partial one left out.
    pub(crate) fn frames(mut raw: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while raw.len() >= 9 {
            let len = u32::from_be_bytes([0, raw[0], raw[1], raw[2]]) as usize;
            if raw.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff;
            out.push((raw[3], raw[4], stream, raw[9..9 + len].to_vec()));
            raw = &raw[9 + len..];
        }
        out
    }

    /// The error code of the server's GOAWAY, if it sent one.
    pub(crate) fn goaway(raw: &[u8]) -> Option<u32> {
        frames(raw)
            .into_iter()
            .find(|f| f.0 == GOAWAY)
            .map(|(_, _, _, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
    }
}

/// Writes `chunk` again and again until the server stops taking it or `most` bytes went out;
/// returns the bytes written.
async fn flood(stream: &mut TcpStream, chunk: &[u8], most: usize) -> usize {
    let mut sent = 0;
    while sent < most {
        match tokio::time::timeout(Duration::from_secs(1), stream.write_all(chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            // A reset or a closed connection, or a server that stopped reading.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    sent
}

#[tokio::test]
async fn http2_rapid_reset_ends_in_enhance_your_calm() {
    let server = Running::start(&["--wait-ms", "0", "--wait-ms", "1000"]).await;
    let mut stream = h2::connect(server.addr, &[]).await;
    // Batches of 100 streams opened and cancelled at once, up to 100,000 in all.
    for batch in 0..1000u32 {
        let mut burst = Vec::new();
        for i in 0..100 {
            let id = 2 * (batch * 100 + i) + 1;
            let end = h2::END_HEADERS | h2::END_STREAM;
            burst.extend(h2::frame(h2::HEADERS, end, id, &h2::get("/work")));
            burst.extend(h2::frame(h2::RST_STREAM, 0, id, &h2::CANCEL.to_be_bytes()));
        }
        if flood(&mut stream, &burst, burst.len()).await < burst.len() {
            break;
        }
    }
    let raw = read_until_closed(&mut stream).await;
    assert_eq!(h2::goaway(&raw), Some(h2::ENHANCE_YOUR_CALM));
    serves_others(&server).await;
    server
        .wait_metric("spillway_http_requests_in_flight", 1.0)
        .await; // the scrape itself
    server.drain().await;
}

#[tokio::test]
async fn http2_continuation_flood_is_cut_off() {
    let server = Running::start(&["--wait-ms", "0"]).await;
    let mut stream = h2::connect(server.addr, &[]).await;
    let mut first = h2::get("/healthz");
    // x-a: 8000 bytes, a literal without indexing and a new name; repeated in each frame.
    let field: Vec<u8> = [
        &[0x00, 0x03][..],
        b"x-a",
        &[0x7f, 0xc1, 0x3d],
        &[b'a'; 8000],
    ]
    .concat();
    first.extend(&field);
    stream
        .write_all(&h2::frame(h2::HEADERS, h2::END_STREAM, 1, &first))
        .await
        .unwrap();
    let continuation = h2::frame(h2::CONTINUATION, 0, 1, &field);
    let sent = flood(&mut stream, &continuation, 64 << 20).await;
    assert!(
        sent < 16 << 20,
        "the server took {sent} bytes of one header block"
    );
    let raw = read_until_closed(&mut stream).await;
    let frames = h2::frames(&raw);
    assert!(
        frames
            .iter()
            .any(|f| f.0 == h2::GOAWAY || f.0 == h2::RST_STREAM || f.0 == h2::HEADERS),
        "the server said nothing: {frames:?}"
    );
    serves_others(&server).await;
    server.drain().await;
}

/// The process's resident memory in bytes (the server runs in this process).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test]
async fn http2_ping_and_settings_floods_that_never_read_hold_no_memory() {
    let server = Running::start(&["--wait-ms", "0"]).await;
    let before = rss();
    for (kind, payload) in [
        (h2::PING, vec![0u8; 8]),
        (h2::SETTINGS, vec![0, 4, 0, 0, 0xff, 0xff]),
    ] {
        let mut stream = h2::connect(server.addr, &[]).await;
        let chunk: Vec<u8> = (0..1000)
            .flat_map(|_| h2::frame(kind, 0, 0, &payload))
            .collect();
        let attack = tokio::spawn(async move {
            let sent = flood(&mut stream, &chunk, 200 << 20).await;
            (stream, sent)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        serves_others(&server).await;
        let (_stream, sent) = tokio::time::timeout(PATIENCE * 3, attack)
            .await
            .expect("the flood ends")
            .unwrap();
        // The server answers each frame; unread, its answers fill the socket and it stops
        // reading: the flood stalls long before 200 MiB.
        assert!(
            sent < 200 << 20,
            "kind {kind}: the server read all {sent} bytes"
        );
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
    serves_others(&server).await;
    server.drain().await;
}

#[tokio::test]
async fn http2_window_update_stall_is_closed_by_the_keep_alive_ping() {
    let server = Running::start(&["--wait-ms", "0", "--h2-keep-alive", "500ms"]).await;
    // A window of zero: no response body can be sent until the client opens it, which it never
    // does; and it never reads, so the server's pings go unanswered.
    let mut stream = h2::connect(server.addr, &[(0x4, 0)]).await;
    let mut requests = Vec::new();
    for i in 0..50u32 {
        let end = h2::END_HEADERS | h2::END_STREAM;
        requests.extend(h2::frame(h2::HEADERS, end, 2 * i + 1, &h2::get("/work")));
    }
    stream.write_all(&requests).await.unwrap();
    serves_others(&server).await;
    let raw = read_until_closed(&mut stream).await;
    assert!(
        !h2::frames(&raw)
            .iter()
            .any(|f| f.0 == 0x0 && !f.3.is_empty()),
        "no body was sent into a closed window"
    );
    server
        .wait_metric("spillway_http_requests_in_flight", 1.0)
        .await; // the scrape itself
    serves_others(&server).await;
    server.drain().await;
}

#[tokio::test]
async fn oversized_http2_headers_get_431() {
    let server = Running::start(&["--wait-ms", "0", "--max-header-bytes", "16KiB"]).await;
    let mut stream = h2::connect(server.addr, &[]).await;
    let mut block = h2::get("/healthz");
    // x-a: 20000 bytes, in one HEADERS and one CONTINUATION frame.
    block.extend([&[0x00, 0x03][..], b"x-a", &[0x7f, 0xa1, 0x9b, 0x01]].concat());
    block.extend([b'a'; 20000]);
    let (head, tail) = block.split_at(16 << 10);
    let mut out = h2::frame(h2::HEADERS, h2::END_STREAM, 1, head);
    out.extend(h2::frame(h2::CONTINUATION, h2::END_HEADERS, 1, tail));
    stream.write_all(&out).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // 431 is not in HPACK's static table: its literal follows the :status name (index 8).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !h2::frames(&raw)
        .iter()
        .any(|f| f.0 == h2::HEADERS && f.2 == 1)
    {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("answered in time")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        raw.extend_from_slice(&buf[..n]);
    }
    let frames = h2::frames(&raw);
    let answer = frames
        .iter()
        .find(|f| f.0 == h2::HEADERS && f.2 == 1)
        .unwrap();
    assert!(is_status_431(&answer.3), "{:?}", answer.3);
    serves_others(&server).await;
    server.drain().await;
}

/// Whether an HPACK block starts with `:status: 431`, plain or Huffman-coded.
fn is_status_431(block: &[u8]) -> bool {
    // Literal with or without indexing, name index 8 (:status); "431" plain (3 bytes), or
    // Huffman-coded ('4' 011010, '3' 011001, '1' 00001, padded with ones: 0x69 0x90 0xff).
    let plain = [0x03, b'4', b'3', b'1'];
    let huffman = [0x83, 0x69, 0x90, 0xff];
    let (Some(&first), rest) = (block.first(), block.get(1..).unwrap_or(&[])) else {
        return false;
    };
    (first == 0x48 || first == 0x08) && (rest.starts_with(&plain) || rest.starts_with(&huffman))
}
