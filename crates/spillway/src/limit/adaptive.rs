//! The adaptive limit, spillway's default: finds the concurrency past which more jobs in flight
//! no longer bring more throughput, follows it as it moves, and keeps the queue short only while
//! the pool is saturated.
//!
//! # What it observes
//!
//! An in-process pool knows, for every job, its run time `R` (start to end, excluding our own
//! queue), its queue wait, and the number in flight `N` when it started; by Little's law the
//! throughput is `X = N / R`. Samples are summed (in integer nanoseconds, `ended.rs`: each job
//! costs a few additions, its times turned into seconds once per window) into windows of at
//! least 10 ms, 64 completed jobs and one mean run time, so that a window holds jobs that started under about the same
//! limit; a window in which the limit binds (below) also stays open until its mean run time is
//! known within 5% (one standard error; at most 1 s), so that two of them can be compared even
//! for jobs whose run times vary a lot. The law runs once per window, on the means of `N` and `R`
//! over the jobs that completed in it, and on the completions it counted per second (`X` as
//! measured, not as `N / R` computes it from a possibly noisy mean). Dropped jobs (expired,
//! dropped at dequeue) are counted, never averaged in: they did not run, so their near-zero
//! "latency" cannot pull `R` down. A window also estimates the rate at which jobs *arrived*
//! (were admitted), counted against when they arrived (end minus run minus wait): jobs start in
//! arrival order, so the jobs that completed in two consecutive windows arrived one after the
//! other, `n1 + n2` of them over twice the distance between their mean arrival times. (Until
//! session 5 it was the counted rate times the trend of the wait, `X (1 + dW/dt)`: when the
//! completions come in cohorts, below, that swung with the count.) It is unknown when a
//! submission was shed or a job dropped in the window (the demand was more than what was
//! admitted).
//!
//! *Cohorts.* When a limit binds on jobs of equal run times (a downstream that answers in a
//! fixed 200 ms), the jobs that fill the limit start together and end together one run time
//! later, and the queued jobs that replace them start together again: completions come in
//! bursts, and a window of about one run time counts one, two or a fraction of a burst (the
//! real slowdown run: 1,150 to 8,800 per second in consecutive windows, at a steady 5,000).
//! The counted rate is then noise; Little's `N / R` and the arrivals counted against their
//! arrival times are not. Every verdict below that rests on the count is checked against
//! Little's law, and where the two disagree the law holds and measures again.
//!
//! # The law
//!
//! A window *binds* when demand met the limit: a submission was shed, a job was dropped, or a job
//! started with the limit in use. A queue wait alone does not count: below the limit a job waits
//! only for a worker to take it (a wake-up on a busy machine), and reading that as the limit
//! binding made a pool at 0.3x load descend to a quarter of what it later needed (in the model,
//! with a 2 ms wake-up in every wait, it shed 54% of the slowdown scenario). A window that does
//! not bind but whose jobs *queued* (a mean wait over the queue target: the workers lag the
//! limit, their tasks polled late on a saturated CPU) gives no verdict at all: its run times
//! teach no `R0` (they are inflated by whatever saturates the pool) and it does not make the
//! law forget its last settled window (forgetting it made every settled window a "rise at
//! constant `N`", probed up to the ceiling: the spike collapse of the reverted change).
//! Windows that do not bind never raise the limit (no drift upward while app-limited); a limit
//! above twice the demand they saw relaxes toward it by at most 20% per window, never below
//! `initial_limit` (so a limit grown for a slower downstream does not stay high after it, ready to
//! let a later overload put that many jobs in flight at once). Two in a row that saw about the
//! same `N` and `R` (within 10%: not a ramp) teach the uncongested run time `R0` (an average).
//!
//! A binding window is *settled* when its mean `N` is within 10% of the limit, i.e. its jobs
//! started under the current limit; unsettled windows (just after a move, or while demand rises)
//! only wait. Between two settled windows whose `N` differs, the elasticity
//! `e = dln R / dln N` says whether concurrency caused the latency: `e` near 0, more jobs in
//! flight ran as fast, so throughput grew with `N`; `e` near 1, `R` followed `N` and `X` stayed
//! flat: a resource is saturated (the CPU, a downstream with a fixed number of permits). On a
//! settled window:
//!
//! 1. *Flat step* (`|e| < 0.25` over a move of `N` of 15% or more, and the counted completion
//!    rate followed `N`: `dln X / dln N >= 0.5`): `R` did not follow `N`, so `R` at this `N` is
//!    uncongested; `R0` becomes the mean `R` of the two windows (this is how a
//!    slower downstream raises `R0`: by proof, not by drift), and the limit grows by 25%.
//!    A known `R0` is *raised* only a tenth of the way toward that mean, unless the mean is
//!    `2 (1 + tolerance)` times `R0` or more (a different service, which the catch-up of rule
//!    4 relies on): two windows that a busy neighbour slowed alike also read as a flat step,
//!    and taking their mean whole is how the limit crept (see "Baseline drift" below).
//!    (`e` clearly negative, `R` up while `N` went down, means conditions changed: no verdict.)
//!    A step up of 15% or more that *paid* without being flat (`-0.25 < e < 0.5`, completions
//!    followed `N`) from a window whose `R` was already over `(1 + tolerance) R0` counts too,
//!    with `R0` the run time before the step: the step's own first touches (below) slow its
//!    jobs by 10-20%, and reading that as saturation halved the limit of a pool at 0.3x load
//!    whose downstream had slowed (the model: 38% of the slowdown shed or expired).
//!
//!    *A step that did not pay* (`N` rose, the counted completions did not follow, `R` rose
//!    with `N`, jobs queued): hold the limit and probe no further up (rule 4) until a window
//!    does not bind or a step pays. If fewer jobs arrive than complete by either measure (the
//!    count, or `N / R`), a backlog drains: that is all. If more arrive than complete by over
//!    the tolerance, or some were shed, the pool is saturated: the queue is kept short ("The
//!    queue"), and the next window shrinks the limit if `R` stays inflated (rule 5). In
//!    between, the step is measured again (from the same window) before that verdict: a step's
//!    own first touches stall its first window (`R` +22%, the count flat), and cutting the
//!    queue of a pool catching up with a slower downstream dropped its whole backlog (model:
//!    6,800 expired).
//!
//!    *A step that bought only latency* (the last settled window *grew* the limit, by rule 1
//!    or 3, by 15% or more, and while demand overflows, jobs shed or the arrivals clearly over the
//!    completions, `R` followed `N`, `e >= 0.5`, and the counted completions did not,
//!    `dln X / dln N < 0.5`): the limit returns to where it was before that step, the knee is
//!    noted there, and no probe follows until a window does not bind or a step pays. Holding
//!    there instead kept the step's jobs in flight (and their memory) for nothing. `R0` is not
//!    lowered by it: "the run time before the step was at the tolerance at most" takes one
//!    noisy window's word, and drove `R0` below the job's own time in the model (17.6 ms for
//!    a 20 ms job, 16% of the goodput lost).
//!
//!    *An inconclusive step* (`N` rose, and the count and Little's law disagree: the count
//!    followed `N` over a move of 15% or more although `R` was not flat, or `R` stayed flat,
//!    so that `N / R` grew with `N`, while the count did not): no verdict, the limit holds and
//!    the next window measures the step again from the same point. Cohorts make the count
//!    swing twofold; a step's first touches inflate `R` on a small move (`e = 0.6` read on a
//!    14% move halved the limit of a pool at 0.3x load in the model). Neither is evidence of
//!    saturation, and a saturated verdict cuts the queue.
//! 2. *Cold start* (no `R0` seen yet, e.g. a step overload from idle): compare with the window
//!    that had the fastest mean so far (jobs that ran before demand piled up; this may be done on
//!    the very first binding window, before it settles). If `R` grew with `N` (`e >= 0.5`), or
//!    the descent is under way and `N` did not move, descend to where `R` would be
//!    `1 + tolerance` times that fastest mean if throughput stays flat,
//!    `N (1 + tolerance) R_fastest / R`, by at least 40% and at most fourfold per settled window
//!    (fiftyfold until session 4: a cold start's own stall, 1,000 jobs first touching their
//!    memory at once, inflated `R` twentyfold and sent the limit of a pool at 0.3x load to 57,
//!    from where it regrew too slowly for the slowdown that followed),
//!    until a step leaves `R` flat (rule 1). Otherwise step *down* by 20%: with nothing known a
//!    step up would put more jobs in flight (and more memory) before the first verdict, and the
//!    next settled window says as much either way (`R` fell with `N`: descend; flat: rule 1).
//!    No Envoy-style pinning to a tiny limit is needed.
//! 3. `R <= (1 + tolerance) R0`: room; grow by the room left, `(1 + tolerance) R0 / R` (by
//!    Little's law at a flat `X`, where `N` would put `R` at the tolerance), at most 25% while
//!    no knee is known (capped at the last knee) and 10% near it, by one job at least. (A fixed
//!    step from just under the tolerance overshot the knee by that step each time: the limit of
//!    a real step run swung between 560 and 770 around a knee of 620, and the memory with it.)
//! 4. `R > (1 + tolerance) R0` at an unchanged `N` while not saturated, and no queue stood
//!    below the limit during the window (that would be another saturation: the CPU, see "The
//!    queue"): either the downstream
//!    slowed (more concurrency would help) or capacity fell (it would not). If `R` rose past
//!    `2 (1 + tolerance) R0` (more than a CPU near its knee, or one that lost a core, inflates
//!    it) and the queue grows (more arrive than `N / R` completes), the need is known by
//!    Little's law: the arrival rate times `R`, plus the tolerance so that the backlog drains.
//!    *Catch up* with it at once (the seed job's slowdown: 1,000 to about 1,860 in one window,
//!    where one +25% probe per settled window took 2 s and its unsettled steps were misread),
//!    within the ceiling, but to no more than twice what the *demand* seen while the limit had
//!    room needs (or doubling, if more): an arrival estimate far above it is more likely noise
//!    than a demand that grew as the downstream slowed. (Until session 7 at most doubling: a
//!    limit that a cold start on a busy machine had brought to 250 then took a doubling and
//!    four flat steps, 3 s, to reach the 1,860 needed, p99 2.4 s.) Otherwise, if the arrivals
//!    rose past the demand seen with room by more than the tolerance, `R` rose because more
//!    came, not because the service slowed (a spike onto a CPU at its knee: a downstream that
//!    slows does not bring more arrivals): saturated, as rule 5, by at most 20% (session 8:
//!    with the limit above the knee when the spike came, two probes took it to 1,375 on a
//!    knee of 800 in the model, and their jobs' first touches stalled the CPU, p99 252 ms).
//!    Otherwise probe by the excess, between +10% and +25%. Either way the next settled
//!    window tells (rule 1, or rule 5 only on evidence both measures agree on).
//!
//!    *Early catch-up.* A settled window comes late after a slowdown: the law hears of a job
//!    only when it ends, so the first window whose jobs ran at the new `R` closes one new run
//!    time after the change, and a settled one another one or two later, while the queue grows
//!    behind the old limit (the seed job's slowdown at 0.3x: the catch-up 0.6 s after the
//!    change, p99 600 ms in the model, 449 ms in the real run). So the same rule also applies
//!    to the first window, binding or not, settled or not, whose `R` is `2 (1 + tolerance)`
//!    times `R0` or more with no more in flight than the limit, while Little's `N / R` fell
//!    under half the demand seen with room (`R` rose far more than `N`: on a saturated CPU
//!    `R` follows `N` and `N / R` stays near the capacity; without this check a real spike on
//!    a starved machine, `R` 24 -> 61 ms with `N` 540 -> 980, was caught up with to 4,300),
//!    while the jobs in flight or queued grow (more arrive than `N / R` completes) and jobs
//!    queued if it bound: catch up
//!    with the arrivals times `R` plus the tolerance, the arrivals taken between the demand
//!    seen with room and twice it (in the windows of the transition, whose jobs ran 20 and
//!    200 ms side by side, they are far off either way). The demand is an average of the
//!    completions counted in windows that neither bound nor queued and whose count agrees with
//!    `N / R` within 1.5x. Another early catch-up needs `R` to double again, until `R0` is
//!    learned anew (a flat step, or two steady windows that do not bind): the first touches of
//!    the catch-up's own jobs inflate `R` too (in the model 200 -> 337 ms, which a second
//!    catch-up took for a slower downstream and sent the limit to the ceiling); meanwhile a
//!    settled catch-up takes `R` at most twice the early one's (not less: the early window's
//!    `R` is often a mixture of old and new jobs, 111 ms for 200 ms jobs in a real trace), and
//!    the limit does not relax toward the jobs in flight, which are still ramping up.
//! 5. Otherwise `R` is inflated by our own concurrency: *saturated*. Shrink in proportion to the
//!    excess, `L (1 + tolerance) R0 / R`, and note the knee: at most halving (Breakwater's
//!    decrease) when `R` followed a move of `N` of 15% or more, at most 20% otherwise (`N` did
//!    not move enough to tell, or `R` did not follow it: `R` may be a slower downstream's that
//!    `R0` does not know yet, and
//!    halving window after window shed half of a slowdown; a 20% step down that leaves `R`
//!    flat is a flat step, rule 1, which teaches `R0`).
//!
//! Every rise but a catch-up (rules 1, 3 and the probe of 4) is at most 25% per settled window,
//! and growth (rules 1 and 3) stops at what the demand needs by Little's law, the window's arrival
//! rate times its `R` plus the tolerance, when that rate is known: a backlog keeps the windows
//! binding while it drains, and growth that followed binding alone took the limit of a pool at
//! 0.3x to its ceiling in the model. Why bounded steps: a job that starts while more run than
//! ever before touches memory the process does not have yet (the seed job's 500 KiB), and the
//! kernel zeroes it page by page on the same cores, about 0.4 ms of CPU per job on the 2-core
//! VM, five times the job's own cost. A limit doubled from 1,000 to 2,000 put 1,000 such jobs
//! in flight at once: both cores at 100% system time for 0.4-1 s, completions near zero, the
//! queue and p99 exploding (`perf`: `clear_page_erms` 21% of all samples). A 25% step costs a
//! quarter of that, spread over a window, and the next verdict sees whether it paid. A
//! catch-up may raise the limit further: it happens only when `R` is far above `R0` while the
//! jobs in flight or queued grow (a slower downstream), is capped at the need the arrivals
//! prove (and the demand seen with room bounds those), and its stall is no longer read as
//! saturation (an unpaid step is measured twice unless the demand is clearly over the
//! completions).
//!
//! A settled mean below `R0` pulls `R0` down by a tenth of the difference (not to the minimum: a
//! minimum of noisy means is biased low, and a low `R0` sheds for nothing). The limit settles
//! where the run time is about `1 + tolerance` times the uncongested one: for jobs bound by a
//! downstream of `P` permits near `(1 + tolerance) P`, for the seed job on a saturated CPU near
//! `1 + tolerance` times the knee `X_max R0`. It is kept as a float and rounded (a knee of two
//! jobs gives 1.6, i.e. 2).
//!
//! # The queue
//!
//! While the pool is saturated (from rule 2's descent or rule 5 until a window that does not bind,
//! a flat step past the last knee, or a whole `MAX_WINDOW` (1 s) in which the limit never bound),
//! [`AdaptiveLimit::queue_bound`] is what the pool completes within
//! `queue_target` (`L * target / R`, Little's law again) and a job that waited over twice the
//! target is dropped when a worker takes it (CoDel's rule, [`AdaptiveLimit::drop_after`]).
//! The 1 s rule matters at low rates: a pool idling at 10 jobs/s after an overload closes no
//! window for seconds (64 jobs), and without it stayed saturated and shed most of a burst.
//! Before `R0` is known (cold) at most `initial_limit` jobs wait beyond the limit
//! (`busy + queued < limit + initial_limit`): nothing is learned to size the queue by, and
//! unbounded it let a step overload from idle queue 20,000 jobs (model, 10x) before the first
//! verdict. This cold bound counts only what waits beyond the limit, not the queue alone: jobs
//! that wait only for workers not started yet (a burst submitted faster than the workers
//! start) are below the limit, and counting them shed 500 of a cold burst of 1,500 although the
//! queue ceiling had room (goal 5; session 6). What runs is still at most the limit, so the
//! cold start's memory bound is the same. The same bound holds, not saturated, after a window
//! that *overflowed* (a job shed or dropped): demand is more than is admitted, and a flat step
//! then proves room for more jobs in flight, not for a longer queue (a cold start below the
//! knee under a 10x step, the model: 62,000 admitted once `R0` was learned). Otherwise the
//! queue is bounded only by `queue_capacity`: a slower downstream or a burst is absorbed while
//! the limit grows, never shed. The default target is
//! 5 ms, CoDel's: a quarter of the seed job's 20 ms, so admitted latency stays near the job's
//! own time, yet `X * 5 ms` jobs (200 at 40k jobs/s) keep every worker fed between two
//! submissions.
//!
//! One bound needs no verdict (`standing.rs`): when over a whole 100 ms interval (CoDel's)
//! every completed job waited longer than the target and none of them could have waited for
//! the limit (none started with it in use, none was queued under a lower limit and started
//! within an interval of its rise), a queue stands
//! although the limit has room: the workers lag it, the pool takes jobs slower than they come.
//! Then, at once, the queue holds at most what the pool completed within the target at the
//! interval's rate, and a job that waited over twice the target is dropped at dequeue, until
//! an interval's smallest wait is within the target or a job waited for the limit (a limit
//! that binds is the law's to judge). A slower downstream does not trigger it: there the queue
//! stands because the limit binds. Every queue bound but the cold one applies to the queue
//! itself (`queued < bound`) as well as to `busy + queued < limit + bound`: with the workers
//! below the limit, the latter alone let the idle part of the limit fill with queued jobs.
//! (While a queue stands, or once `R0` has been learned and a window overflowed, the cold bound
//! applies to the queue itself too: only a first cold start relaxes it.)
//!
//! # Cold start
//!
//! The limit starts at `cold_limit` (750, capped by `initial_limit` and `max_workers`): before
//! the first verdict nothing bounds what runs but the limit, and on a machine where a new job's
//! memory costs page faults (the seed job's 500 KiB) those jobs' first touches are the cold
//! start's peak memory and its CPU stall. Until a verdict first moves it, the limit is
//! *warming*: once `R0` is learned (two steady windows that neither bound nor queued), every
//! window with room whose jobs ran within the tolerance of `R0` doubles it, up to
//! `initial_limit` (1,000), and a whole `MAX_WINDOW` (1 s) of jobs too few to close a window,
//! none at the limit, none shed, dropped or queued (a low rate) raises it there at once. A pool
//! that has run below its limit thus has `initial_limit` of headroom, as before: a burst of
//! that many after idleness starts at once, and a slower downstream is caught up with from
//! there. (Not on the first window with room alone: at 0.3x load in the model, the cold start's
//! first window came before its first touches stalled the CPU, and the stall then met the
//! raised limit and read as an overload.) While warming, a window in which the limit was in use
//! but nothing was shed or dropped (the cold queue had room) whose jobs ran slower than the
//! fastest window's (past the tolerance) gives no verdict, for at most `COLD_HOLDS` (16)
//! windows in a row: a cold start's own first-touch stall at low load, which rule 2's descent
//! took for an overload (the model at 0.3x: 750 -> 320, 957 jobs shed or expired). If its jobs
//! ran no slower, the demand simply exceeds the cold limit (a closed loop of 1,000 clients
//! never overflows the cold queue, and was held at 750 with 250 queued for good, session 8's
//! review): the limit goes to `initial_limit` at once. A step overload fills the cold
//! queue at once: it puts at most `cold_limit` jobs in flight, its first verdict steps down
//! (ending the warming), and rule 2 descends to the knee within a few windows. Until `R0` is
//! learned, at most `initial_limit` jobs wait beyond the limit (the bound on the admitted work:
//! queued jobs hold no more than their closure), so a cold burst of `cold_limit +
//! initial_limit` (1,750) is admitted whole. The cost falls on CPU-bound jobs: 750 of them on
//! two cores run for a while before the first verdict (in the model at 3x overload: p99 near a
//! second for the first second, under 100 ms after it, and the limit within a few jobs of the
//! cores after about 3 s); set a smaller `cold_limit` for a pool that only computes.
//!
//! Why two settings (session 8): the cold start's 1,000 jobs touched about 490 MiB at once in
//! the real step at 16x (peak RSS 534 MiB against the goal's 441) and kept both cores busy
//! with page faults for 0.2-0.3 s (p99 102-248 ms in its first three 100 ms windows). A lower
//! `initial_limit` alone (600 in session 5, 800 in session 6) met the memory bound but left a
//! limit that binds sooner everywhere: the slowdown's catch-up started from it (p99 550-850 ms
//! against 450-530 at 1,000) and the spike met it with the queue still open. The cold limit
//! bounds only a pool that has not yet run below its limit; the scenarios that start below
//! their limit (the slowdown, the spike, the low rate) warm up to 1,000 in their first window
//! or second, and meet their changes from there.
//!
//! # Failure modes of the published limiters, and what this law does instead
//!
//! * *Creeping up under modest overload* (Gradient2 adds `queue_size` on every sample): growth
//!   needs `R <= (1 + tolerance) R0` or a flat step; past the knee neither holds.
//! * *Growing to max while latency is flat* (every request timing out alike): dropped jobs are
//!   not averaged into `R`, and a dropped or shed job makes the window bind, so the limit moves
//!   only on the run times of jobs that ran.
//! * *Dropped requests recording near-zero latency*: see above.
//! * *Windows skewed by cheap requests at low rates*: windows that do not bind never move the
//!   limit; means over at least 64 jobs, known within 5%, are compared, not single samples.
//! * *Slow ramp-up from a small initial limit*: the limit starts at 750 and doubles to 1,000
//!   once `R0` is learned with room (or at once when demand meets it and the jobs run no
//!   slower: "Cold start"), then grows by 25% per settled window while that proves productive
//!   (not faster: see "Growing in big jumps"), except that a queue growing behind a run time
//!   far above `R0` is caught up with at once (rule 4: the need is known by Little's law).
//! * *Reading cohorts as saturation* (this law until session 5: jobs of equal run times under a
//!   binding limit start and end together, a window's count swings 1,150 <-> 8,800/s, and a
//!   probe compared on those counts read "no more completions": the queue was cut, 13% of a
//!   slowdown at 0.3x load shed or expired with an idle CPU): the arrivals are counted against
//!   their arrival times, draining is judged by Little's `N / R` as well as the count, and a
//!   step on which the two disagree gives no verdict.
//! * *minRTT re-measurement bursts* (Envoy pins the limit to 3 for 50 requests): `R0` is learned
//!   from windows that do not bind or from flat steps; the limit is never pinned low.
//! * *Baseline drift in long incidents* (failsafe-go): while the limit binds, `R0` only moves
//!   down (slowly, toward a settled mean below it) or on a flat step, never because `R` stays
//!   high. A flat step also needs the counted completions to have grown with `N`: at the knee a
//!   mean `R` that comes out flat on noise is no evidence, as `X` cannot grow there. That was
//!   not enough (session 6): the 10-minute soak's limit still crept 760 -> 1,460 in two steps
//!   while completions stayed flat. The trace (`RUST_LOG=spillway=trace` logs every window)
//!   showed why: on a shared machine a neighbour slows two consecutive windows alike, a move
//!   of the limit between them (a 20% step down after a saturated verdict) reads as a flat
//!   step with the completions following `N`, and `R0` became their mean whole (22 -> 33 ms
//!   in one window); the room rule then grew the limit until `R` was 1.25 times that, and
//!   nothing took it back, as `R0` falls only toward settled means below it, which never come
//!   once `R0` is inflated. Now a known `R0` rises only a tenth of the way toward a flat
//!   step's mean (the same weight as it falls), unless the mean is 2.5 times `R0` or more (a
//!   slower downstream, learned at once), and a growth step of 15% or more that bought only
//!   latency is taken back. In the model (`scenarios.rs`, the real machine at 5x with the
//!   cores it gets changing to a random 1.4-2.0 every 20-100 ms): `R0` never rises above the
//!   21.4 ms it learned in 20 s, the limit's per-second means stay within 519-612 (CV 4.6%)
//!   (before: `R0` 21.3 -> 31.3 ms at 13 s, the limit 560 -> 800, p99 105 ms for the same
//!   goodput). A real 150 s run at 5x: the limit's CV after the first minute 3.9%, `R0`
//!   21.3-21.4 ms throughout.
//! * *A stale verdict at a low rate*: the saturated state (short queue, CoDel drops) ends after
//!   a second in which the limit never bound, however few jobs completed; the limit itself does
//!   not decay while it does not bind.
//! * *Shedding on a latency rise alone* (Vegas and Gradient shed 56% and 59% when a downstream
//!   merely slowed): a rise of `R` at constant `N` is probed, not punished (rule 4), and the queue
//!   does not shed until the pool is proven saturated or a queue stands below the limit. A
//!   queue wait alone (a wake-up on a busy machine) is not the limit binding.
//! * *A queue growing while the limit does not bind* (the workers lag the limit; a real spike
//!   run queued 12,900 jobs for 1.5 s at 0.7x load waiting for a verdict on settled windows):
//!   bounded within one 100 ms interval, without a verdict ("The queue").
//! * *Growing in big jumps* (doubling, as this law did until session 4, or Gradient2's
//!   `+queue_size` per sample at a high rate): each rise puts that many more jobs in flight at
//!   once, and on a machine where a new job's memory costs page faults the rise itself stalls
//!   the CPU, its next verdict reads the stall as saturation and halves the limit. Every rise is
//!   at most 25%, capped at what the arrivals need, and a rise that did not pay stops the
//!   growth (rule 1, "a step that did not pay"). In the model with first touches
//!   (`scenarios.rs`): the slowdown sheds 0 (38% before), the spike and the step keep their p99
//!   within 100 ms.
//! * *Swinging past the knee in fixed steps* (a 10% step from a run time just under the
//!   tolerance lands past it, the next verdict shrinks, and so on: the memory follows the
//!   highest swing): growth with room to spare is by the room left, by Little's law.
//! * *Growth that follows a backlog* (windows bind while a queue drains, so binding alone says
//!   "grow"): growth stops at the arrivals' need.
//! * *Probing up while something else saturates* (with the workers lagging, windows alternate
//!   between binding and not; each binding one, compared with nothing, read as a slower
//!   downstream and probed, up to the ceiling: 32,000 admitted in the model, 85,000 in flight
//!   in a real run): a window in which jobs queued below the limit keeps the last settled one
//!   for comparison and teaches no `R0`, and a queue standing below the limit stops the probe.

