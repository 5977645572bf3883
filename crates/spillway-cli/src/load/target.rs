//! Where the load goes: the URL, and the source addresses connections are spread over.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use http::Uri;

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host[:port]`, as sent in `Host` / `:authority`.
    pub(crate) authority: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path and query, `/` when the URL has none.
    pub(crate) path: String,
    /// The URL as given.
    pub(crate) url: String,
}

/// Parses the URL argument. Only cleartext `http://` is spoken (HTTP/1.1, or h2c with prior
/// knowledge).
pub(crate) fn parse_url(url: &str) -> Result<Target, String> {
    if !url.contains("://") {
        return Err(format!(
            "invalid URL {url:?}: no scheme (expected e.g. http://127.0.0.1:8080/work)"
        ));
    }
    let uri: Uri = url.parse().map_err(|e| {
        format!("invalid URL {url:?}: {e} (expected e.g. http://127.0.0.1:8080/work)")
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "invalid URL {url:?}: https is not supported; spillway load speaks cleartext \
                 HTTP/1.1 and h2c"
            ));
        }
        Some(other) => return Err(format!("invalid URL {url:?}: scheme {other:?} is not http")),
        None => {
            return Err(format!(
                "invalid URL {url:?}: no scheme (expected e.g. http://127.0.0.1:8080/work)"
            ));
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("invalid URL {url:?}: no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("invalid URL {url:?}: no host"));
    }
    Ok(Target {
        authority: authority.as_str().to_string(),
        host: host.to_string(),
        port: port_of(authority.as_str()).map_err(|e| format!("invalid URL {url:?}: {e}"))?,
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into()),
        url: url.to_string(),
    })
}

/// The port of `authority` (`[user@]host[:port]`), 80 when it names none. `http::Uri` reads
/// a port past 65535 as no port at all, which would send the load to port 80.
fn port_of(authority: &str) -> Result<u16, String> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let port = match host_port.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => port,
        _ => return Ok(80),
    };
    if port.is_empty() {
        return Ok(80);
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {port} is out of range (1 to 65535)")),
        Ok(p) => Ok(p),
    }
}

/// Resolves the target's host to one socket address.
pub(crate) async fn resolve(target: &Target) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot resolve host {:?}: {e}", target.host))?;
    addrs
        .next()
        .ok_or_else(|| format!("cannot resolve host {:?}: no address", target.host))
}

/// Parses `--source-addrs`: a comma-separated list of addresses and IPv4 ranges, e.g.
/// `127.0.0.1-127.0.0.16` or `127.0.0.1,127.0.0.2`.
pub(crate) fn parse_source_addrs(s: &str) -> Result<Vec<IpAddr>, String> {
    const MAX: u32 = 65_536;
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let parse = |x: &str| {
                    x.trim().parse::<Ipv4Addr>().map_err(|_| {
                        format!(
                            "{x:?} is not an IPv4 address (a range is like 127.0.0.1-127.0.0.16)"
                        )
                    })
                };
                let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
                if a > b {
                    return Err(format!("the range {part:?} runs backwards"));
                }
                if b - a >= MAX {
                    return Err(format!(
                        "the range {part:?} holds more than {MAX} addresses"
                    ));
                }
                out.extend((a..=b).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
            }
            None => out.push(
                part.parse::<IpAddr>()
                    .map_err(|_| format!("{part:?} is not an IP address"))?,
            ),
        }
    }
    if out.is_empty() {
        return Err("no address given (e.g. 127.0.0.1-127.0.0.16)".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_path() {
        let t = parse_url("http://127.0.0.1:8080/work?wait_ms=5").unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8080);
        assert_eq!(t.path, "/work?wait_ms=5");
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = parse_url("http://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = parse_url("http://[::1]:9000/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
    }

    #[test]
    fn a_port_out_of_range_is_named_not_replaced_by_80() {
        for port in ["99999", "65616", "0"] {
            let err = parse_url(&format!("http://127.0.0.1:{port}/")).unwrap_err();
            assert!(
                err.contains(&format!("port {port} is out of range (1 to 65535)")),
                "{err}"
            );
        }
        assert_eq!(parse_url("http://127.0.0.1:65535/").unwrap().port, 65535);
        assert_eq!(parse_url("http://u:p@h:81/").unwrap().port, 81);
        assert_eq!(parse_url("http://[::1]/").unwrap().port, 80);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(
            parse_url("127.0.0.1:8080/work")
                .unwrap_err()
                .contains("no scheme")
        );
        assert!(
            parse_url("https://x/")
                .unwrap_err()
                .contains("https is not supported")
        );
        assert!(
            parse_url("ftp://x/")
                .unwrap_err()
                .contains("scheme \"ftp\"")
        );
        assert!(parse_url("http://").unwrap_err().starts_with("invalid URL"));
        assert!(
            parse_url("not a url")
                .unwrap_err()
                .starts_with("invalid URL")
        );
    }

    #[test]
    fn source_addresses_take_ranges_and_lists() {
        let a = parse_source_addrs("127.0.0.1-127.0.0.16").unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(a[15], "127.0.0.16".parse::<IpAddr>().unwrap());
        let a = parse_source_addrs("127.0.0.1, 127.0.0.5,::1").unwrap();
        assert_eq!(a.len(), 3);
        assert!(
            parse_source_addrs("127.0.0.9-127.0.0.1")
                .unwrap_err()
                .contains("backwards")
        );
        assert!(
            parse_source_addrs("127.0.0.1-x")
                .unwrap_err()
                .contains("not an IPv4")
        );
        assert!(parse_source_addrs("").unwrap_err().contains("no address"));
        assert!(
            parse_source_addrs("10.0.0.0-10.2.0.0")
                .unwrap_err()
                .contains("more than")
        );
    }
}
