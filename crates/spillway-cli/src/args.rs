//! What the subcommands' options share: the flag groups for the pool and for the workload
//! (`#[command(flatten)]`, one type, one name and one check each), and the value parsers.
//! Each subcommand sets its own defaults (`mut_arg`); each error names the flag and what it
//! allows.

use std::time::Duration;

use clap::Args;
use clap::builder::RangedU64ValueParser;
use serde::{Deserialize, Serialize};
use spillway::Limit;

use crate::workload::{Fault, MAX_ALLOC_KIB, Profile};

/// Most `--max-workers` (and `--min-workers`): a million jobs at once is far past what any
/// one machine runs, and well within a tokio semaphore's permits.
pub(crate) const MAX_WORKERS: u64 = 1_000_000;

/// Most `--queue`: ten million waiting jobs.
pub(crate) const MAX_QUEUE: u64 = 10_000_000;

/// The pool's settings; `--max-workers` is the semaphore's permits too.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
pub struct PoolArgs {
    /// Workers the pool keeps alive when idle (pool mode).
    #[arg(
        long,
        default_value_t = 16,
        value_parser = RangedU64ValueParser::<usize>::new().range(0..=MAX_WORKERS)
    )]
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
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_QUEUE)
    )]
    pub queue: usize,
    /// Shed a queued job that waited longer than this (pool mode; none by default; at most
    /// 24h).
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
            return Err(usage(format!(
                "invalid --min-workers = {}: must be at most --max-workers ({})",
                self.min_workers, self.max_workers
            )));
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
            // At most 1 GiB (checked by the parser): fits any usize of 32 bits or more.
            alloc: usize::try_from(self.alloc_kib * 1024).unwrap_or(usize::MAX),
            cpu: Duration::from_secs_f64(self.cpu_ms / 1e3),
        }
    }
}

/// Faults injected into a fraction of the jobs, drawn independently for each job, to show
/// what shedding does with jobs that misbehave. Off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Args, Serialize, Deserialize)]
pub struct FaultArgs {
    /// Fraction of jobs (0 to 1) that panic after their wait, holding their memory until then.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fault_panic: f64,
    /// Fraction of jobs (0 to 1) that never finish: after their wait they wait forever, holding
    /// their memory and their worker until their caller leaves.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fault_hang: f64,
    /// Fraction of jobs (0 to 1) that allocate 10x their memory (`--alloc-kib`).
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fault_alloc: f64,
}

impl FaultArgs {
    /// Checks that the fractions, which split the jobs, add up to at most 1.
    ///
    /// # Errors
    ///
    /// Fractions that add up to more than 1, naming the flags.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let sum = self.fault_panic + self.fault_hang + self.fault_alloc;
        if sum > 1.0 {
            return Err(usage(format!(
                "invalid --fault-panic + --fault-hang + --fault-alloc = {sum}: the fractions \
                 split the jobs, so they must add up to at most 1"
            )));
        }
        Ok(())
    }

    /// Which fault, if any, the job drawn `roll` (uniform in 0..1) gets.
    pub(crate) fn draw(&self, roll: f64) -> Option<Fault> {
        let panic = self.fault_panic;
        let hang = panic + self.fault_hang;
        let alloc = hang + self.fault_alloc;
        match roll {
            r if r < panic => Some(Fault::Panic),
            r if r < hang => Some(Fault::Hang),
            r if r < alloc => Some(Fault::Alloc),
            _ => None,
        }
    }
}

/// `--fault-*`: a fraction from 0 to 1.
pub(crate) fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("must be a fraction of the jobs from 0 to 1, e.g. 0.01".into()),
    }
}

/// Bad input found after parsing: a setting that is wrong with another, or a URL that names
/// no reachable port. `main` exits 2 for it, as for clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] saying `message`.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Most jobs or requests per second `--rate` takes.
pub(crate) const MAX_RATE: f64 = 1e9;
/// Fewest jobs or requests per second `--rate` takes: one every 1,000 s.
pub(crate) const MIN_RATE: f64 = 0.001;

/// `--rate`: a number of jobs or requests per second, from [`MIN_RATE`] to [`MAX_RATE`].
pub(crate) fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (MIN_RATE..=MAX_RATE).contains(&v) => Ok(v),
        _ => Err(format!(
            "must be a number of jobs per second from {MIN_RATE} to {MAX_RATE:e}"
        )),
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

/// Longest duration any flag takes: one day (every timer and schedule stays far from
/// `Instant`'s overflow).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration longer than zero and at most [`MAX_DURATION`].
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration_or_zero(s)? {
        d if d.is_zero() => Err("must be longer than zero (at most 24h)".into()),
        d => Ok(d),
    }
}

/// A duration from zero to [`MAX_DURATION`].
pub(crate) fn duration_or_zero(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err("must be at most 24h".into()),
        Err(e) => Err(format!(
            "{e} (write it as e.g. 10s, 500ms, 1m; at most 24h)"
        )),
    }
}