use std::time::Duration;

use super::config::AdaptiveConfig;
use super::ended::{Ended, nanos};
use super::standing::Standing;

mod window;

use super::{Bounds, Sample};
pub(crate) use window::Window;
use window::{Accumulator, MAX_WINDOW_NS, min_len};

/// `N` must move by this much (in ln) between windows for `e` to be measured.
const MIN_DLN_N: f64 = 0.05;
/// A binding window is settled (its jobs started under the current limit) when its mean `N` is
/// within this (in ln) of the limit.
const SETTLED_DLN_N: f64 = 0.1;
/// At or above this elasticity, `R` follows `N`.
const SATURATED_E: f64 = 0.5;
/// Below this elasticity, over a move of `N` of at least `FLAT_DLN_N`, `R` did not follow `N`.
const FLAT_E: f64 = 0.25;
const FLAT_DLN_N: f64 = 0.15;
/// ...and the counted completion rate followed `N` at least this much (`dln X / dln N`): a
/// flat `R` measured on noise, with the completions flat, is no evidence.
const MIN_GAIN: f64 = 0.5;
const FAST_GROWTH: f64 = 1.25;
/// A catch-up toward the demand (rule 4 with a growing queue) multiplies the limit by at most
/// this per settled window.
const MAX_CATCH_UP: f64 = 2.0;
const GENTLE_GROWTH: f64 = 1.1;
const PROBE: f64 = 1.25;
const BLIND_DESCENT: f64 = 0.6;
const MAX_BLIND_DESCENT: f64 = 0.25;
/// Per window that does not bind, a limit above twice the demand falls at most this much.
const RELAX: f64 = 0.8;
/// At most this many windows in a row held by `Law::cold_hold` (module docs, "Cold start").
const COLD_HOLDS: u32 = 16;
/// Weight of a settled mean below `R0`.
const R0_DECAY: f64 = 0.1;
/// Weight of a flat step's run time above `R0`, unless far above (a different service).
const R0_RAISE: f64 = 0.1;
/// Weight of a window's completions in the demand seen while the limit had room.
const DEMAND_WEIGHT: f64 = 0.2;
/// ...from windows whose counted completions are within this (in ln, 1.5x) of `N / R`.
const DEMAND_AGREEMENT: f64 = 0.405;

