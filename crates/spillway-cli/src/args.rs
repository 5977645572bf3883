//! Value parsers shared by the subcommands' options; each error says what is allowed.

use std::time::Duration;

pub(crate) fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("must be a number greater than 0".into()),
    }
}

/// Most milliseconds a job may wait or burn: one hour.
pub(crate) const MAX_MILLIS: f64 = 3_600_000.0;

/// A number of milliseconds, from 0 to one hour.
pub(crate) fn millis(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_MILLIS).contains(&v) => Ok(v),
        _ => Err(format!(
            "must be a number of milliseconds from 0 to {MAX_MILLIS}"
        )),
    }
}

pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(e) => Err(format!("{e} (write it as e.g. 10s, 500ms, 1m)")),
    }
}

pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err("unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)".into()),
    };
    match number.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok((v * multiplier as f64) as u64),
        _ => Err("must be a size greater than 0, e.g. 4GiB".into()),
    }
}