/// Smallest `--memory-cap`: below it the process's own runtime would pass the cap before the
/// first job ran.
pub(crate) const MIN_MEMORY_CAP: u64 = 64 << 20;

/// `--memory-cap`: a size with its unit (`4GiB`, `512MiB`), from 64 MiB up.
pub(crate) fn memory_cap(s: &str) -> Result<u64, String> {
    let (number, unit) = split_size(s);
    if unit.is_empty() {
        return Err("needs a unit, e.g. 4GiB or 512MiB (at least 64MiB)".into());
    }
    match parse_bytes(s)? {
        bytes if bytes < MIN_MEMORY_CAP => {
            Err(format!("{number}{unit} is below the smallest cap, 64MiB"))
        }
        bytes => Ok(bytes),
    }
}

fn split_size(s: &str) -> (&str, &str) {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    (number, unit.trim())
}

/// A size in bytes, with or without a unit (B, KiB, MiB, GiB, KB, MB, GB); greater than 0 and
/// within 64 bits.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let (number, unit) = split_size(s);
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return Err("unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)".into()),
    };
    let bytes = match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => v * multiplier as f64,
        _ => return Err("must be a size greater than 0, e.g. 4GiB".into()),
    };
    if bytes < 1.0 {
        return Err("must be at least one byte".into());
    }
    // 2^64 is exactly representable; anything at or past it does not fit.
    if bytes >= 18_446_744_073_709_551_616.0 {
        return Err("is too large (at most 16 EiB)".into());
    }
    Ok(bytes as u64)
}

/// Smallest `--max-header-bytes`: hyper's smallest read buffer.
pub(crate) const MIN_HEADER_BYTES: u64 = 8 << 10;
/// Largest `--max-header-bytes`.
pub(crate) const MAX_HEADER_BYTES: u64 = 16 << 20;

/// `--max-header-bytes`: a size from 8 KiB to 16 MiB.
pub(crate) fn parse_header_bytes(s: &str) -> Result<u32, String> {
    match parse_bytes(s)? {
        // At most 16 MiB, so it fits.
        bytes if (MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&bytes) => Ok(bytes as u32),
        _ => Err("must be a size from 8KiB to 16MiB".into()),
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
    fn sizes_that_do_not_fit_are_refused() {
        assert!(
            parse_bytes("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse_bytes("0.5")
                .unwrap_err()
                .contains("at least one byte")
        );
    }

    #[test]
    fn header_limits_stay_within_what_hyper_takes() {
        assert_eq!(parse_header_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_header_bytes("8KiB"), Ok(8 << 10));
        assert!(
            parse_header_bytes("8000")
                .unwrap_err()
                .contains("8KiB to 16MiB")
        );
        assert!(
            parse_header_bytes("17MiB")
                .unwrap_err()
                .contains("8KiB to 16MiB")
        );
    }

    #[test]
    fn a_memory_cap_needs_a_unit_and_a_sane_size() {
        assert_eq!(memory_cap("256MiB"), Ok(256 << 20));
        assert!(memory_cap("2").unwrap_err().contains("needs a unit"));
        assert!(memory_cap("0.5").unwrap_err().contains("needs a unit"));
        assert!(
            memory_cap("1MiB")
                .unwrap_err()
                .contains("below the smallest cap, 64MiB")
        );
        assert!(
            memory_cap("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations_and_rates_have_bounds() {
        assert!(
            positive_duration("18446744073709551615s")
                .unwrap_err()
                .contains("at most 24h")
        );
        assert!(duration_or_zero("25h").unwrap_err().contains("at most 24h"));
        assert_eq!(duration_or_zero("0s"), Ok(Duration::ZERO));
        assert!(rate("1e-20").unwrap_err().contains("from 0.001 to 1e9"));
        assert!(rate("NaN").is_err() && rate("inf").is_err() && rate("-1").is_err());
        assert_eq!(rate("2e7"), Ok(2e7));
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
    fn faults_split_the_jobs_in_the_order_panic_hang_alloc() {
        let faults = FaultArgs {
            fault_panic: 0.1,
            fault_hang: 0.2,
            fault_alloc: 0.3,
        };
        assert!(faults.check().is_ok());
        assert_eq!(faults.draw(0.05), Some(Fault::Panic));
        assert_eq!(faults.draw(0.25), Some(Fault::Hang));
        assert_eq!(faults.draw(0.55), Some(Fault::Alloc));
        assert_eq!(faults.draw(0.65), None);
        assert_eq!(FaultArgs::default().draw(0.0), None);
        let too_many = FaultArgs {
            fault_hang: 0.8,
            ..faults
        };
        assert!(
            too_many
                .check()
                .unwrap_err()
                .to_string()
                .contains("must add up to at most 1")
        );
        assert!(fraction("1.5").unwrap_err().contains("from 0 to 1"));
        assert!(fraction("NaN").is_err());
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