/// Why the limit last moved (or did not), for debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Initial,
    NotBinding,
    Relax,
    Room,
    Saturated,
    BlindDescent,
    Productive,
    Probe,
    Settling,
    Ceiling,
    Demand,
    Unpaid,
    CatchUp,
    Inconclusive,
    TakenBack,
    Warming,
    ColdHold,
}

impl Reason {
    /// A short lowercase name for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Initial => "initial",
            Reason::NotBinding => "not binding",
            Reason::Relax => "relaxing toward demand",
            Reason::Room => "room to grow",
            Reason::Saturated => "saturated",
            Reason::BlindDescent => "cold-start descent",
            Reason::Productive => "flat step",
            Reason::Probe => "probe",
            Reason::Settling => "settling",
            Reason::Ceiling => "at the ceiling",
            Reason::Demand => "enough for the demand",
            Reason::Unpaid => "the last step brought no more completions",
            Reason::CatchUp => "catching up with the demand",
            Reason::Inconclusive => "the completions and Little's law disagree",
            Reason::TakenBack => "the last step brought only latency: taken back",
            Reason::Warming => "warming up: the limit had room",
            Reason::ColdHold => "the cold limit in use, nothing shed, jobs slowed: no verdict",
        }
    }
}

/// The state of one adaptive limit.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveLimit {
    limit: f64,
    /// `limit` rounded and clamped, kept so that a sample (several reads of the limit per job)
    /// does not round again: it changes only when a window closes.
    rounded: usize,
    bounds: Bounds,
    tolerance: f64,
    queue_target: Duration,
    acc: Accumulator,
    law: Law,
    /// `queue_target` in nanoseconds.
    target: u64,
    /// Before this (nanoseconds since the epoch) the current window cannot close: its start
    /// plus one mean run time of the last window (at least `MIN_WINDOW`). Zero before the first
    /// window starts.
    due: u64,
    /// When the limit last bound (nanoseconds since the epoch): a submission shed, a job
    /// dropped or started at the limit.
    last_bound: u64,
    /// The queue bound until `R0` is known: `initial_limit`, even above `max_workers`.
    cold_queue: usize,
    /// A queue standing while the limit does not bind (module docs, "The queue").
    standing: Standing,
    /// When the limit last rose (nanoseconds since the epoch).
    raised: u64,
    /// A standing queue was seen during the current window.
    lagged: bool,
}

/// The control law's memory between windows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Law {
    /// Uncongested run time `R0`, seconds.
    pub(crate) baseline: Option<f64>,
    /// Whether `R0` was seen uncongested (a steady window that did not bind, or a step that left
    /// `R` flat), not just assumed.
    pub(crate) confirmed: bool,
    /// The last settled binding window: the point the next one is compared with.
    pub(crate) measured: Option<Window>,
    /// The window before this one.
    pub(crate) last: Option<Window>,
    /// The window with the lowest mean run time (an upper bound on `R0`).
    pub(crate) fastest: Option<Window>,
    /// The initial limit: while the limit does not bind, it relaxes no lower.
    pub(crate) initial_limit: f64,
    /// The limit is still the cold one (below `initial_limit`, or on its way up to it): no verdict has
    /// moved it yet. A window that does not bind raises it toward `initial_limit`, one that binds with
    /// nothing shed is held or ends it (module docs, "Cold start").
    pub(crate) warming: bool,
    /// Windows held in a row by [`Law::cold_hold`].
    pub(crate) cold_held: u32,
    /// During the last window a queue stood while the limit had room: the pool is saturated
    /// by something other than the limit (a rise of `R` is not probed).
    pub(crate) lagging: bool,
    /// The last step up brought no more completions: no probe up until a window does not
    /// bind or a step pays (the probe would only repeat it, with more memory first touched).
    pub(crate) unpaid: bool,
    /// The step of the last settled window is to be measured again (from the same point).
    pub(crate) remeasure: bool,
    /// The limit before the last settled window grew it (room or a flat step): where a step
    /// that bought only latency is taken back to.
    pub(crate) grown_from: Option<f64>,
    /// Lowest `N` of the last saturated verdict.
    pub(crate) knee: Option<f64>,
    pub(crate) saturated: bool,
    /// The last window overflowed (jobs shed or dropped): demand is more than is admitted.
    pub(crate) overflowing: bool,
    /// Mean run time of the last window, seconds (for the queue bound and the window length).
    pub(crate) last_run: f64,
    /// The demand while the limit had room: an average of the completions counted in windows
    /// that neither bound nor queued (there every arrival completes). What an early catch-up
    /// sizes the limit by (rule 4), as the arrivals estimated in the windows of a slowdown's
    /// transition, whose jobs ran 20 and 200 ms side by side, are far off.
    pub(crate) demand: Option<f64>,
    /// The run time an early catch-up was sized by, until `R0` is learned again: another early
    /// catch-up needs `R` to have risen `MAX_CATCH_UP` times past it (a run time inflated by
    /// the catch-up's own first touches is no second slowdown).
    pub(crate) caught_up: Option<f64>,
    pub(crate) reason: Reason,
}

impl Law {
    /// A law that relaxes no lower than `initial_limit` while the limit does not bind.
    fn new(initial_limit: f64) -> Law {
        Law {
            initial_limit,
            warming: false,
            cold_held: 0,
            baseline: None,
            confirmed: false,
            measured: None,
            last: None,
            fastest: None,
            lagging: false,
            unpaid: false,
            remeasure: false,
            grown_from: None,
            knee: None,
            saturated: false,
            overflowing: false,
            last_run: 0.0,
            demand: None,
            caught_up: None,
            reason: Reason::Initial,
        }
    }
}

impl AdaptiveLimit {
    pub(crate) fn new(config: &AdaptiveConfig, bounds: Bounds) -> AdaptiveLimit {
        let initial = config.initial_limit.clamp(bounds.min, bounds.max);
        let cold = config.cold_limit.min(initial).clamp(bounds.min, bounds.max);
        let mut law = Law::new(initial as f64);
        law.warming = cold < initial;
        AdaptiveLimit {
            limit: cold as f64,
            rounded: cold,
            bounds,
            tolerance: config.tolerance,
            queue_target: config.queue_target,
            target: nanos(config.queue_target),
            due: 0,
            acc: Accumulator::default(),
            law,
            last_bound: 0,
            cold_queue: config.initial_limit,
            standing: Standing::default(),
            raised: 0,
            lagged: false,
        }
    }

    /// The limit, rounded to the nearest count (not truncated as in the Netflix ports: at a knee of
    /// two jobs, 1.6 means 2).
    pub(crate) fn limit(&self) -> usize {
        self.rounded
    }

    /// Why the limit last moved or held.
    pub(crate) fn reason(&self) -> Reason {
        self.law.reason
    }

    /// Adds the sample of a job that ended at `now`; returns whether the limit may have moved
    /// (a window closed, or a cold limit was raised after a quiet `MAX_WINDOW`).
    #[inline(always)] // once per job: into the driver's loop over a batch, without a call
    pub(crate) fn on_sample(&mut self, now: Duration, sample: &Sample) -> bool {
        let job = Ended::new(now, sample, self.rounded);
        // Batches from different workers arrive out of order: the latest time counts.
        if job.dropped || job.at_limit {
            self.last_bound = self.last_bound.max(job.now);
        } else if self.law.saturated && job.now.saturating_sub(self.last_bound) >= MAX_WINDOW_NS {
            self.law.idle();
        }
        self.standing.add(&job, self.raised, self.target);
        self.lagged |= self.standing.is_active();
        self.acc.add(&job);
        // The common case, decided here: a window younger than its shortest length cannot
        // close (as `Accumulator::close` finds).
        job.now >= self.due && self.maybe_close(job.now)
    }

    pub(crate) fn on_shed(&mut self, now: Duration) -> bool {
        let now = nanos(now);
        self.last_bound = self.last_bound.max(now);
        self.acc.shed = self.acc.shed.saturating_add(1);
        self.maybe_close(now)
    }

    /// See the module docs, "The queue".
    pub(crate) fn queue_bound(&self, capacity: usize) -> usize {
        let bound = self.law_queue_bound(capacity);
        if self.standing.is_active() {
            return bound.min(self.standing.bound(self.queue_target));
        }
        bound
    }

    /// Whether the queue bound applies to the queue alone (`queued < bound`) as well as to
    /// what waits beyond the limit (`busy + queued < limit + bound`): always, except for the
    /// cold bound before `R0` is first learned, while no queue stands (module docs, "The
    /// queue"). Once learned, a cold bound held again after a window that overflowed bounds
    /// the queue alone too: workers lagging a high limit must not fill its idle part.
    pub(crate) fn bounds_queue_alone(&self) -> bool {
        self.law.confirmed || !self.cold() || self.standing.is_active()
    }

    /// Nothing learned to size the queue by (or demand overflowed what was admitted), and not
    /// saturated: the cold bound holds.
    fn cold(&self) -> bool {
        (!self.law.confirmed || self.law.overflowing) && !self.law.saturated
    }

    /// The queue bound from the law's state alone.
    fn law_queue_bound(&self, capacity: usize) -> usize {
        if self.cold() {
            // Cold: nothing learned to size the queue by, so as many may wait beyond the limit
            // as may run at first (`initial_limit`, whatever `max_workers` is).
            return self.cold_queue.min(capacity);
        }
        if !self.law.saturated || self.law.last_run <= 0.0 {
            return capacity;
        }
        let drained = self.limit() as f64 * self.queue_target.as_secs_f64() / self.law.last_run;
        // `as` saturates; at least one job may wait so a worker never idles between submissions.
        (drained.ceil() as usize).max(1).min(capacity)
    }

