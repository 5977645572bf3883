//! TCP sockets for `serve`'s listener and `load`'s connections.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpSocket;

/// A socket of `addr`'s family (IPv4 or IPv6), bound to `source` (any port) when given.
///
/// # Errors
///
/// When the socket cannot be made, or `source` cannot be bound (the error names it).
pub(crate) fn socket_for(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot bind source address {source}: {e}"),
            )
        })?;
    }
    Ok(socket)
}
