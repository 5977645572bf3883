//! The scenarios in the discrete-event model, with the seed's ceilings (5,000 workers,
//! a 100,000-job queue): assertions for the adaptive default, a printed table for the peers.

use super::measure::splitmix_unit;
use super::model::{Load, Run, Service, Sim};
use super::{Bounds, Limit, LimitAlgorithm};

const CEILINGS: Bounds = Bounds { min: 1, max: 5_000 };
const QUEUE: usize = 100_000;

/// The seed job on 2 cores: 50 us of CPU then 20 ms of downstream wait.
const CORES: f64 = 2.0;
const CPU: f64 = 50e-6;
const WAIT: f64 = 0.020;
/// Jobs per second the CPU model completes at most.
const CAPACITY: f64 = CORES / CPU;
/// Past this many in flight, the CPU is the bottleneck.
const KNEE: f64 = CAPACITY * (WAIT + CPU);

fn seed_job() -> Service {
    Service::cpu(CORES, CPU, WAIT)
}

fn run(limit: Limit, service: Service, load: &Load) -> Run {
    Sim::new(LimitAlgorithm::new(&limit, CEILINGS), service, QUEUE).run(load, 7)
}

fn adaptive() -> Limit {
    Limit::default()
}

#[test]
fn step_overload_from_cold_settles_near_the_knee_without_overshoot() {
    let load = Load::constant(10.0 * CAPACITY, 2.0);
    let run = run(adaptive(), seed_job(), &load);
    let limit = run.mean_limit(1.0, 2.0);
    assert!(
        (0.8 * KNEE..=1.6 * KNEE).contains(&limit),
        "limit {limit:.0}, knee {KNEE:.0}"
    );
    assert!(
        run.max_in_flight as f64 <= 2.0 * KNEE,
        "{}",
        run.max_in_flight
    );
    assert!(
        run.goodput(1.0, 2.0) >= 0.9 * CAPACITY,
        "{}",
        run.goodput(1.0, 2.0)
    );
    assert!(run.p99(1.0, 2.0) <= 0.1, "p99 {}", run.p99(1.0, 2.0));
    // before the first verdict the queue holds at most the initial limit: admitted work
    // (running plus queued) stays within twice that (20,075 when the queue was unbounded until
    // saturation was proven), and the cold start's own p99 is within the goal
    assert!(
        run.max_admitted <= 2 * 1_000,
        "{} admitted",
        run.max_admitted
    );
    assert!(
        run.p99(0.0, 3.0) <= 0.1,
        "whole-run p99 {}",
        run.p99(0.0, 3.0)
    );
}

#[test]
fn slowdown_at_low_load_sheds_nothing() {
    let load = Load::constant(0.3 * CAPACITY, 6.0);
    let run = run(adaptive(), seed_job().slow_down(2.0, 0.200), &load);
    assert_eq!((run.shed, run.expired), (0, 0));
    // in flight grew about tenfold with the wait, and the limit followed, in steps of at most
    // 25% (about two windows of 200 ms each: 1,000 to the 2,400 needed in about 2 s)
    assert!(run.max_in_flight as f64 >= 0.3 * CAPACITY * 0.2 * 0.9);
    assert!(run.goodput(4.5, 6.0) >= 0.29 * CAPACITY);
}

#[test]
fn burst_after_idle_starts_at_once() {
    let load = Load::constant(10.0, 5.0).burst(5.0, 1_000).then(10.0, 6.0);
    let run = run(adaptive(), seed_job(), &load);
    assert_eq!((run.shed, run.expired), (0, 0));
    let mut waits: Vec<f64> = run.done.iter().map(|d| d.start - d.arrival).collect();
    waits.sort_by(f64::total_cmp);
    // The burst is exactly the initial limit: a background job in flight at that moment can keep
    // one burst job waiting for a run time, so the bound is on the 99th percentile.
    let p99 = waits[waits.len() * 99 / 100];
    assert!(p99 <= 0.005, "waited {p99}");
}