    /// The queue wait past which a job is dropped at dequeue, while saturated (module docs,
    /// "The queue").
    pub(crate) fn drop_after(&self) -> Option<Duration> {
        self.drops().then(|| self.queue_target.saturating_mul(2))
    }

    /// Whether a queued job that waited over twice the target is dropped at dequeue.
    fn drops(&self) -> bool {
        self.law.saturated || self.standing.is_active()
    }

    /// The uncongested run time `R0` the law has learned, seconds.
    #[cfg(test)]
    pub(crate) fn baseline(&self) -> Option<f64> {
        self.law.baseline
    }

    /// See the module docs, "The queue".
    #[cfg(test)]
    pub(crate) fn drop_at_dequeue(&self, waited: Duration) -> bool {
        self.drops() && waited > self.queue_target.saturating_mul(2)
    }

    /// Closes the window if it is long and full enough at `now` (nanoseconds since the epoch)
    /// and applies the law to it (or raises a cold limit after a quiet `MAX_WINDOW`); returns
    /// whether the limit may have moved.
    #[cold]
    fn maybe_close(&mut self, now: u64) -> bool {
        let before = self.limit();
        let target = self.queue_target.as_secs_f64();
        let window = self.acc.close(now, self.law.last_run, target);
        if let Some(window) = window {
            self.apply(now, &window);
        } else if self.law.warming && self.acc.quiet_through(now, self.target) {
            // Too few jobs to close a window in a whole `MAX_WINDOW`, none of them at the
            // limit: a pool at a low rate, with room (module docs, "Cold start").
            let next = self.law.warmed().max(self.limit);
            self.set_limit(now, next);
        }
        // The window that is open now (a new one, or the first) closes no sooner than this.
        let start = self.acc.start.unwrap_or(now);
        self.due = start.saturating_add(min_len(self.law.last_run));
        window.is_some() || self.limit() != before
    }

    /// One step of the law on a closed `window`, at `now` (nanoseconds since the epoch).
    fn apply(&mut self, now: u64, window: &Window) {
        if window.run > 0.0 {
            self.law.last_run = window.run;
        }
        let bounds = (self.bounds.min as f64, self.bounds.max as f64);
        self.law.lagging = std::mem::replace(&mut self.lagged, self.standing.is_active());
        let next = self
            .law
            .update(self.limit, window, self.tolerance, bounds.1);
        self.set_limit(now, next);
        // Once per window: what the law saw, for `RUST_LOG=spillway=trace`.
        tracing::trace!(
            run_ms = window.run * 1e3,
            in_flight = window.in_flight,
            rate = window.rate,
            arrivals = window.arrivals,
            binding = window.binding,
            queued = window.queued,
            baseline_ms = self.law.baseline.map_or(0.0, |r0| r0 * 1e3),
            limit = self.rounded,
            reason = self.law.reason.as_str(),
            "adaptive window"
        );
    }

    /// Moves the limit to `next` (clamped into the bounds) at `now` (nanoseconds since the
    /// epoch).
    fn set_limit(&mut self, now: u64, next: f64) {
        let before = self.limit();
        self.limit = next.clamp(self.bounds.min as f64, self.bounds.max as f64);
        self.rounded = self.bounds.clamp(self.limit.round());
        if self.limit() > before {
            self.raised = now;
        }
    }
}

impl Law {
    /// The limit has not bound for a whole `MAX_WINDOW`: whatever saturated the pool is gone,
    /// even if too few jobs came to close a window (module docs, "The queue").
    fn idle(&mut self) {
        self.saturated = false;
        self.reason = Reason::NotBinding;
    }

    /// One step of the control law: the limit after `window`, given the limit during it and
    /// the highest allowed.
    pub(crate) fn update(&mut self, limit: f64, w: &Window, tolerance: f64, max: f64) -> f64 {
        let last = self.last.replace(*w);
        self.overflowing = w.overflowed;
        if w.run > 0.0 && self.fastest.is_none_or(|f| w.run < f.run) {
            self.fastest = Some(*w);
        }
        let next = if let Some(next) = self.early_catch_up(limit, w, tolerance) {
            next
        } else if !w.binding {
            self.not_binding(limit, w, last, tolerance)
        } else if let Some(next) = self.cold_hold(limit, w, tolerance) {
            next
        } else if (w.in_flight / limit.round().max(1.0)).ln().abs() <= SETTLED_DLN_N {
            let next = self.settled(limit, w, tolerance);
            if !std::mem::take(&mut self.remeasure) {
                // Otherwise the step is measured again, from the same point, by the next window.
                self.measured = Some(*w);
            }
            self.within_demand(limit, next, w, tolerance)
        } else if !self.confirmed && !self.saturated {
            // Cold start: demand met the limit for the first time. If R grew with N since the
            // fastest window, descend now rather than after the ramp settles.
            self.unconfirmed(limit, w, None, tolerance, Reason::Settling)
        } else {
            // Most jobs in this window started before the last move (or before demand rose).
            self.reason = Reason::Settling;
            limit
        };
        if next > limit && limit >= max {
            self.reason = Reason::Ceiling;
        }
        // A verdict moved the cold limit (the cold start proper, rule 2): no more warming up.
        // (A window held by `cold_hold` moved nothing and does not end it.)
        if !matches!(self.reason, Reason::Warming | Reason::ColdHold) && next != limit {
            self.warming = false;
        }
        if self.reason != Reason::ColdHold {
            self.cold_held = 0;
        }
        next.clamp(1.0, max.max(1.0))
    }

    /// A rise to `next` capped at what the demand needs by Little's law, the rate at which
    /// the window's jobs arrived times their run time (`R0` if lower), plus `tolerance` (when
    /// that rate is known): a backlog that keeps the windows binding while it drains does not
    /// make the limit (and the memory its jobs first touch) grow past what the offered load
    /// needs. `R0`, because a run time inflated by a stall (the first touches of the last rise)
    /// is no reason to hold more jobs: it grew the limit of a pool at 0.3x load 25% past the
    /// need in a real run, and the rise's own first touches stalled it again.
    fn within_demand(&mut self, limit: f64, next: f64, w: &Window, tolerance: f64) -> f64 {
        let run = match self.baseline.filter(|_| self.confirmed) {
            Some(r0) => w.run.min(r0),
            None => w.run,
        };
        let need = w.arrivals * run * (1.0 + tolerance);
        // A probe asks whether more concurrency helps at all: it is not capped.
        let growth = matches!(self.reason, Reason::Room | Reason::Productive);
        if !growth || next <= limit || need <= 0.0 || next <= need {
            return next;
        }
        if need <= limit {
            self.reason = Reason::Demand;
            return limit;
        }
        need
    }

    /// A window that bound at the cold limit while everything was admitted (the cold queue had
    /// room, nothing shed or dropped). If its jobs ran slower than the fastest window's (past
    /// the tolerance), it is a cold start's own first touches stalling a pool at low load,
    /// which the descent of rule 2 would take for an overload (in the model at 0.3x: the limit
    /// 750 -> 320, 957 jobs shed or expired): no verdict, for at most `COLD_HOLDS` windows in
    /// a row (a stall lasts 0.2-0.3 s here). If they ran no slower, the demand simply exceeds
    /// the cold limit (a closed loop of 1,000 clients never overflows the cold queue): the
    /// limit goes to the headroom, `initial_limit`, at once. `None` when not warming, or when
    /// the window overflowed (an overload fills the cold queue at once: rule 2 judges it).
    fn cold_hold(&mut self, limit: f64, w: &Window, tol: f64) -> Option<f64> {
        if !self.warming || w.overflowed {
            return None;
        }
        let stalled = self.fastest.is_some_and(|f| w.run > (1.0 + tol) * f.run);
        if !stalled {
            self.warming = false;
            self.reason = Reason::Warming;
            return Some(self.initial_limit.max(limit));
        }
        if self.cold_held >= COLD_HOLDS {
            self.warming = false;
            return None;
        }
        self.cold_held += 1;
        self.reason = Reason::ColdHold;
        Some(limit)
    }

    fn not_binding(&mut self, limit: f64, w: &Window, last: Option<Window>, tol: f64) -> f64 {
        self.reason = Reason::NotBinding;
        if w.queued {
            // Jobs queued although the limit had room: the workers lag it (their tasks polled
            // late on a saturated CPU), and demand is still there. No verdict, and nothing
            // learned or forgotten: such run times are no baseline (learning them let R0, and
            // with it the limit, creep up through a spike), and the last settled window stays
            // the point the next one is compared with (forgetting it made every settled window
            // a "rise at constant N", probed up to the ceiling).
            return limit;
        }
        self.saturated = false;
        self.unpaid = false;
        self.measured = None;
        // The demand, from windows whose count agrees with Little's `N / R` (the window in
        // which a slower downstream's first jobs are still running counts almost nothing).
        if w.rate > 0.0 && (w.rate / w.throughput()).ln().abs() <= DEMAND_AGREEMENT {
            self.demand = Some(match self.demand {
                Some(d) => d + DEMAND_WEIGHT * (w.rate - d),
                None => w.rate,
            });
        }
        if last.is_some_and(|l| !l.binding && !l.queued && steady(&l, w)) {
            self.baseline = Some(match self.baseline.filter(|_| self.confirmed) {
                Some(r0) => r0 + 0.5 * (w.run - r0),
                None => w.run,
            });
            self.confirmed = true;
            self.caught_up = None;
        }
        if self.warming {
            return self.warm_up(limit, w, tol);
        }
        // A limit far above demand would let a later overload put that many jobs in flight at
        // once: relax toward twice the demand seen, never below the initial limit. Not while
        // the jobs in flight still ramp up to an early catch-up (until `R0` is learned again).
        let headroom = (2.0 * w.in_flight).max(self.initial_limit);
        if limit > headroom && self.caught_up.is_none() {
            self.reason = Reason::Relax;
            return headroom.max(limit * RELAX);
        }
        limit
    }

    /// A window that did not bind while the limit is still the cold one: once `R0` is learned
    /// (two steady windows with room) and while the jobs run within the tolerance of it
    /// (nothing saturates below the limit), double the limit, up to the initial limit (module docs,
    /// "Cold start"). Not on a window's own word: the first window of a cold start at 0.3x
    /// load, before its first touches stalled the CPU, had room, and the limit raised there
    /// met the stall (in the model: a cold-start descent, 965 jobs shed or expired).
    fn warm_up(&mut self, limit: f64, w: &Window, tol: f64) -> f64 {
        let r0 = self.baseline.filter(|_| self.confirmed);
        if r0.is_none_or(|r0| w.run > (1.0 + tol) * r0) {
            return limit;
        }
        let next = (2.0 * limit).min(self.initial_limit);
        self.warming = next < self.initial_limit;
        self.reason = Reason::Warming;
        next.max(limit)
    }

    /// A whole `MAX_WINDOW` of jobs, too few to close a window, none at the limit, none shed,
    /// dropped or queued, while the limit is still the cold one: the initial limit at once (module
    /// docs, "Cold start").
    fn warmed(&mut self) -> f64 {
        self.warming = false;
        self.reason = Reason::Warming;
        self.initial_limit
    }

