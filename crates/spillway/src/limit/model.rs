//! A deterministic discrete-event model of a pool driving a [`LimitAlgorithm`], for tests.
//!
//! Open-loop Poisson arrivals (piecewise-constant rate, plus bursts) meet the pool: a job starts
//! when fewer than `limit` run, waits in the queue while it holds fewer than the algorithm's
//! `queue_bound`, and is shed otherwise. Two services stand for the job body:
//!
//! * [`Service::cpu`]: `C` cores shared equally (processor sharing) by the jobs in their CPU
//!   phase (exponentially distributed, so that a burst does not stay in lockstep), then a fixed
//!   wait (the seed job: about 50 us of CPU, then 20 ms of downstream I/O).
//! * [`Service::permits`]: a downstream semaphore of `P` permits, each held for `T`, FIFO.
//!
//! Time is `f64` seconds; nothing here reads a clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use super::{LimitAlgorithm, Sample};

/// A totally ordered `f64` for the heaps (times are never NaN here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct T(f64);
impl Eq for T {}
impl Ord for T {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl PartialOrd for T {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A step change of a service parameter at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    pub(crate) at: f64,
    pub(crate) value: f64,
}

fn value_at(initial: f64, steps: &[Step], now: f64) -> f64 {
    steps
        .iter()
        .rfind(|s| s.at <= now)
        .map_or(initial, |s| s.value)
}

#[derive(Debug)]
pub(crate) enum Service {
    Cpu {
        cores: f64,
        core_steps: Vec<Step>,
        cpu: f64,
        wait: f64,
        wait_steps: Vec<Step>,
        /// Virtual time of the processor-sharing phase.
        virtual_now: f64,
        cpu_jobs: BinaryHeap<Reverse<(T, usize)>>,
        waiting: BinaryHeap<Reverse<(T, usize)>>,
    },
    Permits {
        free: usize,
        hold: f64,
        hold_steps: Vec<Step>,
        waiters: VecDeque<usize>,
        holding: BinaryHeap<Reverse<(T, usize)>>,
    },
}

impl Service {
    pub(crate) fn cpu(cores: f64, cpu: f64, wait: f64) -> Service {
        Service::Cpu {
            cores,
            core_steps: Vec::new(),
            cpu,
            wait,
            wait_steps: Vec::new(),
            virtual_now: 0.0,
            cpu_jobs: BinaryHeap::new(),
            waiting: BinaryHeap::new(),
        }
    }

    pub(crate) fn permits(permits: usize, hold: f64) -> Service {
        Service::Permits {
            free: permits,
            hold,
            hold_steps: Vec::new(),
            waiters: VecDeque::new(),
            holding: BinaryHeap::new(),
        }
    }

    /// The job's wait (CPU model) or hold (permits) becomes `value` from `at` on.
    pub(crate) fn slow_down(mut self, at: f64, value: f64) -> Service {
        match &mut self {
            Service::Cpu { wait_steps, .. } => wait_steps.push(Step { at, value }),
            Service::Permits { hold_steps, .. } => hold_steps.push(Step { at, value }),
        }
        self
    }

    /// The CPU model's cores become `value` from `at` on.
    pub(crate) fn cores_at(mut self, at: f64, value: f64) -> Service {
        if let Service::Cpu { core_steps, .. } = &mut self {
            core_steps.push(Step { at, value });
        }
        self
    }

    /// Starts job `id`; `unit` is uniform in `(0, 1)` and draws its CPU time (exponential).
    fn start(&mut self, id: usize, now: f64, unit: f64) {
        match self {
            Service::Cpu {
                cpu,
                virtual_now,
                cpu_jobs,
                ..
            } => cpu_jobs.push(Reverse((T(*virtual_now - *cpu * unit.ln()), id))),
            Service::Permits {
                free,
                hold,
                hold_steps,
                waiters,
                holding,
            } => {
                if *free > 0 {
                    *free -= 1;
                    let end = now + value_at(*hold, hold_steps, now);
                    holding.push(Reverse((T(end), id)));
                } else {
                    waiters.push_back(id);
                }
            }
        }
    }

    /// The time of the next internal event, if any.
    fn next_event(&self, now: f64) -> Option<f64> {
        match self {
            Service::Cpu {
                cores,
                core_steps,
                virtual_now,
                cpu_jobs,
                waiting,
                ..
            } => {
                let rate = ps_rate(value_at(*cores, core_steps, now), cpu_jobs.len());
                let cpu = cpu_jobs
                    .peek()
                    .map(|Reverse((T(v), _))| now + (v - virtual_now).max(0.0) / rate);
                let wait = waiting.peek().map(|Reverse((T(t), _))| *t);
                let change = core_steps.iter().map(|s| s.at).find(|&at| at > now);
                [cpu, wait, change].into_iter().flatten().reduce(f64::min)
            }
            Service::Permits { holding, .. } => holding.peek().map(|Reverse((T(t), _))| *t),
        }
    }