#[test]
fn burst_after_an_overload_and_idleness_is_admitted_whole() {
    // The limit learns a low knee on a quarter of the cores, then the pool idles at 10 jobs/s on
    // all of them (too few to close a window), then 1,000 jobs come at once.
    let service = seed_job().cores_at(0.0, 0.5).cores_at(2.0, 2.0);
    let load = Load::constant(3.0 * CAPACITY / 4.0, 2.0)
        .then(10.0, 5.0)
        .burst(5.0, 1_000)
        .then(10.0, 6.0);
    let run = run(adaptive(), service, &load);
    assert!(run.mean_limit(4.0, 5.0) < 500.0, "a low limit was learned");
    let mut waits: Vec<f64> = run
        .done
        .iter()
        .filter(|d| d.arrival == 5.0)
        .map(|d| d.start - d.arrival)
        .collect();
    assert_eq!(waits.len(), 1_000, "no burst job shed or dropped");
    waits.sort_by(f64::total_cmp);
    // queued behind the learned limit while it grows, within a few run times
    assert!(waits[989] <= 0.1, "waited {}", waits[989]);
}

/// A downstream of 100 permits held 10 ms: capacity 10k jobs/s.
const PERMITS: usize = 100;
const HOLD: f64 = 0.010;

#[test]
fn downstream_overload_settles_near_its_permits_and_keeps_latency_near_its_hold() {
    let load = Load::constant(3.0 * PERMITS as f64 / HOLD, 3.0);
    let run = run(adaptive(), Service::permits(PERMITS, HOLD), &load);
    let limit = run.mean_limit(1.5, 3.0);
    let permits = PERMITS as f64;
    assert!(
        (0.8 * permits..=1.5 * permits).contains(&limit),
        "limit {limit:.0}"
    );
    // the run time settles near (1 + tolerance) T; the queue adds up to the 5 ms target (twice
    // that before a job is dropped at dequeue)
    let target = 0.005;
    let p50 = run.percentile(0.5, 1.5, 3.0);
    assert!(p50 <= 1.5 * HOLD + target, "p50 {p50}");
    let p99 = run.p99(1.5, 3.0);
    assert!(p99 <= 2.0 * HOLD + 2.0 * target, "p99 {p99}");
    assert!(run.goodput(1.5, 3.0) >= 0.9 * permits / HOLD);
    // the cold start (1,000 jobs on 100 permits, and as many queued) included: 180 ms when the
    // queue was unbounded until saturation was proven
    let whole = run.p99(0.0, 4.0);
    assert!(whole <= 0.15, "whole-run p99 {whole}");
}

#[test]
fn slower_downstream_at_low_load_sheds_nothing() {
    // 1,000 permits: at 3k jobs/s a hold of 100 ms still leaves room; it is not an overload.
    let service = Service::permits(1_000, HOLD).slow_down(1.0, 10.0 * HOLD);
    let run = run(adaptive(), service, &Load::constant(3_000.0, 4.0));
    assert_eq!((run.shed, run.expired), (0, 0));
}

#[test]
fn cpu_bound_jobs_bring_the_limit_down_to_the_cores() {
    // 1 ms of CPU and nothing else, on 2 cores: capacity 2,000 jobs/s, knee 2 jobs
    let service = Service::cpu(CORES, 0.001, 0.0);
    let run = run(adaptive(), service, &Load::constant(3.0 * 2_000.0, 5.0));
    let limit = run.mean_limit(4.0, 5.0);
    assert!((1.5..=8.0).contains(&limit), "limit {limit}");
    assert!(run.goodput(4.0, 5.0) >= 0.9 * 2_000.0);
    assert!(run.p99(4.0, 5.0) <= 0.05, "p99 {}", run.p99(4.0, 5.0));
}

#[test]
fn sustained_overload_does_not_drift() {
    let run = run(adaptive(), seed_job(), &Load::constant(5.0 * CAPACITY, 5.0));
    let per_second: Vec<f64> = (1..5)
        .map(|s| run.mean_limit(f64::from(s), f64::from(s + 1)))
        .collect();
    let mean = per_second.iter().sum::<f64>() / per_second.len() as f64;
    assert!(
        per_second.iter().all(|l| (l / mean - 1.0).abs() <= 0.1),
        "{per_second:?}"
    );
    let first = run.goodput(1.0, 2.0);
    let last = run.goodput(4.0, 5.0);
    assert!((last / first - 1.0).abs() <= 0.05, "{first} {last}");
}

