//! Property: under any sequence of samples, sheds and times, every algorithm's limit stays within
//! the driver's bounds and nothing panics (zero and huge durations included).

use std::time::Duration;

use proptest::prelude::*;

use super::{Bounds, Limit, LimitAlgorithm, Sample};

#[derive(Debug, Clone)]
enum Event {
    Sample(Sample),
    Shed,
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        (0u64..200_000_000).prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_nanos),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let sample = (
        duration(),
        duration(),
        any::<usize>(),
        0usize..3_000,
        any::<bool>(),
    )
        .prop_map(|(run, queue_wait, huge, small, dropped)| Sample {
            run,
            queue_wait,
            in_flight: if huge % 8 == 0 { huge } else { small },
            dropped,
        });
    prop_oneof![8 => sample.prop_map(Event::Sample), 1 => Just(Event::Shed)]
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        Just(Limit::default()),
        Just(Limit::fixed()),
        Just(Limit::gradient2().into()),
        Just(Limit::vegas().into()),
        Just(Limit::aimd().into()),
        (1usize..3_000).prop_map(|n| Limit::adaptive().initial_limit(n).into()),
        (1usize..3_000, 1usize..3_000)
            .prop_map(|(cold, n)| { Limit::adaptive().cold_limit(cold).initial_limit(n).into() }),
        (1usize..3_000).prop_map(|n| Limit::vegas().max_limit(n).initial_limit(n).into()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn limit_stays_within_bounds(
        limit in limit(),
        min in 0usize..50,
        span in 0usize..5_000,
        events in prop::collection::vec((event(), duration()), 0..400),
    ) {
        let bounds = Bounds { min, max: min + span };
        let mut algorithm = LimitAlgorithm::new(&limit, bounds);
        let in_bounds = |l: usize| (bounds.min..=bounds.max).contains(&l);
        prop_assert!(in_bounds(algorithm.limit()));
        let mut now = Duration::ZERO;
        for (event, step) in events {
            now = now.saturating_add(step / 1_000);
            match event {
                Event::Sample(sample) => {
                    if let Some(new) = algorithm.on_sample(now, &sample) {
                        prop_assert!(in_bounds(new));
                    }
                }
                Event::Shed => algorithm.on_shed(now, |_, _| {}),
            }
            prop_assert!(in_bounds(algorithm.limit()));
            prop_assert!(algorithm.queue_bound(100) <= 100);
            let _ = algorithm.drop_at_dequeue(step);
        }
    }
}