    /// Advances from `now` to `to` (no event strictly inside) and returns the jobs that finished.
    fn advance(&mut self, now: f64, to: f64, done: &mut Vec<usize>) {
        match self {
            Service::Cpu {
                cores,
                core_steps,
                wait,
                wait_steps,
                virtual_now,
                cpu_jobs,
                waiting,
                ..
            } => {
                let rate = ps_rate(value_at(*cores, core_steps, now), cpu_jobs.len());
                *virtual_now += (to - now) * rate;
                while let Some(Reverse((T(v), id))) = cpu_jobs.peek().copied() {
                    if v > *virtual_now + 1e-12 {
                        break;
                    }
                    cpu_jobs.pop();
                    let end = to + value_at(*wait, wait_steps, to);
                    waiting.push(Reverse((T(end), id)));
                }
                while let Some(Reverse((T(t), id))) = waiting.peek().copied() {
                    if t > to {
                        break;
                    }
                    waiting.pop();
                    done.push(id);
                }
            }
            Service::Permits {
                free,
                hold,
                hold_steps,
                waiters,
                holding,
            } => {
                while let Some(Reverse((T(t), id))) = holding.peek().copied() {
                    if t > to {
                        break;
                    }
                    holding.pop();
                    done.push(id);
                    match waiters.pop_front() {
                        Some(next) => {
                            let end = to + value_at(*hold, hold_steps, to);
                            holding.push(Reverse((T(end), next)));
                        }
                        None => *free += 1,
                    }
                }
            }
        }
    }
}

fn ps_rate(cores: f64, jobs: usize) -> f64 {
    if jobs == 0 {
        1.0
    } else {
        (cores / jobs as f64).min(1.0)
    }
}

/// Offered load: Poisson arrivals at a piecewise-constant rate, plus instant bursts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Load {
    /// `(until, rate per second)`, in order.
    pub(crate) phases: Vec<(f64, f64)>,
    /// `(at, jobs)`.
    pub(crate) bursts: Vec<(f64, usize)>,
}

impl Load {
    pub(crate) fn constant(rate: f64, until: f64) -> Load {
        Load {
            phases: vec![(until, rate)],
            bursts: Vec::new(),
        }
    }

    pub(crate) fn then(mut self, rate: f64, until: f64) -> Load {
        self.phases.push((until, rate));
        self
    }

    pub(crate) fn burst(mut self, at: f64, jobs: usize) -> Load {
        self.bursts.push((at, jobs));
        self
    }

    fn end(&self) -> f64 {
        let phases = self.phases.last().map_or(0.0, |p| p.0);
        let bursts = self.bursts.iter().map(|b| b.0).fold(0.0, f64::max);
        phases.max(bursts)
    }

    /// All arrival times, in order.
    fn arrivals(&self, rng: &mut Rng) -> Vec<f64> {
        let mut times = Vec::new();
        let mut start = 0.0;
        for &(until, rate) in &self.phases {
            let mut t = start;
            if rate > 0.0 {
                loop {
                    t += rng.exp(rate);
                    if t >= until {
                        break;
                    }
                    times.push(t);
                }
            }
            start = until;
        }
        for &(at, jobs) in &self.bursts {
            times.extend(std::iter::repeat_n(at, jobs));
        }
        times.sort_by(f64::total_cmp);
        times
    }
}

/// splitmix64.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn exp(&mut self, rate: f64) -> f64 {
        -self.unit().ln() / rate
    }
}

/// One finished job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done {
    pub(crate) arrival: f64,
    pub(crate) start: f64,
    pub(crate) end: f64,
}

/// What a run produced.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) offered: usize,
    pub(crate) shed: usize,
    pub(crate) expired: usize,
    pub(crate) done: Vec<Done>,
    /// `(time, limit)` every millisecond of model time at which something happened.
    pub(crate) limits: Vec<(f64, usize)>,
    pub(crate) max_in_flight: usize,
}

impl Run {
    fn done_in(&self, from: f64, to: f64) -> impl Iterator<Item = &Done> {
        self.done
            .iter()
            .filter(move |d| d.end >= from && d.end < to)
    }

    /// Completions per second with an end in `[from, to)`.
    pub(crate) fn goodput(&self, from: f64, to: f64) -> f64 {
        self.done_in(from, to).count() as f64 / (to - from)
    }

    /// The 99th percentile of arrival-to-end latency, over jobs ending in `[from, to)`.
    pub(crate) fn p99(&self, from: f64, to: f64) -> f64 {
        self.percentile(0.99, from, to)
    }

