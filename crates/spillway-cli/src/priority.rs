//! Priorities on the command line and over HTTP: the `x-priority` and `grpc-timeout` request
//! headers `serve` reads in pool mode, and the `--priority-mix` that `load` and `simulate` draw
//! each request's or job's priority from.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spillway::Priority;

/// The request header that carries a request's priority.
pub(crate) const PRIORITY_HEADER: &str = "x-priority";

/// The request header that carries how long the caller waits for an answer (gRPC's format).
pub(crate) const TIMEOUT_HEADER: &str = "grpc-timeout";

/// The priorities by name, highest first: "critical, high, normal, low".
fn names() -> String {
    Priority::ALL.map(Priority::as_str).join(", ")
}

/// A priority's index in [`Priority::ALL`] (0 for the highest), for arrays of per-priority
/// counts.
pub(crate) fn index(priority: Priority) -> usize {
    Priority::ALL
        .iter()
        .position(|p| *p == priority)
        .expect("ALL lists every priority")
}

/// A priority by its lowercase name.
///
/// # Errors
///
/// Any other name, with the names allowed.
pub(crate) fn parse_priority(name: &str) -> Result<Priority, String> {
    name.parse::<Priority>()
        .map_err(|_| format!("must be one of {}", names()))
}

/// The value of an `x-priority` header.
///
/// # Errors
///
/// A value that is not one of the names, saying the header's name and the names allowed.
pub(crate) fn priority_header(value: &[u8]) -> Result<Priority, String> {
    let text = String::from_utf8_lossy(value);
    std::str::from_utf8(value)
        .map_err(|_| String::new())
        .and_then(parse_priority)
        .map_err(|_| {
            format!(
                "invalid {PRIORITY_HEADER} header {text:?}: must be one of {} (absent means normal)",
                names()
            )
        })
}

/// The value of a `grpc-timeout` header: one to eight ASCII digits followed by a unit, `H`
/// (hours), `M` (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds) or `n`
/// (nanoseconds), as gRPC sends it.
///
/// # Errors
///
/// Any other value, saying the header's name and the format.
pub(crate) fn timeout_header(value: &[u8]) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid {TIMEOUT_HEADER} header {:?}: must be 1 to 8 digits followed by a unit, \
             H, M, S, m, u or n (e.g. 200m, 1S)",
            String::from_utf8_lossy(value)
        )
    };
    let Some((&unit, digits)) = value.split_last() else {
        return Err(invalid());
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    // At most eight digits: always fits.
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(invalid)?;
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(invalid()),
    })
}

/// Shares of the offered work by priority (`--priority-mix critical=0.1,normal=0.3,low=0.6`):
/// each priority at most once, shares from 0 to 1 that sum to 1 within 1e-6. Kept (and
/// written back) highest priority first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PriorityMix {
    /// Each priority given and its share, highest priority first.
    shares: Vec<(Priority, f64)>,
}

/// How far the shares' sum may be from 1.
const SUM_TOLERANCE: f64 = 1e-6;

impl PriorityMix {
    /// The mix `shares`, as given.
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    pub(crate) fn new(shares: Vec<(Priority, f64)>) -> Result<PriorityMix, String> {
        for (i, (priority, share)) in shares.iter().enumerate() {
            if !(share.is_finite() && (0.0..=1.0).contains(share)) {
                return Err(format!(
                    "the share of {priority} must be a number from 0 to 1, not {share}"
                ));
            }
            if shares[..i].iter().any(|(p, _)| p == priority) {
                return Err(format!("{priority} is given twice"));
            }
        }
        let sum: f64 = shares.iter().map(|(_, s)| s).sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(format!(
                "the shares sum to {sum}, not 1 (write e.g. critical=0.1,normal=0.3,low=0.6)"
            ));
        }
        let mut shares = shares;
        shares.sort_by_key(|(p, _)| index(*p));
        Ok(PriorityMix { shares })
    }

    /// Parses `critical=0.1,normal=0.3,low=0.6`.
    ///
    /// # Errors
    ///
    /// An entry not of the form `NAME=SHARE`, an unknown name, a name given twice, a share
    /// outside 0 to 1, or shares that do not sum to 1 within 1e-6.
    pub(crate) fn parse(s: &str) -> Result<PriorityMix, String> {
        let entry = |e: &str| {
            let (name, share) = e.split_once('=').ok_or_else(|| {
                format!("{e:?} is not NAME=SHARE (write e.g. critical=0.1,normal=0.3,low=0.6)")
            })?;
            let name = name.trim();
            let priority = parse_priority(name)
                .map_err(|allowed| format!("unknown priority {name:?}: {allowed}"))?;
            let share = share.trim().parse::<f64>().map_err(|_| {
                format!("the share of {name} must be a number from 0 to 1, not {share:?}")
            })?;
            Ok((priority, share))
        };
        let shares = s
            .split(',')
            .map(entry)
            .collect::<Result<Vec<_>, String>>()?;
        PriorityMix::new(shares)
    }

    /// Each priority given and its share, highest priority first.
    pub(crate) fn shares(&self) -> &[(Priority, f64)] {
        &self.shares
    }

    /// The priority of a draw `u` from `[0, 1)`: the priorities split the interval by their
    /// shares, highest first.
    pub(crate) fn pick(&self, u: f64) -> Priority {
        let shares = &self.shares;
        let mut upto = 0.0;
        for (priority, share) in shares {
            upto += share;
            if u < upto {
                return *priority;
            }
        }
        // Rounding: the shares sum to a hair under 1.
        shares
            .iter()
            .rev()
            .find(|(_, s)| *s > 0.0)
            .map_or(Priority::Normal, |(p, _)| *p)
    }

    /// The priority of request or job number `i`: a fixed pseudo-random draw from `i`, so any
    /// process or lane that sends request `i` gives it the same priority, and the priorities
    /// of a run follow the shares without a shared random source.
    pub(crate) fn of(&self, i: u64) -> Priority {
        self.pick(unit_draw(i))
    }
}