    /// A binding window whose jobs started under the current limit.
    fn settled(&mut self, limit: f64, w: &Window, tolerance: f64) -> f64 {
        let step = self.measured.and_then(|m| Step::between(&m, w));
        if let Some(step) = step.filter(|s| s.is_flat()) {
            return self.productive(limit, w, step.mean_run, tolerance);
        }
        // More in flight brought more completions, R rose less than N: the step paid, and a
        // run time before it already well above R0 was not ours (a slower downstream). (Near
        // R0, at the knee, a step that looks paid is the noise of short windows.)
        let stale = |s: &Step| {
            self.baseline
                .is_none_or(|r0| s.low_run > (1.0 + tolerance) * r0)
        };
        if let Some(step) = step.filter(|s| s.paid() && stale(s)) {
            return self.productive(limit, w, step.low_run, tolerance);
        }
        if let Some(r0) = self.baseline.filter(|&r0| w.run < r0) {
            // A mean below R0 says R0 is too high; follow slowly, as one window is noisy.
            self.baseline = Some(r0 + R0_DECAY * (w.run - r0));
        }
        let inflation = match self.baseline {
            Some(r0) if self.confirmed => w.run / r0,
            _ => return self.unconfirmed(limit, w, step, tolerance, Reason::Probe),
        };
        // Fewer arrive than complete, by either measure of the completions (the count swings
        // with cohorts, Little's `N / R` with a step's first touches).
        let completions = w.throughput().max(w.rate);
        let draining = w.arrivals > 0.0 && w.arrivals <= completions;
        // Demand clearly over what completes (or unknown: jobs were shed): no time to lose.
        let overloaded = w.arrivals <= 0.0 || w.arrivals > (1.0 + tolerance) * completions;
        let inconclusive = step.is_some_and(|s| s.inconclusive());
        let grown_from = self.grown_from.take();
        match step {
            // The last step was growth (room or a flat step), and while demand overflows it
            // brought only latency: `R` followed `N`, the completions did not. Take it back
            // to the limit before it and mark the knee there, so that the room rule does not
            // grow again at once. `R0` is left as it is (lowering it toward the earlier run
            // time drove it below the job's own time in the model and lost 16% of goodput).
            Some(s) if overloaded && s.unpaid() && grown_from.is_some() => {
                let from = grown_from.expect("matched Some").min(limit);
                self.take_back(from, &s)
            }
            // The last step up brought no more completions: growing further would only put
            // more jobs (and more memory) in flight. Hold there. A backlog that drains (fewer
            // arrive than complete) is left to drain; if more arrives (or was shed) the pool is
            // saturated, the queue kept short, and the next window shrinks the limit if `R`
            // stays inflated. Unless the demand is clearly over the completions, the step is
            // measured again first: its own first touches may have stalled its first window,
            // and cutting the queue of a pool that was catching up with a slower downstream
            // dropped its whole backlog (the model: 6,800 expired).
            Some(s) if s.dln_n > 0.0 && s.gain < MIN_GAIN && w.queued && !inconclusive => {
                let confirmed = std::mem::replace(&mut self.unpaid, true) || overloaded;
                self.remeasure = !confirmed;
                self.reason = Reason::Unpaid;
                if confirmed && !draining {
                    self.knee = Some(s.low_n);
                    self.saturated = true;
                }
                limit
            }
            _ if inflation <= 1.0 + tolerance => {
                // No more than the room left: by Little's law at a flat `X`, `N` can grow by
                // `(1 + tolerance) R0 / R` before `R` reaches the tolerance. A fixed step from
                // just under it overshot the knee by that step every time (the limit of a real
                // step run swung 560 <-> 770 around a knee of 620, and the memory with it).
                let room = ((1.0 + tolerance) / inflation).min(FAST_GROWTH);
                self.grow(limit, Reason::Room, room)
            }
            // The counted completions and Little's law (`R` against `N`) disagree on whether
            // the step paid: completions that come in cohorts (jobs that started together end
            // together) make the count of a window swing twofold, a step's own first touches
            // inflate its `R`. Neither is evidence of saturation: hold, and measure the step
            // again (from the same point) on the next window.
            _ if inconclusive => {
                self.reason = Reason::Inconclusive;
                self.remeasure = true;
                limit
            }
            // R rose at a constant N: a slower downstream (grow) or less capacity (shrink)?
            // Unless already saturated, or a queue stood while the limit had room (the pool
            // is saturated by something else), move N to find out.
            // After a step that did not pay, while a backlog drains (fewer arrive than
            // complete): hold, neither probe again nor shrink.
            None if self.unpaid && draining => {
                self.reason = Reason::Unpaid;
                limit
            }
            None if !self.saturated && !self.lagging && !self.unpaid => {
                self.probe_or_catch_up(limit, w, inflation / (1.0 + tolerance), tolerance)
            }
            _ => {
                // R followed a move of N: at most halving (Breakwater's decrease). Otherwise
                // (N unchanged, or R did not follow it) nothing says our concurrency inflated R
                // (it may be a slower downstream's, which R0 does not know): at most 20% per
                // window, so that a stall does not halve the limit window after window; a 20%
                // step that leaves R flat is then a flat step (rule 1), which learns R0.
                // (An elasticity over a move of `N` under 15% is noise: a step's own first
                // touches alone read as `e = 0.6` on a 14% move, and halved the limit of a pool
                // at 0.3x load in the model.)
                let followed = step.is_some_and(|s| s.e >= SATURATED_E && s.dln_n >= FLAT_DLN_N);
                let floor = if followed { 0.5 } else { RELAX };
                self.saturate(
                    limit,
                    w.in_flight,
                    ((1.0 + tolerance) / inflation).max(floor),
                )
            }
        }
    }

    /// No uncongested run time seen yet (cold start straight into overload).
    /// Without a step from the last settled window, the window with the fastest mean serves:
    /// if `R` grew with `N` since then, the pool is past its knee already.
    /// Otherwise: `otherwise` (probe or wait).
    fn unconfirmed(
        &mut self,
        limit: f64,
        w: &Window,
        step: Option<Step>,
        tol: f64,
        otherwise: Reason,
    ) -> f64 {
        let step = step.or_else(|| Step::between(&self.fastest?, w));
        let descend = match step {
            Some(step) => step.e >= SATURATED_E,
            None => self.saturated, // N did not move: keep descending
        };
        match step {
            _ if descend => {
                self.knee = Some(step.map_or(w.in_flight, |s| s.low_n));
                self.saturated = true;
                self.reason = Reason::BlindDescent;
                // Where R would be (1 + tol) times the fastest mean seen, if X stays flat; at
                // least a 40% step, at most a fourfold one.
                let fastest = self.fastest.map_or(w.run, |f| f.run);
                let estimate = w.in_flight * (1.0 + tol) * fastest / w.run;
                (limit * BLIND_DESCENT)
                    .min(estimate)
                    .max(limit * MAX_BLIND_DESCENT)
            }
            // Nothing known: step down, not up (a step up from cold would put more jobs in
            // flight, and hold more memory, before the first verdict); the next settled window
            // tells whether R followed.
            _ if otherwise == Reason::Probe => {
                self.reason = Reason::Probe;
                limit / PROBE
            }
            _ => {
                self.reason = otherwise;
                limit
            }
        }
    }

    /// Rule 4: `R` rose `excess` times past the tolerance at an unchanged `N`. When it rose
    /// at least `MAX_CATCH_UP` times past it (far more than a CPU near its knee, or one that
    /// lost a core, inflates it) while the queue grows (more arrive than `N / R` completes),
    /// the demand is known by Little's law, arrivals times `R`: catch up with it (plus the
    /// tolerance, so the backlog drains), by at most `MAX_CATCH_UP` per window. Otherwise, if
    /// the arrivals rose past the demand seen with room, saturated (module docs, rule 4).
    /// Otherwise probe by the excess, between +10% and +25% (a larger step puts more jobs in
    /// flight at once, each touching memory the process may not have: a catch-up of 40% on a
    /// machine whose CPU another build took stalled it for 0.6 s in a real spike run).
    fn probe_or_catch_up(&mut self, limit: f64, w: &Window, excess: f64, tolerance: f64) -> f64 {
        let probe = excess.clamp(GENTLE_GROWTH, PROBE);
        // After an early catch-up, `R` is taken at most `MAX_CATCH_UP` times the one it saw:
        // a run time risen further is the catch-up's own first touches (one that doubled again
        // was an early catch-up of its own). Not less: the early window's `R` is often a
        // mixture of the old jobs and the new (111 ms for 200 ms jobs in a real trace), and
        // `1 + tolerance` times it held the limit of a real run at 1,307 for a need of 1,860.
        let run = self
            .caught_up
            .map_or(w.run, |r| w.run.min(MAX_CATCH_UP * r));
        let need = w.arrivals * run * (1.0 + tolerance);
        if excess >= MAX_CATCH_UP && w.arrivals > w.throughput() && need > limit * probe {
            self.reason = Reason::CatchUp;
            // At once, unless the arrivals are more than twice the demand seen while the limit
            // had room (an estimate that far off is noise more likely than a demand that grew
            // as the downstream slowed): then no more than that, or doubling.
            let known = self
                .demand
                .map_or(0.0, |d| 2.0 * d * run * (1.0 + tolerance));
            return need.min((limit * MAX_CATCH_UP).max(known));
        }
        if self
            .demand
            .is_some_and(|d| w.arrivals > (1.0 + tolerance) * d && w.throughput() >= d)
        {
            // The arrivals rose past the demand seen with room: `R` rose because more came
            // (a spike onto a CPU at its knee), not because the service slowed, and more in
            // flight would only add to it (the model: a probe to 1,375 on a knee of 800, its
            // jobs' first touches stalling the CPU, p99 252 ms). Saturated, as rule 5, by at
            // most 20%: `N` did not move to tell how far.
            return self.saturate(limit, w.in_flight, (1.0 / excess).max(RELAX));
        }
        self.probe(limit, probe)
    }

    /// Rule 4 before the window settles: a window that did not bind or whose jobs queued,
    /// whose `R` is
    /// `MAX_CATCH_UP` times past the tolerance over `R0` with no more in flight than the limit
    /// (our own concurrency cannot inflate `R` that much below the knee the limit was at), and
    /// whose arrivals outrun what completes (`N / R`): a slower downstream, whose need is
    /// known by Little's law from the demand seen while the limit had room. Catching up
    /// here, one or two windows before the first settled window could, is what keeps the
    /// backlog queued behind the old limit (and the p99) short. `None`: no such window.
    fn early_catch_up(&mut self, limit: f64, w: &Window, tolerance: f64) -> Option<f64> {
        let settled = (w.in_flight / limit.round().max(1.0)).ln().abs() <= SETTLED_DLN_N;
        let r0 = self
            .baseline
            .filter(|_| self.confirmed && !(w.binding && settled))?;
        let demand = self.demand?;
        let from = self.caught_up.unwrap_or((1.0 + tolerance) * r0);
        let slower = w.run >= MAX_CATCH_UP * from;
        let calm = !self.saturated && !self.lagging && !self.unpaid;
        let growing = (w.queued || !w.binding) && w.in_flight <= limit;
        let growing = growing && w.arrivals > w.throughput();
        // `R` rose far more than `N`: Little's `N / R` fell under half the demand. On a
        // saturated CPU `N / R` stays near its capacity while `R` follows `N` (a real spike on
        // a machine a neighbour starved: `R` 24 -> 61 ms with `N` 540 -> 980, read as a
        // slower downstream, took the limit to 4,300 and 30,000 in flight).
        let slower = slower && w.throughput() * MAX_CATCH_UP < demand;
        // The arrivals, unless far from the demand seen with room (in the windows of the
        // transition they are far off either way).
        let arrivals = w.arrivals.clamp(demand, 2.0 * demand);
        let need = arrivals * w.run * (1.0 + tolerance);
        if !(slower && calm && growing) || need <= limit * PROBE {
            return None;
        }
        self.reason = Reason::CatchUp;
        self.measured = Some(*w);
        self.caught_up = Some(w.run);
        self.warming = false;
        Some(need)
    }

    /// Rule 5: saturated at `knee` in flight; the limit shrinks by `factor`.
    fn saturate(&mut self, limit: f64, knee: f64, factor: f64) -> f64 {
        self.knee = Some(knee);
        self.saturated = true;
        self.reason = Reason::Saturated;
        limit * factor
    }

    fn probe(&mut self, limit: f64, factor: f64) -> f64 {
        self.reason = Reason::Probe;
        (limit * factor).max(limit + 1.0)
    }

    /// `R` stayed flat while `N` moved: the run time at this `N` is uncongested; grow.
    fn productive(&mut self, limit: f64, w: &Window, baseline: f64, tolerance: f64) -> f64 {
        self.baseline = Some(self.raised_baseline(baseline, tolerance));
        self.caught_up = None;
        self.unpaid = false;
        self.confirmed = true;
        if self.knee.is_some_and(|knee| w.in_flight > knee) {
            self.knee = None; // productive past the old knee: it moved
        }
        // Growing back toward a known knee, the queue stays short; past it, it opens, unless
        // the window shed or dropped jobs (its arrivals unknown): an overload still stands, and
        // opening the queue to it let a 16x step queue 55,000 jobs in 300 ms (a real run).
        self.saturated &= self.knee.is_some() || w.arrivals <= 0.0;
        // By a quarter at most, however many steps paid in a row: a doubling (1,000 more
        // jobs each touching memory the process never had) stalled both cores of the real
        // machine for 0.4-1 s.
        self.grow(limit, Reason::Productive, FAST_GROWTH)
    }

    /// A growth step bought only latency while demand overflows (`step`; module docs, "A step
    /// that bought only latency"): back to `from`, the limit before it, with the knee there.
    /// `R0` stays: lowering it toward what the limit before the step implies (its `R` over
    /// `1 + tolerance`) took a noisy window's word for it and drove `R0` below the job's own
    /// time in the model (17.6 ms for a 20 ms job, goodput -16%).
    fn take_back(&mut self, from: f64, step: &Step) -> f64 {
        self.knee = Some(step.low_n);
        self.saturated = true;
        self.unpaid = true;
        self.reason = Reason::TakenBack;
        from
    }

    /// `R0` after a step that showed `candidate` uncongested. A known `R0` rises only a
    /// quarter of the way toward a candidate less than `MAX_CATCH_UP (1 + tolerance)` times
    /// above it: two windows that a busy neighbour slowed alike look like a flat step, and
    /// taking their mean whole let `R0`, and the limit with it, ratchet up through a long
    /// overload (module docs, "Baseline drift"). A downstream that slowed that much or more
    /// is taken at once: that is a different service, and the catch-up relies on it.
    fn raised_baseline(&self, candidate: f64, tolerance: f64) -> f64 {
        match self.baseline.filter(|_| self.confirmed) {
            Some(r0) if candidate > r0 && candidate < MAX_CATCH_UP * (1.0 + tolerance) * r0 => {
                r0 + R0_RAISE * (candidate - r0)
            }
            _ => candidate,
        }
    }

