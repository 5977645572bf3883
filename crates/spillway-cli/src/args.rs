//! What the subcommands' options share: the flag groups for the pool and for the workload
//! (`#[command(flatten)]`, one type, one name and one check each), and the value parsers.
//! Each subcommand sets its own defaults (`mut_arg`); each error names the flag and what it
//! allows.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use clap::builder::RangedU64ValueParser;
use serde::{Deserialize, Serialize};
use spillway::Limit;

use crate::workload::{MAX_ALLOC_KIB, Profile};

/// Most permits a tokio semaphore holds, and so most `--max-workers`.
const MAX_WORKERS: u64 = tokio::sync::Semaphore::MAX_PERMITS as u64;

/// The pool's settings; `--max-workers` is the semaphore's permits too.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
pub struct PoolArgs {
    /// Workers the pool keeps alive when idle (pool mode).
    #[arg(long, default_value_t = 16)]
    pub min_workers: usize,
    /// Most jobs running at once: the pool's workers, or the semaphore's permits.
    #[arg(
        long,
        default_value_t = 1000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_WORKERS)
    )]
    pub max_workers: usize,
    /// Jobs that may wait for a worker before the rest are shed (pool mode).
    #[arg(
        long,
        default_value_t = 1000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub queue: usize,
    /// Shed a queued job that waited longer than this (pool mode; none by default).
    #[arg(long, value_parser = positive_duration)]
    pub queue_timeout: Option<Duration>,
}

impl PoolArgs {
    /// Checks the settings a pool is built from (only where a pool is built: a semaphore has
    /// no minimum).
    ///
    /// # Errors
    ///
    /// `--min-workers` above `--max-workers`.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.min_workers > self.max_workers {
            bail!(
                "invalid --min-workers = {}: must be at most --max-workers ({})",
                self.min_workers,
                self.max_workers
            );
        }
        Ok(())
    }
}

/// The job each request or offer runs.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
pub struct WorkloadArgs {
    /// Milliseconds each job waits (an I/O-like sleep, standing for a downstream call),
    /// holding its memory.
    #[arg(long, default_value = "10", value_parser = millis, allow_negative_numbers = true)]
    pub wait_ms: f64,
    /// KiB each job allocates and touches (one write per 4 KiB page).
    #[arg(
        long,
        default_value_t = 0,
        value_parser = RangedU64ValueParser::<u64>::new().range(0..=MAX_ALLOC_KIB)
    )]
    pub alloc_kib: u64,
    /// Milliseconds of busy CPU work per job, after its wait.
    #[arg(long, default_value = "0", value_parser = millis, allow_negative_numbers = true)]
    pub cpu_ms: f64,
}

impl WorkloadArgs {
    /// The job the flags describe.
    pub(crate) fn profile(&self) -> Profile {
        Profile {
            wait: Duration::from_secs_f64(self.wait_ms / 1e3),
            // At most 1 TiB (checked by the parser): fits any 64-bit usize.
            alloc: usize::try_from(self.alloc_kib * 1024).unwrap_or(usize::MAX),
            cpu: Duration::from_secs_f64(self.cpu_ms / 1e3),
        }
    }
}

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

/// A concurrency limit by name, with the library's defaults for its parameters.
pub(crate) fn parse_limit(s: &str) -> Result<Limit, String> {
    Limit::by_name(s).ok_or_else(|| "must be one of adaptive, fixed, gradient2, vegas, aimd".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("0").is_err());
        assert!(
            parse_bytes("4 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(positive_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(
            positive_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(positive_duration("soon").is_err());
    }

    #[test]
    fn the_pool_check_names_both_flags() {
        let pool = PoolArgs {
            min_workers: 10,
            max_workers: 5,
            queue: 1,
            queue_timeout: None,
        };
        assert_eq!(
            pool.check().unwrap_err().to_string(),
            "invalid --min-workers = 10: must be at most --max-workers (5)"
        );
        assert!(
            PoolArgs {
                min_workers: 5,
                ..pool
            }
            .check()
            .is_ok()
        );
    }
}