/// Every algorithm through every scenario; prints a table (`--nocapture`), asserts nothing
/// about the peers.
#[test]
fn peers_in_the_model() {
    // `fixed` (5,000 in flight, a 100,000-job queue) is left out: it is slow to model.
    let names = ["adaptive", "gradient2", "vegas", "aimd"];
    println!("scenario        limit      goodput/cap  p99 ms  shed%  mean-limit  max-in-flight");
    for (scenario, service, load, window, capacity) in scenarios() {
        for name in names {
            let limit = Limit::by_name(name).expect("known");
            let run = run(limit, service(), &load);
            let (from, to) = window;
            println!(
                "{scenario:<15} {name:<10} {:>11.2} {:>7.1} {:>6.2} {:>11.0} {:>14}",
                run.goodput(from, to) / capacity,
                run.p99(from, to) * 1e3,
                run.shed_fraction() * 100.0,
                run.mean_limit(from, to),
                run.max_in_flight,
            );
        }
    }
    // the table is the output; the one assertion: every run offered the same load
    let offered: Vec<usize> = names
        .iter()
        .map(|name| {
            run(
                Limit::by_name(name).expect("known"),
                seed_job(),
                &Load::constant(100.0, 0.5),
            )
            .offered
        })
        .collect();
    assert!(offered.windows(2).all(|w| w[0] == w[1]), "{offered:?}");
}

/// Name, service, load, the interval reported, and the capacity during it (jobs/s).
type Scenario = (&'static str, fn() -> Service, Load, (f64, f64), f64);

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "step 10x",
            seed_job,
            Load::constant(10.0 * CAPACITY, 2.0),
            (1.0, 2.0),
            CAPACITY,
        ),
        (
            "spike 1.4x",
            seed_job,
            Load::constant(0.7 * CAPACITY, 1.0)
                .then(1.4 * CAPACITY, 3.0)
                .then(0.7 * CAPACITY, 4.0),
            (1.0, 3.0),
            CAPACITY,
        ),
        (
            "capacity-drop",
            || seed_job().cores_at(1.0, 1.0).cores_at(2.0, 2.0),
            Load::constant(2.0 * CAPACITY, 3.0),
            (1.0, 2.0),
            CAPACITY / 2.0,
        ),
        (
            "slowdown",
            || seed_job().slow_down(1.0, 0.200),
            Load::constant(0.3 * CAPACITY, 3.0),
            (2.0, 3.0),
            0.3 * CAPACITY,
        ),
        (
            "low-rate burst",
            seed_job,
            Load::constant(10.0, 5.0).burst(5.0, 1_000).then(10.0, 6.0),
            (5.0, 6.0),
            1_000.0,
        ),
        (
            "permits 3x",
            || Service::permits(PERMITS, HOLD),
            Load::constant(3.0 * PERMITS as f64 / HOLD, 3.0),
            (1.5, 3.0),
            PERMITS as f64 / HOLD,
        ),
    ]
}

/// The worst p99 of the 100 ms intervals numbered `tenths` (interval `i` starts at `i / 10` s),
/// and where it starts.
fn worst_p99(run: &Run, tenths: std::ops::Range<u32>) -> (f64, f64) {
    tenths
        .map(|i| {
            let from = f64::from(i) / 10.0;
            (run.p99(from, from + 0.1), from)
        })
        .fold((0.0, 0.0), |worst, p| if p.0 > worst.0 { p } else { worst })
}

/// The spike scenario at the seed job, with a stall of the CPU (100 ms) at 0.7x before it.
fn spike_with_a_stall() -> (Service, Load) {
    let load = Load::constant(0.7 * CAPACITY, 2.0)
        .then(1.4 * CAPACITY, 4.0)
        .then(0.7 * CAPACITY, 5.0);
    (seed_job().stall(1.2, 1.3), load)
}

#[test]
fn a_spike_while_the_workers_lag_the_limit_keeps_the_queue_bounded() {
    // A worker asked for starts 100 ms later, so the jobs in flight trail the limit, windows
    // rarely see it in use, and the queue stands below it. With only "a wait below the limit
    // is not binding" (the change reverted last session), such windows taught an inflated R0
    // and every settled window probed a "rise at constant N": the limit climbed to the
    // ceiling, 32,000 jobs were admitted at once, and p99 reached 1.1 s.
    for lag in [0.1, 0.2] {
        let (service, load) = spike_with_a_stall();
        let run = Sim::new(LimitAlgorithm::new(&adaptive(), CEILINGS), service, QUEUE)
            .with_spawn_lag(lag)
            .run(&load, 7);
        assert!(run.max_admitted <= 6_000, "lag {lag}: {}", run.max_admitted);
        assert!(run.mean_limit(2.5, 4.0) <= 1.6 * KNEE, "lag {lag}");
        assert!(run.goodput(2.5, 4.0) >= 0.9 * CAPACITY, "lag {lag}");
        let (p99, at) = worst_p99(&run, 15..50);
        assert!(p99 <= 0.15, "lag {lag}: p99 {p99} at {at}");
    }
}

