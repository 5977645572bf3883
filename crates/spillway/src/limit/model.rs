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
//! The pool's workers are unlimited and start at once unless [`Sim::with_spawn_lag`] sets a
//! delay: then a job starts only on an idle worker, and a worker asked for (when a queued job
//! finds none idle, up to the limit) is ready only that long after (a spawned task polled late on
//! a busy machine: the worker count lags the limit).
//!
//! [`Sim::with_wake`] adds a fixed delay to every job's measured queue wait, for the wake-up of
//! a worker on a busy machine: a job that found the limit with room still "waited".
//!
//! [`Sim::with_first_touch`] adds a CPU cost to every job that starts while more jobs run than
//! ever before: the memory it holds (the seed job's 500 KiB) is memory the process has not
//! touched yet, and the kernel zeroes it page by page on first touch, on the same cores as the
//! jobs. Measured on the 2-core VM: about 0.8 ms of CPU per MiB (3 us per page fault), so
//! 0.4 ms per seed job, several times the job's own CPU; 1,000 more jobs at once stalled both
//! cores for 0.4-1 s in real runs (a limit doubled from 1,000 to 2,000). Freed memory is
//! reused (mimalloc), so only a new peak of the number running costs.
//!
//! Time is `f64` seconds; nothing here reads a clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use super::measure::splitmix_unit;
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

/// A parameter that steps to new values at given times.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    initial: f64,
    /// `(at, value)`, in order.
    steps: Vec<(f64, f64)>,
}

impl Param {
    fn new(initial: f64) -> Param {
        Param {
            initial,
            steps: Vec::new(),
        }
    }

    fn at(&self, now: f64) -> f64 {
        self.steps
            .iter()
            .rfind(|s| s.0 <= now)
            .map_or(self.initial, |s| s.1)
    }

    fn next_change(&self, now: f64) -> Option<f64> {
        self.steps.iter().map(|s| s.0).find(|&at| at > now)
    }
}

/// A heap of `(time, job)`, earliest first.
type Timers = BinaryHeap<Reverse<(T, usize)>>;

/// Pops the earliest entry when it is at or before `limit`.
fn pop_due(timers: &mut Timers, limit: f64) -> Option<(f64, usize)> {
    let &Reverse((T(t), id)) = timers.peek()?;
    (t <= limit).then(|| {
        timers.pop();
        (t, id)
    })
}

/// Processor sharing on `cores`, then a fixed wait.
#[derive(Debug)]
pub(crate) struct Cpu {
    cores: Param,
    /// Mean CPU time per job.
    cpu: f64,
    wait: Param,
    /// Virtual time of the processor-sharing phase: each job in it gets `min(1, cores / jobs)`.
    virtual_now: f64,
    cpu_jobs: Timers,
    waiting: Timers,
    /// The timer's resolution: a wait ends on the next tick (tokio's timer wheel: 1 ms).
    tick: f64,
}

impl Cpu {
    fn rate(&self, now: f64) -> f64 {
        match self.cpu_jobs.len() {
            0 => 1.0,
            jobs => (self.cores.at(now) / jobs as f64).min(1.0),
        }
    }

    fn next_event(&self, now: f64) -> Option<f64> {
        let rate = self.rate(now);
        let cpu = self
            .cpu_jobs
            .peek()
            .map(|Reverse((T(v), _))| now + (v - self.virtual_now).max(0.0) / rate);
        let wait = self.waiting.peek().map(|Reverse((T(t), _))| *t);
        [cpu, wait, self.cores.next_change(now)]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    }

    fn advance(&mut self, now: f64, to: f64, done: &mut Vec<usize>) {
        self.virtual_now += (to - now) * self.rate(now);
        while let Some((_, id)) = pop_due(&mut self.cpu_jobs, self.virtual_now + 1e-12) {
            let end = to + self.wait.at(to);
            let end = if self.tick > 0.0 {
                (end / self.tick).ceil() * self.tick
            } else {
                end
            };
            self.waiting.push(Reverse((T(end), id)));
        }
        while let Some((_, id)) = pop_due(&mut self.waiting, to) {
            done.push(id);
        }
    }
}

/// A downstream semaphore: `free` permits, each held for `hold`, handed out FIFO.
#[derive(Debug)]
pub(crate) struct Permits {
    free: usize,
    hold: Param,
    waiters: VecDeque<usize>,
    holding: Timers,
}

impl Permits {
    fn start(&mut self, id: usize, now: f64) {
        if self.free > 0 {
            self.free -= 1;
            self.holding.push(Reverse((T(now + self.hold.at(now)), id)));
        } else {
            self.waiters.push_back(id);
        }
    }

    fn advance(&mut self, to: f64, done: &mut Vec<usize>) {
        while let Some((_, id)) = pop_due(&mut self.holding, to) {
            done.push(id);
            match self.waiters.pop_front() {
                Some(next) => {
                    let end = to + self.hold.at(to);
                    self.holding.push(Reverse((T(end), next)));
                }
                None => self.free += 1,
            }
        }
    }
}

