//! Entry points for the fuzz targets (`fuzz/` at the workspace root): the parsers of untrusted
//! text, each with the promises its callers rely on checked. Not a stable API.
//!
//! Each function panics when a parser breaks a promise (a value out of its documented range),
//! so that the fuzzer reports it; a refusal is fine, and its message must name what is allowed.

use std::time::Duration;

use crate::args::{self, MAX_DURATION};
use crate::workload::Profile;

/// Parses a `/work` query against a default profile and checks that what it accepts is within
/// the documented bounds (wait at most 60 s, CPU at most 10 s, memory at most 1 GiB).
///
/// # Panics
///
/// When an accepted profile is out of bounds, or a refusal says nothing.
pub fn work_query(query: &str) {
    let default = Profile {
        wait: Duration::from_millis(10),
        alloc: 0,
        cpu: Duration::ZERO,
    };
    match crate::serve::profile_from_query(Some(query), default) {
        Ok(p) => {
            assert!(p.wait <= Duration::from_secs(60), "{query:?}: {p:?}");
            assert!(p.cpu <= Duration::from_secs(10), "{query:?}: {p:?}");
            assert!(p.alloc <= 1 << 30, "{query:?}: {p:?}");
        }
        Err(message) => assert!(!message.is_empty(), "{query:?}: an empty error"),
    }
}

/// The value parsers the flags use, by number (the fuzz input's first byte picks one).
pub const FLAG_PARSERS: u8 = 10;

/// Runs value parser number `which % FLAG_PARSERS` on `text` and checks its promise.
///
/// # Panics
///
/// When a parser accepts a value outside its documented range.
pub fn flag_value(which: u8, text: &str) {
    match which % FLAG_PARSERS {
        0 => check(args::parse_bytes(text), |&b| b > 0),
        1 => check(args::memory_cap(text), |&b| b >= args::MIN_MEMORY_CAP),
        2 => check(args::parse_header_bytes(text), |&b| {
            (args::MIN_HEADER_BYTES..=args::MAX_HEADER_BYTES).contains(&u64::from(b))
        }),
        3 => check(args::positive_duration(text), |d| {
            !d.is_zero() && *d <= MAX_DURATION
        }),
        4 => check(args::duration_or_zero(text), |d| *d <= MAX_DURATION),
        5 => check(args::rate(text), |r| {
            (args::MIN_RATE..=args::MAX_RATE).contains(r)
        }),
        6 => check(args::millis(text), |m| (0.0..=args::MAX_MILLIS).contains(m)),
        7 => check(args::fraction(text), |f| (0.0..=1.0).contains(f)),
        8 => check(crate::load::parse_source_addrs(text), |a| {
            !a.is_empty() && a.len() <= 65_536 * text.split(',').count()
        }),
        _ => check(crate::load::parse_url(text), |t| !t.host.is_empty()),
    }
}

fn check<T: std::fmt::Debug>(parsed: Result<T, String>, promise: impl Fn(&T) -> bool) {
    match parsed {
        Ok(value) => assert!(promise(&value), "accepted out of range: {value:?}"),
        Err(message) => assert!(!message.is_empty(), "an empty error"),
    }
}

/// Parses a whole command line (`argv` after the program name) as `spillway` would; clap runs
/// every flag's value parser. A refusal is fine; a panic is a bug.
pub fn command_line(argv: &[String]) {
    use clap::Parser as _;
    let _ = crate::Cli::try_parse_from(
        std::iter::once("spillway".to_string()).chain(argv.iter().cloned()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parser_keeps_its_promise_on_samples() {
        let samples = [
            "", "0", "1", "64KiB", "1.5s", "25h", "-1", "NaN", "1e9", "0.5",
        ];
        for which in 0..FLAG_PARSERS {
            for text in samples {
                flag_value(which, text);
            }
        }
        flag_value(8, "127.0.0.1-127.0.0.3,::1");
        flag_value(9, "http://127.0.0.1:1/work");
        work_query("wait_ms=1&cpu_ms=2&alloc_kib=3");
        work_query("%zz");
        command_line(&["serve".into(), "--max-header-bytes".into(), "1".into()]);
    }
}