#[test]
fn slowdown_sheds_nothing_though_every_job_waits_for_a_wake_up() {
    // Every job's measured wait includes 2 ms for its worker's wake-up on a busy machine, and
    // workers start 50 ms after they are asked for. When such waits made a window bind, the
    // pool at 0.3x load met "the limit" far below it, descended blind from cold and shed 54%
    // of the offer once the wait grew tenfold (the real runs: 22%).
    let load = Load::constant(0.3 * CAPACITY, 5.0);
    let service = seed_job().slow_down(2.0, 0.200);
    let run = Sim::new(LimitAlgorithm::new(&adaptive(), CEILINGS), service, QUEUE)
        .with_spawn_lag(0.05)
        .with_wake(0.002)
        .run(&load, 7);
    assert_eq!((run.shed, run.expired), (0, 0));
    assert!(run.goodput(4.5, 5.0) >= 0.29 * CAPACITY);
}

/// CPU a seed job costs when it starts while more jobs run than ever before (the model's docs:
/// 500 KiB at about 0.8 ms per MiB, measured on the 2-core VM).
const FIRST_TOUCH: f64 = 0.4e-3;

/// The default pool on `service` under `load`, paying for first touches.
fn touching(service: Service, load: &Load) -> Run {
    Sim::new(LimitAlgorithm::new(&adaptive(), CEILINGS), service, QUEUE)
        .with_first_touch(FIRST_TOUCH)
        .run(load, 7)
}

/// The spike of the issue (0.7x, 1.4x for 2 s, 0.7x) from cold, paying for first touches.
fn spike_from_cold() -> Load {
    Load::constant(0.7 * CAPACITY, 2.0)
        .then(1.4 * CAPACITY, 4.0)
        .then(0.7 * CAPACITY, 6.0)
}

#[test]
fn slowdown_sheds_nothing_though_each_rise_of_the_limit_touches_new_memory() {
    // Before bounded steps: the law doubled the limit (1,000 to 2,000) for the slower
    // downstream, the first touches of 1,000 more jobs stalled the CPU for 200 ms, the next
    // window read the stall as saturation and halved the limit: 38% of the offer shed or
    // expired (the real run: 23.6%).
    let run = touching(
        seed_job().slow_down(2.0, 0.200),
        &Load::constant(0.3 * CAPACITY, 6.0),
    );
    assert_eq!((run.shed, run.expired), (0, 0));
    assert!(run.goodput(5.0, 6.0) >= 0.29 * CAPACITY);
    // grown toward what the arrivals need (2,400 in flight), not to the ceiling (5,000 when
    // growth followed the backlog's binding windows alone)
    let need = 0.3 * CAPACITY * 0.2;
    assert!(
        (run.max_in_flight as f64) <= 1.6 * need,
        "{}",
        run.max_in_flight
    );
}

/// Over `[from, to)`: at least 90% of the capacity completed, p99 within 100 ms; and never
/// more than `max_in_flight` jobs ran at once.
fn assert_near_capacity(run: &Run, (from, to): (f64, f64), max_in_flight: f64) {
    let goodput = run.goodput(from, to);
    assert!(goodput >= 0.9 * CAPACITY, "goodput {goodput}");
    assert!(run.p99(from, to) <= 0.1, "p99 {}", run.p99(from, to));
    let most = run.max_in_flight as f64;
    assert!(most <= max_in_flight, "{most} in flight");
}

#[test]
fn spike_stays_bounded_though_each_rise_of_the_limit_touches_new_memory() {
    let run = touching(seed_job(), &spike_from_cold());
    assert_near_capacity(&run, (2.0, 4.0), 2.0 * KNEE);
    assert!(run.max_admitted <= 3_000, "{}", run.max_admitted);
    // within 300 ms of the spike's end, back to the job's own time
    let (p99, at) = worst_p99(&run, 43..60);
    assert!(p99 <= 0.025, "p99 {p99} at {at}");
}