#[derive(Debug)]
pub(crate) enum Service {
    Cpu(Cpu),
    Permits(Permits),
}

impl Service {
    pub(crate) fn cpu(cores: f64, cpu: f64, wait: f64) -> Service {
        Service::Cpu(Cpu {
            cores: Param::new(cores),
            cpu,
            wait: Param::new(wait),
            virtual_now: 0.0,
            cpu_jobs: Timers::new(),
            waiting: Timers::new(),
            tick: 0.0,
        })
    }

    pub(crate) fn permits(permits: usize, hold: f64) -> Service {
        Service::Permits(Permits {
            free: permits,
            hold: Param::new(hold),
            waiters: VecDeque::new(),
            holding: Timers::new(),
        })
    }

    /// The job's wait (CPU model) or hold (permits) becomes `value` from `at` on.
    pub(crate) fn slow_down(mut self, at: f64, value: f64) -> Service {
        match &mut self {
            Service::Cpu(cpu) => cpu.wait.steps.push((at, value)),
            Service::Permits(permits) => permits.hold.steps.push((at, value)),
        }
        self
    }

    /// The CPU model's jobs make almost no progress from `at` to `until` (the machine's cores
    /// taken by something else): completions stall.
    pub(crate) fn stall(self, at: f64, until: f64) -> Service {
        let cores = match &self {
            Service::Cpu(cpu) => cpu.cores.at(at),
            Service::Permits(_) => return self,
        };
        self.cores_at(at, cores / 100.0).cores_at(until, cores)
    }

    /// The CPU model's waits end on the next multiple of `tick` seconds (a timer wheel).
    pub(crate) fn ticks(mut self, tick: f64) -> Service {
        if let Service::Cpu(cpu) = &mut self {
            cpu.tick = tick;
        }
        self
    }

    /// The CPU model's cores become `value` from `at` on.
    pub(crate) fn cores_at(mut self, at: f64, value: f64) -> Service {
        if let Service::Cpu(cpu) = &mut self {
            cpu.cores.steps.push((at, value));
        }
        self
    }

    /// Starts job `id`; `unit` is uniform in `(0, 1)` and draws its CPU time (exponential), to
    /// which `extra` seconds are added (the CPU model only).
    fn start(&mut self, id: usize, now: f64, unit: f64, extra: f64) {
        match self {
            Service::Cpu(c) => {
                let finish = c.virtual_now - c.cpu * unit.ln() + extra;
                c.cpu_jobs.push(Reverse((T(finish), id)));
            }
            Service::Permits(p) => p.start(id, now),
        }
    }

    /// The time of the next internal event, if any.
    fn next_event(&self, now: f64) -> Option<f64> {
        match self {
            Service::Cpu(c) => c.next_event(now),
            Service::Permits(p) => p.holding.peek().map(|Reverse((T(t), _))| *t),
        }
    }

