//! The latency histograms `simulate` and `load` record into: microseconds, 1 us to one hour.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Precision of whole-run histograms: three significant digits.
pub(crate) const FINE: u8 = 3;
/// Precision of per-second histograms: two significant digits.
pub(crate) const COARSE: u8 = 2;

/// An empty histogram of microseconds, 1 us to one hour, with `digits` significant digits.
pub(crate) fn micros_histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, digits).expect("static bounds are valid")
}

/// `d` in whole microseconds, at least 1 (the histograms' lowest value).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The quantile `q` of a histogram of microseconds, in milliseconds; 0 when it is empty.
pub(crate) fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1e3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_read_in_milliseconds_and_empty_reads_zero() {
        let mut h = micros_histogram(FINE);
        assert_eq!(quantile_ms(&h, 0.99), 0.0);
        for ms in 1..=100 {
            h.record(micros(Duration::from_millis(ms))).unwrap();
        }
        assert!((quantile_ms(&h, 0.5) - 50.0).abs() < 0.1);
        assert_eq!(micros(Duration::ZERO), 1);
    }
}