#[test]
fn step_settles_near_the_knee_though_each_rise_of_the_limit_touches_new_memory() {
    let run = touching(seed_job(), &Load::constant(10.0 * CAPACITY, 3.0));
    assert_near_capacity(&run, (1.0, 3.0), 1.7 * KNEE);
    let limit = run.mean_limit(1.0, 3.0);
    assert!(
        (0.8 * KNEE..=1.6 * KNEE).contains(&limit),
        "limit {limit:.0}"
    );
}

/// The slowdown of the real runs (issue 10, goal 4): the seed job on a machine of 24,834 jobs/s
/// at 0.3x, its wait growing from 20 to 200 ms at 5 s, every wait ending on a 1 ms timer tick,
/// workers started 50 ms after they are asked for, 2 ms of wake-up in every queue wait, and first
/// touches. The need grows from 150 to 1,490 in flight, past the initial limit of 1,000, which
/// binds: the 1,000 jobs that fill it start together and end together 200 ms later, so the
/// completions come in cohorts and the count of a window swings twofold with its phase.
fn slowdown_in_cohorts() -> Run {
    let service = real_job().slow_down(5.0, 0.200);
    on_the_real_machine(service, &Load::constant(0.3 * REAL_CAPACITY, 10.0))
}

/// Jobs per second of the real runs' machine (`simulate --capacity 24834`).
const REAL_CAPACITY: f64 = 24_834.0;

/// The seed job on the real runs' machine, every wait ending on a 1 ms timer tick.
fn real_job() -> Service {
    Service::cpu(CORES, CORES / REAL_CAPACITY, WAIT).ticks(0.001)
}

/// The default pool with the real runs' costs: first touches, workers started 50 ms after they
/// are asked for, 2 ms of wake-up in every queue wait.
fn on_the_real_machine(service: Service, load: &Load) -> Run {
    Sim::new(LimitAlgorithm::new(&adaptive(), CEILINGS), service, QUEUE)
        .with_first_touch(FIRST_TOUCH)
        .with_spawn_lag(0.05)
        .with_wake(0.002)
        .run(load, 7)
}

#[test]
fn slowdown_in_cohorts_sheds_nothing_and_catches_up_with_the_demand() {
    // Before: one +25% probe 0.6 s after the slowdown, then a 14% move of N whose first
    // touches read as R following N (e = 0.6): "saturated", the limit halved to 625 and the
    // queue cut to the target: 7,792 shed or expired after 5 s (10.4% of the offer; the
    // real run 13%). (The cold start's own 85 sheds come from the 50 ms
    // worker lag and are not this test's subject.)
    let run = slowdown_in_cohorts();
    assert_eq!(run.lost_after(4.9), 0, "shed or expired after the slowdown");
    // the limit reaches the need (7,450/s x 200 ms) within a few hundred ms of the first
    // window that settles at the old limit, not after one probe per settled window
    let need = 0.3 * 24_834.0 * 0.2;
    let limit = run.mean_limit(5.8, 6.2);
    assert!(limit >= need, "limit {limit:.0}, need {need:.0}");
    // the backlog drains: back to the job's own time within 2.5 s
    let (p99, at) = worst_p99(&run, 75..100);
    assert!(p99 <= 0.21, "p99 {p99} at {at}");
    assert!(run.goodput(8.0, 10.0) >= 0.29 * 24_834.0);
}

#[test]
fn a_step_holds_the_limit_within_the_memory_bound_after_the_cold_start() {
    // Goal 1's memory bound is 1.5x the jobs Little's law needs (plus 100 MiB): the limit, and
    // with it the memory its jobs touch, must not swing far past the knee. When the room rule
    // grew by a fixed 10-25% from just under the tolerance it reached 805 (1.61x the knee; the
    // real run: 770 around a knee of 620, then a creep to 968 and 537 MiB); now 786.
    // the step of the real runs (issue 10, goal 1), 10x from cold
    let run = on_the_real_machine(real_job(), &Load::constant(10.0 * REAL_CAPACITY, 10.0));
    let capacity = REAL_CAPACITY;
    let knee = capacity * (WAIT + CORES / capacity);
    let peak = run
        .limits
        .iter()
        .filter(|(t, _)| *t >= 1.0)
        .map(|&(_, l)| l)
        .max()
        .unwrap_or(0);
    assert!(peak as f64 <= 1.6 * knee, "limit {peak}, knee {knee:.0}");
    assert!(run.goodput(1.0, 10.0) >= 0.9 * capacity);
    assert!(run.p99(1.0, 10.0) <= 0.1, "p99 {}", run.p99(1.0, 10.0));
}