    /// The `q` quantile of arrival-to-end latency, over jobs ending in `[from, to)`.
    pub(crate) fn percentile(&self, q: f64, from: f64, to: f64) -> f64 {
        let mut lat: Vec<f64> = self.done_in(from, to).map(|d| d.end - d.arrival).collect();
        if lat.is_empty() {
            return 0.0;
        }
        lat.sort_by(f64::total_cmp);
        lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1]
    }

    /// The mean limit over `[from, to)`, sampled where recorded.
    pub(crate) fn mean_limit(&self, from: f64, to: f64) -> f64 {
        let inside: Vec<f64> = self
            .limits
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|&(_, l)| l as f64)
            .collect();
        inside.iter().sum::<f64>() / inside.len().max(1) as f64
    }

    pub(crate) fn shed_fraction(&self) -> f64 {
        (self.shed + self.expired) as f64 / self.offered.max(1) as f64
    }
}

/// A pool under `load`, running jobs on `service`, its concurrency set by `algorithm`.
#[derive(Debug)]
pub(crate) struct Sim {
    algorithm: LimitAlgorithm,
    service: Service,
    queue_capacity: usize,
    now: f64,
    queue: VecDeque<usize>,
    in_flight: usize,
    jobs: Vec<Job>,
    rng: Rng,
    run: Run,
}

#[derive(Debug, Clone, Copy)]
struct Job {
    arrival: f64,
    start: f64,
    in_flight: usize,
}

fn dur(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.max(0.0))
}

impl Sim {
    pub(crate) fn new(algorithm: LimitAlgorithm, service: Service, queue_capacity: usize) -> Sim {
        Sim {
            algorithm,
            service,
            queue_capacity,
            now: 0.0,
            queue: VecDeque::new(),
            in_flight: 0,
            jobs: Vec::new(),
            rng: Rng(0),
            run: Run::default(),
        }
    }

    /// Runs `load` to its end, then lets the admitted jobs finish.
    pub(crate) fn run(mut self, load: &Load, seed: u64) -> Run {
        let arrivals = load.arrivals(&mut Rng(seed));
        self.rng = Rng(seed ^ 0x5EED);
        let end = load.end();
        let mut done = Vec::new();
        for &at in arrivals.iter().chain(std::iter::once(&f64::INFINITY)) {
            self.advance_to(at.min(end + 60.0), &mut done);
            if at.is_finite() {
                self.arrive(at);
            }
        }
        self.run
    }

    fn advance_to(&mut self, to: f64, done: &mut Vec<usize>) {
        while let Some(next) = self.service.next_event(self.now).filter(|&t| t <= to) {
            self.service.advance(self.now, next, done);
            self.now = next;
            for id in done.drain(..) {
                self.finish(id);
            }
        }
        self.service.advance(self.now, to, done);
        self.now = to;
        for id in done.drain(..) {
            self.finish(id);
        }
    }

    fn arrive(&mut self, at: f64) {
        self.run.offered += 1;
        let id = self.jobs.len();
        self.jobs.push(Job {
            arrival: at,
            start: at,
            in_flight: 0,
        });
        if self.queue.is_empty() && self.in_flight < self.algorithm.limit() {
            self.start(id);
        } else if self.queue.len() < self.algorithm.queue_bound(self.queue_capacity) {
            self.queue.push_back(id);
        } else {
            self.run.shed += 1;
            self.algorithm.on_shed(dur(self.now));
            self.fill();
        }
        self.record_limit();
    }

    fn start(&mut self, id: usize) {
        self.in_flight += 1;
        self.run.max_in_flight = self.run.max_in_flight.max(self.in_flight);
        let job = &mut self.jobs[id];
        job.start = self.now;
        job.in_flight = self.in_flight;
        let unit = self.rng.unit();
        self.service.start(id, self.now, unit);
    }

    fn finish(&mut self, id: usize) {
        self.in_flight -= 1;
        let job = self.jobs[id];
        self.run.done.push(Done {
            arrival: job.arrival,
            start: job.start,
            end: self.now,
        });
        let sample = Sample {
            run: dur(self.now - job.start),
            queue_wait: dur(job.start - job.arrival),
            in_flight: job.in_flight,
            dropped: false,
        };
        self.algorithm.on_sample(dur(self.now), &sample);
        self.fill();
        self.record_limit();
    }

    /// Starts queued jobs while the limit allows, dropping those that waited too long.
    fn fill(&mut self) {
        while self.in_flight < self.algorithm.limit() {
            let Some(id) = self.queue.pop_front() else {
                return;
            };
            let waited = self.now - self.jobs[id].arrival;
            if self.algorithm.drop_at_dequeue(dur(waited)) {
                self.run.expired += 1;
                let sample = Sample {
                    run: Duration::ZERO,
                    queue_wait: dur(waited),
                    in_flight: self.in_flight,
                    dropped: true,
                };
                self.algorithm.on_sample(dur(self.now), &sample);
            } else {
                self.start(id);
            }
        }
    }

    fn record_limit(&mut self) {
        let last = self.run.limits.last().map_or(-1.0, |l| l.0);
        if self.now - last >= 0.001 {
            self.run.limits.push((self.now, self.algorithm.limit()));
        }
    }
}