    /// Grows by `fast` (by 10% at most near the last knee, and not past it otherwise), by one
    /// job at least.
    fn grow(&mut self, limit: f64, reason: Reason, fast: f64) -> f64 {
        self.reason = reason;
        self.grown_from = Some(limit);
        let next = match self.knee {
            Some(knee) if limit * GENTLE_GROWTH >= knee => limit * fast.min(GENTLE_GROWTH),
            Some(knee) => (limit * fast).min(knee),
            None => limit * fast,
        };
        next.max(limit + 1.0)
    }
}

/// What moving from one settled window to the next showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// `dln R / dln N`.
    pub(crate) e: f64,
    pub(crate) dln_n: f64,
    /// The lower of the two `N`.
    pub(crate) low_n: f64,
    /// The mean of the two `R` (for a flat step, both are uncongested).
    pub(crate) mean_run: f64,
    /// `R` of the window with the lower `N`.
    pub(crate) low_run: f64,
    /// `dln X / dln N`, `X` the counted completion rate (1 when more in flight brought
    /// proportionally more completions, 0 when none).
    pub(crate) gain: f64,
}

impl Step {
    /// The step between two windows, when `N` moved enough to tell.
    pub(crate) fn between(prev: &Window, cur: &Window) -> Option<Step> {
        let positive = [prev.run, cur.run, prev.in_flight, cur.in_flight];
        if positive.iter().any(|v| v.is_nan() || *v <= 0.0) {
            return None;
        }
        let dln_n = (cur.in_flight / prev.in_flight).ln();
        if dln_n.abs() < MIN_DLN_N {
            return None;
        }
        let gain = match (prev.rate, cur.rate) {
            (a, b) if a > 0.0 && b > 0.0 => (b / a).ln() / dln_n,
            _ => 0.0,
        };
        Some(Step {
            gain,
            e: (cur.run / prev.run).ln() / dln_n,
            dln_n,
            low_n: prev.in_flight.min(cur.in_flight),
            mean_run: (prev.run + cur.run) / 2.0,
            low_run: if dln_n > 0.0 { prev.run } else { cur.run },
        })
    }

    /// A step up of 15% or more that bought only latency: `R` followed `N` and the counted
    /// completions did not. (On smaller moves both measures are mostly the windows' noise:
    /// taking such steps back cost 0.6% of the spike's goodput in real runs.)
    fn unpaid(&self) -> bool {
        self.dln_n >= FLAT_DLN_N && self.e >= SATURATED_E && self.gain < MIN_GAIN
    }

    /// A large enough step up paid: the counted completions grew with `N` and `R` grew less
    /// than half as fast (not saturated, though not flat: the step's own first touches, or
    /// noise, may have slowed its jobs).
    fn paid(&self) -> bool {
        let e = -FLAT_E..SATURATED_E;
        self.dln_n >= FLAT_DLN_N && e.contains(&self.e) && self.gain >= MIN_GAIN
    }

    /// A step up that gives no verdict (checked once it neither was flat nor paid): the counted
    /// completions followed `N` (`gain >= MIN_GAIN`, so nothing saturated), or they did not
    /// while `R` stayed flat (`|e| < FLAT_E`: Little's `X = N / R` grew with `N`); the two
    /// measures of throughput disagree.
    ///
    /// On a move under `FLAT_DLN_N`, only a flat `R` counts: the counted completions of two
    /// windows are too noisy to compare over so small a move.
    fn inconclusive(&self) -> bool {
        let counted = self.gain >= MIN_GAIN && self.dln_n >= FLAT_DLN_N;
        self.dln_n > 0.0 && (counted || self.e.abs() < FLAT_E)
    }

    /// `R` did not follow a large enough move of `N`. (A clearly negative `e`, `R` rising while
    /// `N` fell, means the conditions changed between the windows: no verdict.)
    fn is_flat(&self) -> bool {
        self.e.abs() < FLAT_E && self.dln_n.abs() >= FLAT_DLN_N && self.gain >= MIN_GAIN
    }
}