/// The real runs' machine with a busy neighbour: every 20-100 ms the cores the pool gets
/// change to a random 1.4-2.0 (another build on the shared VM), so two windows around a move
/// of the limit can both be slowed alike.
fn real_job_beside_a_neighbour(until: f64) -> Service {
    let mut service = real_job();
    let (mut t, mut seed) = (0.5, 11_u64);
    while t < until {
        service = service.cores_at(t, 2.0 - 0.6 * splitmix_unit(&mut seed));
        t += 0.02 + 0.08 * splitmix_unit(&mut seed);
    }
    service
}

#[test]
fn a_long_overload_beside_a_busy_neighbour_does_not_drift() {
    // Issue 10, goal 6 (the soak: 5x for 10 minutes, the limit's CV <= 10%). The real soak's
    // limit went 760 -> 1,460 while completions stayed flat: two windows slowed alike by the
    // neighbour around a move of the limit read as a flat step, whose mean run time became
    // `R0` whole (22 -> 33 ms), and the room rule grew the limit until `R` was 1.25 times
    // that. In this model, before: `R0` 21.3 -> 31.3 ms at 13 s, the limit 560 -> 800,
    // p99 105 ms, for the same goodput.
    let end = 20.0;
    let run = on_the_real_machine(
        real_job_beside_a_neighbour(end),
        &Load::constant(5.0 * REAL_CAPACITY, end),
    );
    let baseline_at = |t: f64| run.baselines.iter().rfind(|b| b.0 < t).map_or(0.0, |b| b.1);
    let learned = baseline_at(2.0);
    let highest = run
        .baselines
        .iter()
        .filter(|b| b.0 >= 2.0)
        .map(|b| b.1)
        .fold(learned, f64::max);
    assert!(highest <= 1.1 * learned, "R0 {learned} -> {highest}");
    let per_second: Vec<f64> = (2..20)
        .map(|s| run.mean_limit(f64::from(s), f64::from(s + 1)))
        .collect();
    let mean = per_second.iter().sum::<f64>() / per_second.len() as f64;
    let variance = per_second.iter().map(|l| (l - mean).powi(2)).sum::<f64>();
    let cv = (variance / per_second.len() as f64).sqrt() / mean;
    assert!(cv <= 0.1, "cv {cv:.3}: {per_second:.0?}");
    let (first, last) = (run.mean_limit(2.0, 7.0), run.mean_limit(15.0, 20.0));
    assert!(
        (last / first - 1.0).abs() <= 0.1,
        "limit {first:.0} -> {last:.0}"
    );
    let (first, last) = (run.goodput(2.0, 7.0), run.goodput(15.0, 20.0));
    assert!(
        (last / first - 1.0).abs() <= 0.05,
        "goodput {first:.0} -> {last:.0}"
    );
    let (p99, at) = worst_p99(&run, 20..200);
    assert!(p99 <= 0.1, "p99 {p99} at {at}");
}

/// The slowdown of `slowdown_in_cohorts` from a limit a cold start on a busy machine brought
/// down (half a core until 2 s: the limit 480 when the downstream slows at 5 s).
fn slowdown_from_a_low_limit() -> Run {
    let service = Service::cpu(0.5, CORES / REAL_CAPACITY, WAIT)
        .ticks(0.001)
        .cores_at(2.0, CORES)
        .slow_down(5.0, 0.200);
    on_the_real_machine(service, &Load::constant(0.3 * REAL_CAPACITY, 10.0))
}

#[test]
fn a_slowdown_is_caught_up_with_before_a_window_settles() {
    // Goal 7: the limit caught up 0.6 s after the slowdown, on the first settled window, and
    // by at most doubling: p99 over the slow phase 596 ms (the real run: 449 ms, the
    // semaphore's 204 ms); from a limit of 480, a doubling and three flat steps, 963 ms.
    let run = slowdown_in_cohorts();
    let first = run
        .moves
        .iter()
        .find(|m| m.0 >= 5.0)
        .expect("the limit moved");
    assert_eq!(first.2, "catching up with the demand", "{first:?}");
    assert!(
        first.0 <= 5.3,
        "{first:?}: one new run time after the change"
    );
    let p99 = run.p99(5.0, 10.0);
    assert!(p99 <= 0.45, "p99 {p99}");
    assert_eq!(run.lost_after(4.9), 0);
    let low = slowdown_from_a_low_limit();
    assert!(
        low.mean_limit(4.5, 4.9) < 600.0,
        "a low limit before the slowdown"
    );
    let p99 = low.p99(5.0, 10.0);
    assert!(p99 <= 0.6, "p99 {p99}");
    assert_eq!(low.lost_after(4.9), 0);
    // neither overshoots the need (7,450/s x 200 ms = 1,490) past the tolerance and a margin
    for run in [&run, &low] {
        assert!(run.max_in_flight <= 2_100, "{}", run.max_in_flight);
    }
}

