//! A bare HTTP/1.1 server for a live view that has no server of its own (`simulate --live`).

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Binds `addr` (named `flag` in the error) and serves `router` there in a task until the
/// runtime ends; returns the address bound.
///
/// # Errors
///
/// An address that cannot be bound.
pub(crate) async fn spawn(
    addr: SocketAddr,
    flag: &str,
    router: Router,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {flag} {addr}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                // Out of descriptors, say: the view is a convenience, do not spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}