/// Whether two windows saw about the same number in flight (within 10%, or one job) and the
/// same mean run time (within 10%): demand and the service were steady, not ramping.
fn steady(a: &Window, b: &Window) -> bool {
    let (lo, hi) = (a.in_flight.min(b.in_flight), a.in_flight.max(b.in_flight));
    let same_run = a.run > 0.0 && b.run > 0.0 && (a.run / b.run).ln().abs() <= 0.1;
    hi <= 1.1 * lo + 1.0 && same_run
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 0.25;
    const MAX: f64 = 5_000.0;

    /// A window whose completion rate is what Little's law gives, `N / R`.
    fn window(run_ms: f64, in_flight: f64, binding: bool) -> Window {
        Window {
            run: run_ms / 1_000.0,
            in_flight,
            binding,
            overflowed: binding,
            queued: binding,
            rate: in_flight * 1_000.0 / run_ms,
            arrivals: 0.0,
        }
    }

    /// A law that has learned `R0 = r0_ms` from two steady windows that did not bind.
    fn learned(r0_ms: f64) -> Law {
        let mut law = Law::new(1_000.0);
        law.update(1_000.0, &window(r0_ms, 100.0, false), TOL, MAX);
        law.update(1_000.0, &window(r0_ms, 110.0, false), TOL, MAX);
        assert_eq!(law.baseline, Some(r0_ms / 1_000.0));
        assert!(law.confirmed);
        law
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn windows_that_do_not_bind_keep_the_limit_and_average_r0_when_steady() {
        let mut law = Law::new(1_000.0);
        assert_eq!(
            law.update(500.0, &window(20.0, 10.0, false), TOL, MAX),
            500.0
        );
        assert_eq!(law.baseline, None, "one window: N may still be moving");
        law.update(500.0, &window(20.0, 11.0, false), TOL, MAX);
        assert!(close(law.baseline.unwrap(), 0.020));
        law.update(500.0, &window(22.0, 12.0, false), TOL, MAX);
        assert!(close(law.baseline.unwrap(), 0.021), "averaged");
        // N tripled (a ramp): R0 untouched
        law.update(500.0, &window(22.0, 36.0, false), TOL, MAX);
        assert!(close(law.baseline.unwrap(), 0.021));
        // R doubled at the same N (still moving): untouched
        law.update(500.0, &window(44.0, 36.0, false), TOL, MAX);
        assert!(close(law.baseline.unwrap(), 0.021));
        assert_eq!(law.reason, Reason::NotBinding);
    }

    #[test]
    fn a_limit_far_above_demand_relaxes_toward_it_but_not_below_the_initial_limit() {
        let mut law = Law::new(1_000.0);
        assert_eq!(
            law.update(5_000.0, &window(200.0, 2_400.0, false), TOL, MAX),
            4_800.0
        );
        assert_eq!(law.reason, Reason::Relax);
        assert_eq!(
            law.update(4_800.0, &window(20.0, 300.0, false), TOL, MAX),
            3_840.0
        );
        assert_eq!(
            law.update(1_100.0, &window(20.0, 10.0, false), TOL, MAX),
            1_000.0
        );
        assert_eq!(
            law.update(1_000.0, &window(20.0, 10.0, false), TOL, MAX),
            1_000.0
        );
        assert_eq!(law.reason, Reason::NotBinding);
        // a learned limit below the initial one is never raised by idleness
        assert_eq!(law.update(3.0, &window(1.0, 1.0, false), TOL, MAX), 3.0);
    }

    #[test]
    fn unsettled_binding_window_waits() {
        let mut law = learned(20.0);
        assert_eq!(
            law.update(1_000.0, &window(60.0, 700.0, true), TOL, MAX),
            1_000.0
        );
        assert_eq!(law.reason, Reason::Settling);
    }

    #[test]
    fn room_grows_by_a_quarter_without_a_knee_and_gently_near_one() {
        let mut law = learned(20.0);
        assert_eq!(
            law.update(1_000.0, &window(20.0, 1_000.0, true), TOL, MAX),
            1_250.0
        );
        assert_eq!(law.reason, Reason::Room);
        law.knee = Some(1_050.0);
        assert_eq!(
            law.update(1_000.0, &window(20.0, 1_000.0, true), TOL, MAX),
            1_100.0
        );
        law.knee = Some(3_000.0);
        assert_eq!(
            law.update(1_000.0, &window(20.0, 1_000.0, true), TOL, MAX),
            1_250.0
        );
        law.knee = Some(1_200.0);
        assert_eq!(
            law.update(1_000.0, &window(20.0, 1_000.0, true), TOL, MAX),
            1_200.0
        );
    }

    #[test]
    fn room_grows_by_no_more_than_the_room_left_within_the_tolerance() {
        let mut law = learned(20.0);
        // R 24 ms of at most 25 ms: 1.25 / 1.2, by Little's law at a flat X
        let next = law.update(1_000.0, &window(24.0, 1_000.0, true), TOL, MAX);
        assert!(close(next, 1_000.0 * 1.25 / 1.2), "{next}");
        assert_eq!(law.reason, Reason::Room);
        // near a known knee, never more than the gentle 10%, and one job at least
        law.knee = Some(1_050.0);
        let next = law.update(1_000.0, &window(24.9, 1_000.0, true), TOL, MAX);
        assert!(close(next, 1_000.0 * 1.25 / 1.245), "{next}");
        assert_eq!(
            law.update(1_000.0, &window(25.0, 1_000.0, true), TOL, MAX),
            1_001.0
        );
        let next = law.update(1_000.0, &window(21.0, 1_000.0, true), TOL, MAX);
        assert!(close(next, 1_100.0), "{next}");
    }

    #[test]
    fn inflated_run_time_that_followed_n_shrinks_in_proportion_at_most_halving() {
        let mut law = learned(20.0);
        law.update(1_000.0, &window(25.5, 1_000.0, true), TOL, MAX); // a probe
        // N 1000 -> 1200 and R 25.5 -> 30 ms: e = ln(1.18) / ln(1.2) > 0.5; inflation 1.5
        // with jobs queued, the step that brought no more completions first holds, saturated
        let next = law.update(1_200.0, &window(30.0, 1_200.0, true), TOL, MAX);
        assert_eq!(next, 1_200.0);
        assert_eq!(law.reason, Reason::Unpaid);
        assert!(law.saturated);
        assert_eq!(law.knee, Some(1_000.0));
        // without a queue, the same step shrinks at once
        let mut law = learned(20.0);
        law.update(1_000.0, &window(25.5, 1_000.0, true), TOL, MAX); // a probe
        let unqueued = Window {
            queued: false,
            ..window(30.0, 1_200.0, true)
        };
        let next = law.update(1_200.0, &unqueued, TOL, MAX);
        assert!(close(next, 1_200.0 * 1.25 / 1.5), "{next}");
        assert_eq!(law.reason, Reason::Saturated);
        assert!(law.saturated);
        assert_eq!(law.knee, Some(1_200.0));
        // far worse at a lower N (R did not follow N: conditions changed), while saturated:
        // at most 20% (a stall, or a slower downstream R0 does not know, is not our doing)
        let next = law.update(1_000.0, &window(100.0, 1_000.0, true), TOL, MAX);
        assert_eq!(next, 800.0);
        // R followed a move of N (1,000 -> 1,200, R 100 -> 150 ms: e = 2.2): at most halving
        let followed = Window {
            queued: false,
            ..window(150.0, 1_200.0, true)
        };
        assert_eq!(law.update(1_200.0, &followed, TOL, MAX), 600.0);
    }

    #[test]
    fn a_growth_step_that_bought_only_latency_under_overload_is_taken_back() {
        let mut law = learned(20.0);
        // room to grow: 1,000 -> 1,190
        let next = law.update(1_000.0, &window(21.0, 1_000.0, true), TOL, MAX);
        assert_eq!(law.reason, Reason::Room);
        // the jobs shed (arrivals unknown), N up 19%, R followed it, the completions did not
        let unpaid = Window {
            queued: false,
            rate: 47_600.0,
            ..window(25.0, next, true)
        };
        assert_eq!(law.update(next, &unpaid, TOL, MAX), 1_000.0);
        assert_eq!(law.reason, Reason::TakenBack);
        assert!(law.saturated && law.unpaid);
        assert_eq!(law.knee, Some(1_000.0));
        // R0 is not lowered by it (a noisy window before the step would drag it below the
        // job's own time), and a step that was no growth of the law's is not taken back
        assert_eq!(law.baseline, Some(0.020));
        assert_eq!(law.grown_from, None);
    }

    #[test]
    fn a_flat_step_raises_a_known_r0_only_a_tenth_of_the_way_unless_far_above() {
        // two windows a busy neighbour slowed alike: N 1000 -> 800, R 30 ms both
        let mut law = learned(20.0);
        law.update(1_000.0, &window(30.0, 1_000.0, true), TOL, MAX);
        law.update(800.0, &window(30.0, 800.0, true), TOL, MAX);
        assert_eq!(law.reason, Reason::Productive);
        let r0 = law.baseline.expect("known");
        assert!(close(r0, 0.021), "{r0}");
        // a downstream ten times slower is a different service: learned whole
        let mut law = learned(20.0);
        law.update(1_000.0, &window(200.0, 1_000.0, true), TOL, MAX);
        law.update(1_250.0, &window(200.0, 1_250.0, true), TOL, MAX);
        assert_eq!(law.reason, Reason::Productive);
        assert_eq!(law.baseline, Some(0.2));
    }

    #[test]
    fn latency_rise_at_constant_n_probes_unless_saturated() {
        let mut law = learned(20.0);
        // 10x slower: the probe is +25%, never more (a doubling, 1,000 more jobs each touching
        // memory the process never had, stalled both cores of the real machine for 0.4-1 s)
        assert_eq!(
            law.update(1_000.0, &window(200.0, 1_000.0, true), TOL, MAX),
            1_250.0
        );
        assert_eq!(law.reason, Reason::Probe);
        // 1.5x slower: the probe is the excess over the tolerance, +20%
        let mut law = learned(20.0);
        assert_eq!(
            law.update(1_000.0, &window(30.0, 1_000.0, true), TOL, MAX),
            1_200.0
        );
        law.saturated = true;
        // saturated, at an unchanged N: shrink, by at most 20% (nothing new was learned)
        let next = law.update(1_000.0, &window(100.0, 1_000.0, true), TOL, MAX);
        assert_eq!(next, 800.0);
        assert_eq!(law.reason, Reason::Saturated);
    }

    #[test]
    fn flat_step_raises_r0_to_the_slower_downstream_and_grows_a_quarter_at_a_time() {
        let mut law = learned(20.0);
        law.update(1_000.0, &window(200.0, 1_000.0, true), TOL, MAX); // probe
        law.saturated = true;
        let mut shed = law.clone();
        let admitted = Window {
            arrivals: 10_000.0,
            ..window(202.0, 1_240.0, true)
        };
        let next = law.update(1_250.0, &admitted, TOL, MAX);
        assert_eq!(next, 1_562.5);
        assert_eq!(law.reason, Reason::Productive);
        assert!(
            close(law.baseline.unwrap(), 0.201),
            "the mean of both windows"
        );
        assert!(!law.saturated, "nothing shed: the queue opens");
        // the same step in a window that shed jobs: an overload stands, the queue stays short
        shed.update(1_250.0, &window(202.0, 1_240.0, true), TOL, MAX);
        assert_eq!(shed.reason, Reason::Productive);
        assert!(shed.saturated);
        // a second flat step in a row grows by a quarter again, never doubles
        let next = law.update(1_562.5, &window(200.0, 1_562.5, true), TOL, MAX);
        assert_eq!(next, 1_953.125);
    }

    #[test]
    fn a_step_that_paid_re_baselines_a_slower_downstream_though_not_flat() {
        // The probe's own first touches slowed its jobs by 10%: e = 0.43, not flat, but the
        // completions grew with N. Read as saturation, it halved the limit of a pool at 0.3x.
        let mut law = learned(20.0);
        law.update(1_000.0, &window(200.0, 1_000.0, true), TOL, MAX); // probe to 1,250
        let next = law.update(1_250.0, &window(220.0, 1_250.0, true), TOL, MAX);
        assert_eq!(law.reason, Reason::Productive);
        assert_eq!(law.baseline, Some(0.2), "the run time before the step");
        assert_eq!(next, 1_562.5);
        // the same step at the knee, R before it near R0, is noise: no re-baseline
        let mut law = learned(20.0);
        law.update(1_000.0, &window(24.0, 1_000.0, true), TOL, MAX); // room to 1,250
        law.update(1_250.0, &window(26.4, 1_250.0, true), TOL, MAX);
        assert_eq!(law.baseline, Some(0.02));
    }

    #[test]
    fn a_step_that_did_not_pay_holds_and_probes_no_further() {
        let mut law = learned(20.0);
        law.update(1_000.0, &window(200.0, 1_000.0, true), TOL, MAX); // probe to 1,250
        // R followed N, the completions did not grow; fewer arrive than complete (a backlog
        // drains): hold, not saturated
        let draining = Window {
            rate: 5_000.0,
            arrivals: 4_000.0,
            ..window(250.0, 1_250.0, true)
        };
        assert_eq!(law.update(1_250.0, &draining, TOL, MAX), 1_250.0);
        assert_eq!(law.reason, Reason::Unpaid);
        assert!(!law.saturated);
        // the next window at the same N, R still high: no probe, no shrink
        assert_eq!(law.update(1_250.0, &draining, TOL, MAX), 1_250.0);
        assert_eq!(law.reason, Reason::Unpaid);
        // more arrives than completes: saturated, the queue is kept short
        let mut law = learned(20.0);
        law.update(1_000.0, &window(200.0, 1_000.0, true), TOL, MAX);
        let overloaded = Window {
            arrivals: 7_000.0,
            ..draining
        };
        assert_eq!(law.update(1_250.0, &overloaded, TOL, MAX), 1_250.0);
        assert!(law.saturated);
        assert_eq!(law.knee, Some(1_000.0));
    }

    #[test]
    fn growth_stops_at_what_the_arrivals_need() {
        // A backlog keeps the windows binding while it drains: the limit grows no further than
        // arrivals x R x (1 + tolerance), with R no more than R0 (here 20 ms; the window's 24 ms
        // may be a stall's).
        let mut law = learned(20.0);
        let w = |arrivals, run_ms| Window {
            arrivals,
            ..window(run_ms, 1_000.0, true)
        };
        // 54,000/s x 20 ms x 1.25 = 1,350: the quarter step (1,250) is within it
        assert_eq!(law.update(1_000.0, &w(54_000.0, 20.0), TOL, MAX), 1_250.0);
        // 1,080 needed
        assert!(close(
            law.update(1_000.0, &w(43_200.0, 20.0), TOL, MAX),
            1_080.0
        ));
        // 45,000/s needed 1,181 by the window's R (21 ms, room for 1,190), but 1,125 by R0
        assert!(close(
            law.update(1_000.0, &w(45_000.0, 21.0), TOL, MAX),
            1_125.0
        ));
        assert_eq!(law.update(1_000.0, &w(36_000.0, 20.0), TOL, MAX), 1_000.0);
        assert_eq!(law.reason, Reason::Demand);
    }

    #[test]
    fn a_flat_run_time_without_more_completions_is_no_flat_step() {
        // The soak's creep: at the knee, a step whose mean R came out flat on noise raised R0
        // and with it the limit. The counted completions did not grow: no evidence.
        let mut law = learned(20.0);
        law.update(1_000.0, &window(30.0, 1_000.0, true), TOL, MAX); // probe to 1,250
        let noisy = Window {
            rate: 1_000.0 * 1_000.0 / 30.0,
            ..window(30.0, 1_200.0, true)
        };
        assert_eq!(law.update(1_250.0, &noisy, TOL, MAX), 1_250.0);
        assert_eq!(law.baseline, Some(0.02));
        // nor evidence of saturation: Little's law (`R` flat while `N` rose) says the step paid;
        // held, and measured again from the same point
        assert_eq!(law.reason, Reason::Inconclusive);
        assert!(!law.saturated);
        assert_eq!(law.measured.map(|m| m.in_flight), Some(1_000.0));
        // the next window agrees with the count (R followed N, e = 1): the step did not pay
        let followed = Window {
            rate: 1_000.0 * 1_000.0 / 30.0,
            ..window(36.0, 1_200.0, true)
        };
        assert_eq!(law.update(1_250.0, &followed, TOL, MAX), 1_250.0);
        assert_eq!(law.reason, Reason::Unpaid);
        assert!(law.saturated);
    }

    #[test]
    fn a_slower_downstream_with_a_growing_queue_is_caught_up_with_by_littles_law() {
        // R rose tenfold at an unchanged N while 7,450 jobs/s arrive and 5,000 complete: the
        // need is 7,450/s x 200 ms, plus the tolerance so the backlog drains
        let slow = |arrivals: f64| Window {
            arrivals,
            ..window(200.0, 1_000.0, true)
        };
        let mut law = learned(20.0);
        let next = law.update(1_000.0, &slow(7_450.0), TOL, MAX);
        assert!(close(next, 7_450.0 * 0.2 * 1.25), "{next}");
        assert_eq!(law.reason, Reason::CatchUp);
        assert!(!law.saturated);
        // at once, but to no more than twice what the demand seen with room (5,100/s) needs
        // (or doubling), however many the arrivals seem
        let mut law = learned(20.0);
        let next = law.update(1_000.0, &slow(40_000.0), TOL, MAX);
        assert!(close(next, 2.0 * 5_100.0 * 0.2 * 1.25), "{next}");
        // a backlog that drains, or arrivals unknown: the probe of +25%
        for arrivals in [4_000.0, 0.0] {
            let mut law = learned(20.0);
            assert_eq!(law.update(1_000.0, &slow(arrivals), TOL, MAX), 1_250.0);
            assert_eq!(law.reason, Reason::Probe);
        }
        // R only 1.5x or 2x R0 (a CPU near its knee, or one that lost a core, rather than a
        // slower downstream), the arrivals about the demand seen with room (5,100/s): the
        // probe, by the excess up to +25%
        for (run, probe) in [(30.0, 1_200.0), (45.0, 1_250.0)] {
            let mut law = learned(20.0);
            let knee = Window {
                arrivals: 6_000.0,
                ..window(run, 1_000.0, true)
            };
            assert!(close(law.update(1_000.0, &knee, TOL, MAX), probe));
            assert_eq!(law.reason, Reason::Probe);
        }
        // the same with the arrivals well past that demand (a spike onto a CPU at its knee):
        // R rose because more came; saturated, by 20% at most, no probe
        for run in [30.0, 45.0] {
            let mut law = learned(20.0);
            let spike = Window {
                arrivals: 60_000.0,
                ..window(run, 1_000.0, true)
            };
            let next = law.update(1_000.0, &spike, TOL, MAX);
            assert!(close(next, 1_000.0 * (25.0 / run).max(0.8)), "{next}");
            assert_eq!(law.reason, Reason::Saturated);
            assert!(law.saturated);
        }
    }

    #[test]
    fn a_slower_downstream_is_caught_up_with_before_a_window_settles() {
        // The first window of 200 ms jobs after R0 = 20 ms, 5,100 jobs/s seen with room: not
        // binding yet (or binding with jobs queued, N still ramping), more arriving than N / R
        let first = |binding: bool| Window {
            arrivals: 7_450.0,
            queued: binding,
            ..window(200.0, 150.0, binding)
        };
        for binding in [false, true] {
            let mut law = learned(20.0);
            let next = law.update(1_000.0, &first(binding), TOL, MAX);
            assert!(close(next, 7_450.0 * 0.2 * 1.25), "{next}");
            assert_eq!(law.reason, Reason::CatchUp);
            // the catch-up's own first touches inflate R: no second catch-up for that
            let stalled = Window {
                arrivals: 9_000.0,
                ..window(330.0, 1_500.0, false)
            };
            assert_eq!(law.update(next, &stalled, TOL, MAX), next);
            assert_ne!(law.reason, Reason::CatchUp);
        }
        // arrivals far above the demand seen with room: twice that demand at most
        let mut law = learned(20.0);
        let noisy = Window {
            arrivals: 40_000.0,
            ..first(false)
        };
        let next = law.update(1_000.0, &noisy, TOL, MAX);
        assert!(close(next, 2.0 * 5_100.0 * 0.2 * 1.25), "{next}");
        // R only twice R0 (a CPU near its knee), the jobs in flight not growing, or R that
        // followed N: no verdict before the window settles
        for w in [
            Window {
                arrivals: 60_000.0,
                ..window(40.0, 150.0, false)
            },
            Window {
                arrivals: 500.0,
                ..first(false)
            },
            // a saturated CPU: R 3.25x R0 as N rose to 900, N / R still 13,800/s
            Window {
                arrivals: 20_000.0,
                queued: true,
                ..window(65.0, 900.0, true)
            },
        ] {
            let mut law = learned(20.0);
            assert_eq!(law.update(1_000.0, &w, TOL, MAX), 1_000.0);
            assert_ne!(law.reason, Reason::CatchUp);
        }
    }

    #[test]
    fn a_flat_step_whose_count_fell_with_the_cohorts_holds_and_is_measured_again() {
        // Jobs that started together end together: a window's count swings with its phase.
        // After the probe to 1,250, R stayed at 200 ms (Little's X grew 25%) but the window
        // counted fewer completions than the last: before, "unpaid" and saturated, the queue cut
        // to the target and the limit shrunk window after window.
        let mut law = learned(20.0);
        law.update(1_000.0, &window(200.0, 1_000.0, true), TOL, MAX); // probe to 1,250
        let low_phase = Window {
            rate: 4_000.0,
            ..window(200.0, 1_250.0, true)
        };
        assert_eq!(law.update(1_250.0, &low_phase, TOL, MAX), 1_250.0);
        assert_eq!(law.reason, Reason::Inconclusive);
        assert!(!law.saturated && !law.unpaid);
        // the next window, in the other phase: a flat step, R0 is the slower downstream's
        let next = law.update(1_250.0, &window(200.0, 1_250.0, true), TOL, MAX);
        assert_eq!(law.reason, Reason::Productive);
        assert_eq!(next, 1_562.5);
        assert!(close(law.baseline.unwrap(), 0.2));
    }

    #[test]
    fn r_following_a_small_move_of_n_shrinks_by_a_fifth_at_most() {
        // A 10% move is too small to measure e: the step's own first touches alone can read as
        // R following N. Saturated (R inflated, N moved), but no halving.
        let mut law = learned(20.0);
        law.update(1_000.0, &window(30.0, 1_000.0, true), TOL, MAX); // probe to 1,200
        let unqueued = Window {
            queued: false,
            ..window(60.0, 1_100.0, true)
        };
        assert!(close(law.update(1_200.0, &unqueued, TOL, MAX), 960.0));
        assert_eq!(law.reason, Reason::Saturated);
    }

    #[test]
    fn small_moves_never_count_as_flat() {
        let mut law = learned(20.0);
        law.update(1_000.0, &window(30.0, 1_000.0, true), TOL, MAX);
        // N +10% and R flat: too small a move to re-baseline, and no evidence of saturation
        // either (R did not follow N): held, measured again
        assert_eq!(
            law.update(1_100.0, &window(30.0, 1_100.0, true), TOL, MAX),
            1_100.0
        );
        assert_eq!(law.baseline, Some(0.02));
        assert_eq!(law.reason, Reason::Inconclusive);
        assert!(!law.saturated);
    }

    #[test]
    fn a_step_that_did_not_pay_by_a_little_is_measured_again_before_the_queue_is_cut() {
        // Catching up with a slower downstream (R0 200 ms), a step from 2,000 to 2,450 in flight
        // whose first touches stalled its first window: R +22%, the count flat, the arrivals
        // about what completes. Read at once as saturation, it cut a two-second backlog.
        let mut law = learned(200.0);
        let measured = Window {
            arrivals: 11_900.0,
            ..window(200.0, 2_000.0, true)
        };
        law.update(2_000.0, &measured, TOL, MAX); // room: 2,500
        let stalled = Window {
            rate: 10_100.0,
            arrivals: 11_950.0,
            ..window(245.0, 2_450.0, true)
        };
        assert_eq!(law.update(2_500.0, &stalled, TOL, MAX), 2_500.0);
        assert_eq!(law.reason, Reason::Unpaid);
        assert!(!law.saturated, "measured again first");
        // the second window agrees: saturated, the queue is kept short
        assert_eq!(law.update(2_500.0, &stalled, TOL, MAX), 2_500.0);
        assert!(law.saturated);
        // demand clearly over the completions (a spike at a CPU knee): at once
        let mut law = learned(200.0);
        law.update(2_000.0, &measured, TOL, MAX);
        let spike = Window {
            arrivals: 15_000.0,
            ..stalled
        };
        law.update(2_500.0, &spike, TOL, MAX);
        assert!(law.saturated);
    }

    #[test]
    fn cold_start_probes_down_then_descends_until_a_step_is_flat() {
        let mut law = Law::new(1_000.0);
        assert_eq!(
            law.update(1_000.0, &window(25.0, 1_000.0, true), TOL, MAX),
            800.0,
            "nothing known: a step down, never up"
        );
        assert_eq!(law.reason, Reason::Probe);
        // R fell with N (e = 1): past the knee; descend
        assert_eq!(
            law.update(800.0, &window(20.0, 800.0, true), TOL, MAX),
            480.0
        );
        assert_eq!(law.reason, Reason::BlindDescent);
        assert!(law.saturated);
        // 800 -> 480 left R at 20 ms: flat, R0 found; grow back toward the knee
        assert_eq!(
            law.update(480.0, &window(20.0, 480.0, true), TOL, MAX),
            600.0
        );
        assert_eq!(law.reason, Reason::Productive);
        assert_eq!(law.baseline, Some(0.02));
        assert!(law.confirmed);
    }

    /// A law whose limit is still the cold one: 750 below an initial limit of 1,000.
    fn cold() -> Law {
        let mut law = Law::new(1_000.0);
        law.warming = true;
        law
    }

    #[test]
    fn a_cold_limit_with_room_rises_to_the_initial_limit_once_r0_is_learned() {
        let mut law = cold();
        // one window with room: R0 not learned yet (its jobs may be the first of a stall)
        assert_eq!(
            law.update(750.0, &window(20.0, 150.0, false), TOL, MAX),
            750.0
        );
        assert!(law.warming);
        // a second, steady one teaches R0: up to the initial limit
        assert_eq!(
            law.update(750.0, &window(20.0, 160.0, false), TOL, MAX),
            1_000.0
        );
        assert_eq!(law.reason, Reason::Warming);
        assert!(!law.warming);
        // then it holds there like any limit with room
        assert_eq!(
            law.update(1_000.0, &window(20.0, 150.0, false), TOL, MAX),
            1_000.0
        );
        assert_eq!(law.reason, Reason::NotBinding);
        // from further below, doubling per window with room
        let mut law = cold();
        law.update(300.0, &window(20.0, 150.0, false), TOL, MAX);
        assert_eq!(
            law.update(300.0, &window(20.0, 150.0, false), TOL, MAX),
            600.0
        );
        assert!(law.warming);
        assert_eq!(
            law.update(600.0, &window(24.0, 300.0, false), TOL, MAX),
            1_000.0
        );
        assert!(!law.warming);
    }

    #[test]
    fn a_cold_limit_stays_while_run_times_rise_or_once_a_verdict_moved_it() {
        // two steady windows with room: learned and warmed
        let mut law = cold();
        law.update(750.0, &window(20.0, 100.0, false), TOL, MAX);
        law.update(750.0, &window(20.0, 105.0, false), TOL, MAX);
        assert!(!law.warming, "learned and warmed");
        // below the limit, jobs ran 1.5x slower than R0: something saturates; no warming up
        let mut law = cold();
        law.baseline = Some(0.020);
        law.confirmed = true;
        assert_eq!(
            law.update(750.0, &window(30.0, 300.0, false), TOL, MAX),
            750.0
        );
        assert!(law.warming, "still the cold limit");
        // demand met the cold limit and a verdict moved it (a step from cold): the cold start
        // proper; a later window with room does not raise the limit the law settled on
        let mut law = cold();
        assert_eq!(
            law.update(750.0, &window(25.0, 750.0, true), TOL, MAX),
            600.0
        );
        assert!(!law.warming);
        law.update(600.0, &window(20.0, 100.0, false), TOL, MAX);
        assert_eq!(
            law.update(600.0, &window(20.0, 100.0, false), TOL, MAX),
            600.0
        );
        // a window that bound and moved nothing (the cold start's own stall) does not end it
        let mut law = cold();
        assert_eq!(
            law.update(750.0, &window(60.0, 500.0, true), TOL, MAX),
            750.0
        );
        assert!(law.warming);
        // nor does the cold limit in use with nothing shed (the cold queue had room) while
        // the jobs run slower than the fastest window's (a stall): held, `COLD_HOLDS` times
        let admitted = |run_ms| Window {
            overflowed: false,
            ..window(run_ms, 750.0, true)
        };
        for _ in 0..COLD_HOLDS {
            assert_eq!(law.update(750.0, &admitted(90.0), TOL, MAX), 750.0);
            assert_eq!(law.reason, Reason::ColdHold);
            assert!(law.warming);
        }
        // then a verdict judges it
        law.update(750.0, &admitted(90.0), TOL, MAX);
        assert_ne!(law.reason, Reason::ColdHold);
        assert!(!law.warming);
        // jobs no slower than the fastest window's: the demand simply exceeds the cold limit
        // (a closed loop of 1,000 clients, which never overflows the cold queue): the
        // initial limit at once
        let mut law = cold();
        assert_eq!(law.update(750.0, &admitted(20.0), TOL, MAX), 1_000.0);
        assert_eq!(law.reason, Reason::Warming);
        assert!(!law.warming);
    }

    #[test]
    fn a_cold_limit_at_a_low_rate_rises_after_a_quiet_second() {
        // 10 jobs/s: too few to close a window (64 jobs); a whole second of them below the
        // limit is room enough
        let mut a = adaptive();
        let mut now = Duration::ZERO;
        for _ in 0..10 {
            now += Duration::from_millis(100);
            a.on_sample(now, &sample(20, 0, 1, false));
        }
        assert_eq!(a.limit(), 750, "not yet a whole second");
        now += Duration::from_millis(100);
        a.on_sample(now, &sample(20, 0, 1, false));
        assert_eq!(a.limit(), 1_000);
        assert_eq!(a.reason(), Reason::Warming);
        // the same second with jobs at the limit, or queued: no warming up
        for (in_flight, wait) in [(750, 0), (1, 20)] {
            let mut a = adaptive();
            let mut now = Duration::ZERO;
            for _ in 0..20 {
                now += Duration::from_millis(100);
                a.on_sample(now, &sample(20, wait, in_flight, false));
            }
            assert_eq!(a.limit(), 750, "in flight {in_flight}, wait {wait}");
        }
    }

    #[test]
    fn the_ceiling_caps_growth() {
        let mut law = learned(20.0);
        assert_eq!(
            law.update(4_000.0, &window(20.0, 4_000.0, true), TOL, MAX),
            MAX
        );
        assert_eq!(law.update(MAX, &window(20.0, MAX, true), TOL, MAX), MAX);
        assert_eq!(law.reason, Reason::Ceiling);
    }

    fn sample(run_ms: u64, wait_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample::ran(run_ms, in_flight)
            .with_wait(wait_ms)
            .with_drop(dropped)
    }

    fn adaptive() -> AdaptiveLimit {
        AdaptiveLimit::new(&AdaptiveConfig::default(), Bounds { min: 1, max: 5_000 })
    }

    #[test]
    fn queue_is_bounded_by_the_initial_limit_while_cold_and_by_the_target_while_saturated() {
        // nothing learned: as many may wait as may run at first, even past max_workers
        let a = AdaptiveLimit::new(&AdaptiveConfig::default(), Bounds { min: 1, max: 8 });
        assert_eq!(a.queue_bound(100_000), 1_000);
        assert_eq!(a.queue_bound(5), 5);
        let mut a = adaptive();
        assert_eq!(a.queue_bound(100_000), 1_000);
        assert!(
            !a.bounds_queue_alone(),
            "cold: a burst may wait for workers not started yet, beyond the limit only"
        );
        a.law.confirmed = true;
        assert_eq!(a.queue_bound(100_000), 100_000);
        assert!(!a.drop_at_dequeue(Duration::from_secs(10)));
        a.law.saturated = true;
        a.law.last_run = 0.025;
        // the cold limit, 750 x 5 ms / 25 ms
        assert_eq!(a.queue_bound(100_000), 150);
        assert!(
            a.bounds_queue_alone(),
            "saturated: the queue itself stays short"
        );
        assert_eq!(a.queue_bound(50), 50);
        assert!(!a.drop_at_dequeue(Duration::from_millis(10)));
        assert!(a.drop_at_dequeue(Duration::from_millis(11)));
    }

    #[test]
    fn samples_drive_the_law_through_windows() {
        let mut a = adaptive();
        assert_eq!(a.limit(), 750, "the cold limit");
        assert_eq!(a.reason(), Reason::Initial);
        let mut now = Duration::ZERO;
        // a first window with room: the fastest mean, 20 ms (one window teaches no `R0`)
        for _ in 0..100 {
            now += Duration::from_millis(1);
            a.on_sample(now, &sample(20, 0, 100, false));
        }
        assert_eq!(a.limit(), 750);
        // the cold limit in use, everything admitted, jobs twice as slow (a cold start's own
        // stall): held
        for _ in 0..100 {
            now += Duration::from_millis(1);
            a.on_sample(now, &sample(40, 3, 750, false));
        }
        assert_eq!(a.limit(), 750);
        assert_eq!(a.reason(), Reason::ColdHold);
        // a cold overload: every job starts with the limit full and runs 25 ms, and the cold
        // queue overflows
        for _ in 0..100 {
            now += Duration::from_millis(1);
            a.on_shed(now);
            a.on_sample(now, &sample(25, 3, 750, false));
        }
        // the first overflowing window probed down (a later one, if any, waits for jobs
        // started at the new limit)
        assert_eq!(a.limit(), 600);
        assert!(!a.law.warming, "demand met the cold limit: no warming up");
        assert!(matches!(a.reason(), Reason::Probe | Reason::Settling));
        let shed = a.acc.shed;
        a.on_shed(now);
        assert_eq!(a.acc.shed, shed + 1);
    }
}