/// The figures of the cold start and the slowdown in the real-machine model, for the history
/// (`--nocapture`), and the cold limit's bounds (issue 10, goals 1 and 5): a step from cold
/// runs at most the cold limit before its first verdict (1,000 before session 8: 490 MiB of
/// first touches at once on the real machine) and admits at most that plus the initial limit;
/// a pool that ran below its limit meets the low rate's burst and the slowdown at the initial
/// limit.
#[test]
fn figures_of_the_real_machine_model() {
    let step = on_the_real_machine(real_job(), &Load::constant(16.0 * REAL_CAPACITY, 4.0));
    let slow = slowdown_in_cohorts();
    let low = slowdown_from_a_low_limit();
    let burst = on_the_real_machine(
        real_job(),
        &Load::constant(10.0, 5.0).burst(5.0, 1_000).then(10.0, 6.0),
    );
    let spike = on_the_real_machine(
        real_job(),
        &Load::constant(0.7 * REAL_CAPACITY, 2.0)
            .then(1.4 * REAL_CAPACITY, 4.0)
            .then(0.7 * REAL_CAPACITY, 6.0),
    );
    let (worst, at) = worst_p99(&step, 0..40);
    println!(
        "step 16x: max in flight {}, admitted {}, p99 0-4 s {:.0} ms, worst 100 ms {:.0} ms at {at}, goodput 1-4 s {:.0}",
        step.max_in_flight,
        step.max_admitted,
        step.p99(0.0, 4.0) * 1e3,
        worst * 1e3,
        step.goodput(1.0, 4.0)
    );
    let (worst, at) = worst_p99(&slow, 50..100);
    println!(
        "slowdown: limit before {:.0}, p99 5-10 s {:.0} ms, worst 100 ms {:.0} at {at}, lost {}, max in flight {}",
        slow.mean_limit(4.0, 4.9),
        slow.p99(5.0, 10.0) * 1e3,
        worst * 1e3,
        slow.shed + slow.expired,
        slow.max_in_flight
    );
    println!(
        "slowdown from a low limit: limit before {:.0}, p99 5-10 s {:.0} ms, lost {}",
        low.mean_limit(4.0, 4.9),
        low.p99(5.0, 10.0) * 1e3,
        low.shed + low.expired
    );
    println!(
        "low-rate burst: shed {}, expired {}, p99 5-6 s {:.0} ms, limit at 4.9 s {:.0}",
        burst.shed,
        burst.expired,
        burst.p99(5.0, 6.0) * 1e3,
        burst.mean_limit(4.5, 4.99)
    );
    let (worst, at) = worst_p99(&spike, 0..60);
    let (after, after_at) = worst_p99(&spike, 40..42);
    println!(
        "spike: worst 100 ms p99 {:.0} ms at {at}, 4.0-4.2 s {:.0} at {after_at}, pre-spike 1-2 s {:.0}, goodput 2-4 s {:.0}, max in flight {}",
        worst * 1e3,
        after * 1e3,
        spike.p99(1.0, 2.0) * 1e3,
        spike.goodput(2.0, 4.0),
        spike.max_in_flight
    );
    assert!(step.max_admitted <= 750 + 1_000, "{}", step.max_admitted);
    assert!(spike.max_in_flight <= 750, "{}", spike.max_in_flight);
    // the step's limit grows past the cold one only once the law has learned the knee
    assert!(step.max_in_flight <= 800, "{}", step.max_in_flight);
    assert!(burst.mean_limit(4.5, 4.99) >= 1_000.0);
    assert_eq!((burst.shed, burst.expired), (0, 0));
    assert!(slow.mean_limit(4.0, 4.9) >= 1_000.0);
    assert_eq!(slow.lost_after(4.9), 0);
}