    /// Advances from `now` to `to` (no event strictly inside), collecting the jobs that finished.
    fn advance(&mut self, now: f64, to: f64, done: &mut Vec<usize>) {
        match self {
            Service::Cpu(c) => c.advance(now, to, done),
            Service::Permits(p) => p.advance(to, done),
        }
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

/// The model's random source.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn unit(&mut self) -> f64 {
        splitmix_unit(&mut self.0)
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
    /// The most jobs admitted at once: running plus queued.
    pub(crate) max_admitted: usize,
    /// `(time, new limit, reason)` at every move of the limit.
    pub(crate) moves: Vec<(f64, usize, &'static str)>,
    /// When each shed or expired job was lost.
    pub(crate) lost: Vec<f64>,
    /// `(time, R0 in seconds)` at every change of the adaptive law's uncongested run time.
    pub(crate) baselines: Vec<(f64, f64)>,
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

    /// Jobs shed or expired at or after `from`.
    pub(crate) fn lost_after(&self, from: f64) -> usize {
        self.lost.iter().filter(|&&t| t >= from).count()
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
    /// Workers ready to take a job; unused while `spawn_lag` is zero (then workers are free).
    workers: usize,
    spawn_lag: f64,
    /// Added to every job's measured queue wait.
    wake: f64,
    /// When each worker asked for becomes ready.
    spawning: BinaryHeap<Reverse<T>>,
    /// CPU seconds added to a job that starts above `touched` (module docs).
    first_touch: f64,
    /// The most jobs that ever ran at once: the memory the process has touched.
    touched: usize,
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
            workers: 0,
            spawn_lag: 0.0,
            wake: 0.0,
            spawning: BinaryHeap::new(),
            first_touch: 0.0,
            touched: 0,
        }
    }

    /// A job that starts while more run than ever before costs `cpu` more seconds of CPU
    /// (module docs).
    pub(crate) fn with_first_touch(mut self, cpu: f64) -> Sim {
        self.first_touch = cpu;
        self
    }

    /// A worker asked for is ready `lag` seconds later (module docs).
    pub(crate) fn with_spawn_lag(mut self, lag: f64) -> Sim {
        self.spawn_lag = lag;
        self
    }

    /// Every job's measured queue wait is `wake` seconds longer (module docs).
    pub(crate) fn with_wake(mut self, wake: f64) -> Sim {
        self.wake = wake;
        self
    }

    /// Whether one more job may start now: below the limit, and on an idle worker.
    fn may_start(&self) -> bool {
        let workers = if self.spawn_lag > 0.0 {
            self.workers
        } else {
            usize::MAX
        };
        self.in_flight < self.algorithm.limit().min(workers)
    }

    /// Asks for workers while queued jobs find none idle, up to the limit.
    fn spawn(&mut self) {
        if self.spawn_lag <= 0.0 {
            return;
        }
        let idle = self.workers + self.spawning.len() - self.in_flight;
        let room = self
            .algorithm
            .limit()
            .saturating_sub(self.workers + self.spawning.len());
        for _ in 0..self.queue.len().saturating_sub(idle).min(room) {
            self.spawning.push(Reverse(T(self.now + self.spawn_lag)));
        }
    }

    /// Workers asked for by `now` are ready: they take queued jobs.
    fn spawned(&mut self) {
        while self.spawning.peek().is_some_and(|r| r.0.0 <= self.now) {
            self.spawning.pop();
            self.workers += 1;
        }
        self.fill();
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
        while let Some(next) = self.next_event().filter(|&t| t <= to) {
            self.service.advance(self.now, next, done);
            self.now = next;
            for id in done.drain(..) {
                self.finish(id);
            }
            self.spawned();
        }
        self.service.advance(self.now, to, done);
        self.now = to;
        for id in done.drain(..) {
            self.finish(id);
        }
    }

    fn next_event(&self) -> Option<f64> {
        let spawn = self.spawning.peek().map(|r| r.0.0);
        [self.service.next_event(self.now), spawn]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    }

    fn arrive(&mut self, at: f64) {
        self.run.offered += 1;
        let id = self.jobs.len();
        self.jobs.push(Job {
            arrival: at,
            start: at,
            in_flight: 0,
        });
        if self.queue.is_empty() && self.may_start() {
            self.start(id);
        } else if self.has_room() {
            self.queue.push_back(id);
            self.spawn();
            let admitted = self.in_flight + self.queue.len();
            self.run.max_admitted = self.run.max_admitted.max(admitted);
        } else {
            self.run.shed += 1;
            self.run.lost.push(self.now);
            self.algorithm.on_shed(dur(self.now), |_, _| {});
            self.fill();
        }
        self.record_limit();
    }

    /// The driver's admission check (`Limiter::has_room`) for the adaptive limit: fewer queued
    /// than the queue bound, unless the algorithm bounds only what waits beyond the limit, and
    /// fewer in flight and queued than the limit plus the bound. Unlike the driver, a bound of
    /// zero admits nothing here (the adaptive limit's bound is never zero; the driver's zero is
    /// the peers' "no queue").
    fn has_room(&self) -> bool {
        let bound = self.algorithm.queue_bound(self.queue_capacity);
        let queued = self.queue.len();
        let alone = queued < bound || !self.algorithm.bounds_queue_alone();
        let beyond = self.in_flight + queued < self.algorithm.limit().saturating_add(bound);
        bound > 0 && alone && beyond && queued < self.queue_capacity
    }

    fn start(&mut self, id: usize) {
        self.in_flight += 1;
        self.run.max_in_flight = self.run.max_in_flight.max(self.in_flight);
        let admitted = self.in_flight + self.queue.len();
        self.run.max_admitted = self.run.max_admitted.max(admitted);
        let job = &mut self.jobs[id];
        job.start = self.now;
        job.in_flight = self.in_flight;
        let unit = self.rng.unit();
        let touch = if self.in_flight > self.touched {
            self.touched = self.in_flight;
            self.first_touch
        } else {
            0.0
        };
        self.service.start(id, self.now, unit, touch);
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
            queue_wait: dur(job.start - job.arrival + self.wake),
            in_flight: job.in_flight,
            dropped: false,
        };
        self.algorithm.on_sample(dur(self.now), &sample);
        self.fill();
        self.record_limit();
    }

    /// Starts queued jobs while the limit allows, dropping those that waited too long.
    fn fill(&mut self) {
        while self.may_start() {
            let Some(id) = self.queue.pop_front() else {
                return;
            };
            let waited = self.now - self.jobs[id].arrival;
            if self.algorithm.drop_at_dequeue(dur(waited)) {
                self.run.expired += 1;
                self.run.lost.push(self.now);
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
        let limit = self.algorithm.limit();
        if self.run.moves.last().is_none_or(|m| m.1 != limit) {
            let reason = self.algorithm.reason().unwrap_or("");
            self.run.moves.push((self.now, limit, reason));
        }
        if let Some(r0) = self.algorithm.baseline()
            && self.run.baselines.last().is_none_or(|b| b.1 != r0)
        {
            self.run.baselines.push((self.now, r0));
        }
        let last = self.run.limits.last().map_or(-1.0, |l| l.0);
        if self.now - last >= 0.001 {
            self.run.limits.push((self.now, self.algorithm.limit()));
        }
    }
}