/// A draw from `[0, 1)` fixed by `i` (SplitMix64).
fn unit_draw(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl fmt::Display for PriorityMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .shares
            .iter()
            .map(|(p, s)| format!("{}={s}", p.as_str()))
            .collect();
        f.write_str(&entries.join(","))
    }
}

impl TryFrom<String> for PriorityMix {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        PriorityMix::parse(&s)
    }
}

impl From<PriorityMix> for String {
    fn from(mix: PriorityMix) -> String {
        mix.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_priority_header_takes_the_four_names() {
        assert_eq!(priority_header(b"critical"), Ok(Priority::Critical));
        assert_eq!(priority_header(b"low"), Ok(Priority::Low));
        assert_eq!(
            priority_header(b"urgent").unwrap_err(),
            "invalid x-priority header \"urgent\": must be one of critical, high, normal, low \
             (absent means normal)"
        );
        assert!(priority_header(b"Critical").is_err(), "lowercase only");
        assert!(priority_header(b"\xff").is_err());
        assert!(priority_header(b"").is_err());
    }

    #[test]
    fn grpc_timeouts_read_in_each_unit() {
        let ok = |s: &str| timeout_header(s.as_bytes()).unwrap();
        assert_eq!(ok("200m"), Duration::from_millis(200));
        assert_eq!(ok("1S"), Duration::from_secs(1));
        assert_eq!(ok("2M"), Duration::from_secs(120));
        assert_eq!(ok("1H"), Duration::from_secs(3600));
        assert_eq!(ok("7u"), Duration::from_micros(7));
        assert_eq!(ok("0n"), Duration::ZERO);
        assert_eq!(ok("99999999H"), Duration::from_secs(99_999_999 * 3600));
    }

    #[test]
    fn bad_grpc_timeouts_name_the_header_and_the_format() {
        for bad in [
            "",
            "m",
            "200",
            "200ms",
            "123456789m",
            "-1S",
            "1.5S",
            "1s",
            " 1S",
            "1 S",
        ] {
            let err = timeout_header(bad.as_bytes()).unwrap_err();
            assert!(
                err.starts_with("invalid grpc-timeout header")
                    && err.contains("1 to 8 digits followed by a unit, H, M, S, m, u or n"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn a_mix_parses_and_keeps_its_shares() {
        let mix = PriorityMix::parse("critical=0.1,normal=0.3,low=0.6").unwrap();
        assert_eq!(
            mix.shares(),
            [
                (Priority::Critical, 0.1),
                (Priority::Normal, 0.3),
                (Priority::Low, 0.6)
            ]
        );
        assert_eq!(mix.to_string(), "critical=0.1,normal=0.3,low=0.6");
        let back: PriorityMix =
            serde_json::from_str(&serde_json::to_string(&mix).unwrap()).unwrap();
        assert_eq!(back, mix);
        let reordered = PriorityMix::parse("low=0.9,critical=0.1").unwrap();
        assert_eq!(reordered.to_string(), "critical=0.1,low=0.9");
        assert!(PriorityMix::parse("low=0.3333333,normal=0.6666667").is_ok());
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        let err = |s: &str| PriorityMix::parse(s).unwrap_err();
        assert!(err("critical=0.1,low=0.8").contains("the shares sum to 0.9"));
        assert!(
            err("urgent=1").contains(
                "unknown priority \"urgent\": must be one of critical, high, normal, low"
            )
        );
        assert!(err("low=0.5,low=0.5").contains("low is given twice"));
        assert!(err("low").contains("is not NAME=SHARE"));
        assert!(err("low=x").contains("the share of low must be a number from 0 to 1"));
        assert!(err("low=1.5,critical=-0.5").contains("from 0 to 1"));
        assert!(err("low=NaN").contains("from 0 to 1"));
        assert!(err("").contains("is not NAME=SHARE"));
    }

    #[test]
    fn draws_follow_the_shares() {
        let mix = PriorityMix::parse("critical=0.1,normal=0.3,low=0.6").unwrap();
        assert_eq!(mix.pick(0.0), Priority::Critical);
        assert_eq!(mix.pick(0.099), Priority::Critical);
        assert_eq!(mix.pick(0.2), Priority::Normal);
        assert_eq!(mix.pick(0.5), Priority::Low);
        assert_eq!(mix.pick(0.999_999_9), Priority::Low);
        let mut counts = [0u32; 4];
        for i in 0..100_000 {
            counts[index(mix.of(i))] += 1;
        }
        assert!((9_000..11_000).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[1], 0, "no high");
        assert!((28_000..32_000).contains(&counts[2]), "{counts:?}");
        assert!((58_000..62_000).contains(&counts[3]), "{counts:?}");
        assert_eq!(mix.of(42), mix.of(42), "fixed by the number");
        let high = PriorityMix::parse("high=1").unwrap();
        assert!((0..1000).all(|i| high.of(i) == Priority::High));
    }
}
