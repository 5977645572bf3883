//! Small numeric helpers the Netflix ports share: `ExpAvgMeasurement` and `Log10RootIntFunction`.

/// Netflix's `ExpAvgMeasurement`: the plain mean of the first `warmup` samples, then an
/// exponential average with factor `2 / (window + 1)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExpAvg {
    value: f64,
    sum: f64,
    count: u32,
    window: u32,
    warmup: u32,
}

impl ExpAvg {
    pub(crate) fn new(window: u32, warmup: u32) -> ExpAvg {
        ExpAvg {
            value: 0.0,
            sum: 0.0,
            count: 0,
            window,
            warmup,
        }
    }

    /// Adds a sample and returns the new average.
    pub(crate) fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / f64::from(self.count);
        } else {
            let factor = 2.0 / (f64::from(self.window) + 1.0);
            self.value = self.value * (1.0 - factor) + sample * factor;
        }
        self.value
    }

    #[cfg(test)]
    pub(crate) fn get(&self) -> f64 {
        self.value
    }

    /// Netflix's `update(operation)`: replaces the value (the warm-up sum is left alone).
    pub(crate) fn set(&mut self, value: f64) {
        self.value = value;
    }
}

/// Netflix's `Log10RootIntFunction.create(0)`: `max(1, floor(log10(n)))` below 1000 and
/// `floor(log10(n))` above (the same thing, since log10 >= 3 there).
pub(crate) fn log10_int(n: usize) -> usize {
    if n < 10 { 1 } else { n.ilog10() as usize }
}

/// One splitmix64 step on `state`: a uniform float in `(0, 1)`. Deterministic, so that runs
/// repeat.
pub(crate) fn splitmix_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_avg_is_a_plain_mean_during_warmup_then_exponential() {
        let mut avg = ExpAvg::new(600, 2);
        assert_eq!(avg.add(10.0), 10.0);
        assert_eq!(avg.add(20.0), 15.0);
        // factor 2 / 601
        let expected = 15.0 * (1.0 - 2.0 / 601.0) + 615.0 * (2.0 / 601.0);
        assert!((avg.add(615.0) - expected).abs() < 1e-12);
        avg.set(3.0);
        assert_eq!(avg.get(), 3.0);
    }

    #[test]
    fn log10_matches_netflix_lookup() {
        assert_eq!(log10_int(0), 1);
        assert_eq!(log10_int(1), 1);
        assert_eq!(log10_int(9), 1);
        assert_eq!(log10_int(99), 1);
        assert_eq!(log10_int(100), 2);
        assert_eq!(log10_int(999), 2);
        assert_eq!(log10_int(1000), 3);
        assert_eq!(log10_int(usize::MAX), 19);
    }

    #[test]
    fn splitmix_stays_inside_the_unit_interval() {
        let mut state = 0;
        let draws: Vec<f64> = (0..1_000).map(|_| splitmix_unit(&mut state)).collect();
        assert!(draws.iter().all(|u| *u > 0.0 && *u < 1.0));
        let mean = draws.iter().sum::<f64>() / 1_000.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }
}
