//! The synthetic heartbeat model: measures a detector's QoS (Chen, Toueg, Aguilera 2002) on an
//! abstract channel, with no TCP.
//!
//! # Model
//!
//! - The peer sends a heartbeat every η, at `η, 2η, 3η, …`; the monitor's detector is created at
//!   time zero with a virtual heartbeat then.
//! - Each heartbeat is lost according to [`Loss`]: independently with probability p, or in bursts
//!   ([`GilbertElliott`]).
//! - A delivered heartbeat takes a one-way delay drawn uniformly from `[0, J]` (the jitter), and
//!   arrivals stay in send order: a message arrives at `max(sent + delay, previous arrival)`, as
//!   over one TCP connection, so a later heartbeat never overtakes an earlier one.
//! - When the detector asks for a [`DetectorEvent::Probe`] (adaptive probing), the monitor sends
//!   a probe; the peer answers it at once and the answer counts as a heartbeat. Each leg is lost
//!   and delayed like a heartbeat (under bursty loss, with the loss probability of the channel's
//!   current state) and the answer joins the same in-order stream as the heartbeats.
//! - Same-instant events run in this order: the peer's sends, then arrivals, then the
//!   detector's timeouts, as the tie rule of [`crate::proto::detector`] requires.
//!
//! # What is measured
//!
//! A **live run** of a peer that never fails, for a given number of simulated hours: every
//! trust → suspect transition is a false suspicion. From it come the mistake count and exposure,
//! the mistake rate λ_M (with an exact Poisson interval, [`poisson_interval`]), the mistake
//! duration T_M, the mistake recurrence time T_MR and the query accuracy P_A. A suspicion still
//! open when the run ends counts for its observed part.
//!
//! **Crash trials**, spread evenly over the live run: at heartbeat `i`, the whole simulation is
//! cloned and the peer crashes at `i·η + φ`, φ uniform in `(0, η]` (so the heartbeat due at
//! `(i+1)·η` is never sent, and a crash never coincides with a send). Messages already in
//! flight are still delivered; a probe reaching the dead peer goes unanswered. The detection
//! time T_D runs from the crash to the start of the suspicion that lasts, i.e. the one still
//! held once nothing more is in flight; if the detector was already (falsely) suspecting at the
//! crash and nothing in flight restores trust, T_D is zero. A trial in which the detector has
//! not suspected [`DETECTION_HORIZON`] after the crash, or has nothing left to wait for, is a
//! **missed detection**. The live run continues from the state before the clone, so crash
//! trials cost no live time and do not disturb it.
//!
//! # Random streams and common random numbers
//!
//! All randomness comes from [`ChaCha8Rng`]: the key is `ChaCha8Rng::seed_from_u64(master)` and
//! each consumer reads its own ChaCha stream (the 64-bit nonce, [`ChaCha8Rng::set_stream`]),
//! numbered by chaining the SplitMix64 finalizer over `(purpose, key…)` (see [`stream`]). The
//! keys are the pairing's parameters, not its position in a grid:
//!
//! | purpose | key | consumer |
//! |---|---|---|
//! | heartbeats | η in ns | burst state, loss and delay of every heartbeat |
//! | crashes | η in ns | the crash phases φ |
//! | probes | η in ns, k | loss and delay of both legs of every probe |
//!
//! So every pairing with the same η sees the same heartbeat-loss sequence and the same crash
//! instants (common random numbers), a pairing's numbers do not depend on which other pairings
//! run beside it, and adding a consumer does not shift the others. Every heartbeat consumes the
//! same number of draws whatever its fate, so the streams stay aligned.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::proto::Time;
use crate::proto::detector::{AnyDetector, Detector, DetectorConfig, DetectorEvent, Verdict};

/// How long after a crash a detector may take before the trial counts as a missed detection.
pub const DETECTION_HORIZON: Duration = Duration::from_secs(3600);

/// How heartbeats are lost.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Loss {
    /// Each message lost independently with probability `p`.
    Independent { p: f64 },
    /// Losses in bursts, from a two-state Markov chain.
    Bursty(GilbertElliott),
}

impl Loss {
    /// The long-run fraction of messages lost.
    pub fn mean(&self) -> f64 {
        match self {
            Loss::Independent { p } => *p,
            Loss::Bursty(ge) => ge.mean_loss(),
        }
    }
}

/// The Gilbert-Elliott channel: a Good and a Bad state, each with its own loss probability. The
/// state steps once per heartbeat, before that heartbeat's loss is drawn: Good → Bad with
/// probability `good_to_bad`, Bad → Good with `bad_to_good`. The first state is drawn from the
/// stationary distribution.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GilbertElliott {
    pub good_to_bad: f64,
    pub bad_to_good: f64,
    /// Loss probability in the Good state.
    pub loss_good: f64,
    /// Loss probability in the Bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// The Gilbert special case with a given mean loss `p` and mean burst length `burst` (in
    /// heartbeats, at least 1): the Bad state loses everything, the Good state nothing, so a
    /// burst of losses is exactly a stay in Bad (`bad_to_good = 1/burst`) and the stationary
    /// share of Bad is `p` (`good_to_bad = p·bad_to_good/(1 − p)`). `None` if the parameters
    /// cannot give that (p outside `[0, 1)`, burst below 1, or `p > burst/(burst + 1)`).
    pub fn with_mean_loss(p: f64, burst: f64) -> Option<GilbertElliott> {
        if !(0.0..1.0).contains(&p) || !(1.0..f64::INFINITY).contains(&burst) {
            return None;
        }
        let bad_to_good = 1.0 / burst;
        let good_to_bad = p * bad_to_good / (1.0 - p);
        (good_to_bad <= 1.0).then_some(GilbertElliott {
            good_to_bad,
            bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        })
    }

    /// The stationary probability of the Bad state.
    pub fn bad_share(&self) -> f64 {
        let s = self.good_to_bad + self.bad_to_good;
        if s > 0.0 { self.good_to_bad / s } else { 0.0 }
    }

    /// The long-run fraction of messages lost.
    pub fn mean_loss(&self) -> f64 {
        let b = self.bad_share();
        (1.0 - b) * self.loss_good + b * self.loss_bad
    }
}

/// The synthetic channel between the peer and the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Model {
    pub loss: Loss,
    /// One-way delay drawn uniformly from `[0, jitter]`.
    pub jitter: Duration,
}

/// One point of a sweep: a detector with a heartbeat interval η and a miss threshold k.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pairing {
    pub detector: DetectorConfig,
    pub interval: Duration,
    pub miss_threshold: u32,
}

/// How much to simulate per pairing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Effort {
    /// Simulated hours of the live run.
    pub hours: f64,
    /// Number of crash trials.
    pub crashes: usize,
    /// The master seed.
    pub seed: u64,
}

/// Count, mean and variance of a sample, accumulated one value at a time (Welford).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub n: u64,
    pub mean: f64,
    m2: f64,
}

impl Summary {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// The sample variance (n − 1 in the denominator); zero below two values.
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }

    /// The standard error of the mean.
    pub fn std_error(&self) -> f64 {
        (self.variance() / self.n.max(1) as f64).sqrt()
    }
}

/// What a live run of a peer that never fails shows: false suspicions and their durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LiveStats {
    /// Simulated time of the run.
    pub exposure: Duration,
    /// Trust → suspect transitions (all false: the peer is alive).
    pub false_suspicions: u64,
    /// Total time spent suspecting, in seconds.
    pub suspected_secs: f64,
    /// Mistake durations T_M in seconds (an open suspicion at the end counts for its observed
    /// part).
    pub mistake_duration: Summary,
    /// Mistake recurrence times T_MR in seconds, between consecutive false suspicions.
    pub recurrence: Summary,
    /// Heartbeats the peer sent, and how many of them were lost.
    pub heartbeats: u64,
    pub heartbeats_lost: u64,
    /// Probes the monitor sent (adaptive probing).
    pub probes: u64,
}

impl LiveStats {
    pub fn exposure_hours(&self) -> f64 {
        self.exposure.as_secs_f64() / 3600.0
    }

    /// λ_M: false suspicions per monitored hour.
    pub fn mistake_rate_per_hour(&self) -> f64 {
        self.false_suspicions as f64 / self.exposure_hours()
    }

    /// An exact (Garwood) interval for λ_M per hour at `confidence`, e.g. 0.95.
    pub fn mistake_rate_interval(&self, confidence: f64) -> (f64, f64) {
        let (lo, hi) = poisson_interval(self.false_suspicions, confidence);
        let h = self.exposure_hours();
        (lo / h, hi / h)
    }

    /// E(T_M) in seconds, `None` without a mistake.
    pub fn mean_mistake_duration(&self) -> Option<f64> {
        (self.mistake_duration.n > 0).then_some(self.mistake_duration.mean)
    }

    /// P_A: the fraction of the run in which the live peer was trusted.
    pub fn query_accuracy(&self) -> f64 {
        1.0 - self.suspected_secs / self.exposure.as_secs_f64()
    }
}

/// Detection times of the crash trials.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DetectionStats {
    /// T_D of each detected crash in seconds, ascending.
    pub samples: Vec<f64>,
    /// Crashes not detected within [`DETECTION_HORIZON`].
    pub missed: usize,
}

impl DetectionStats {
    /// Number of crash trials.
    pub fn trials(&self) -> usize {
        self.samples.len() + self.missed
    }

    /// The nearest-rank `q`-quantile (`0 < q ≤ 1`) of T_D over all trials, a missed detection
    /// counting as infinite; `None` without a trial.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.trials();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        Some(self.samples.get(rank - 1).copied().unwrap_or(f64::INFINITY))
    }

    /// The largest T_D, infinite if a detection was missed.
    pub fn max(&self) -> Option<f64> {
        self.quantile(1.0)
    }

    /// The mean T_D of the detected crashes.
    pub fn mean(&self) -> Option<f64> {
        let n = self.samples.len();
        (n > 0).then(|| self.samples.iter().sum::<f64>() / n as f64)
    }
}

/// Everything measured for one pairing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measurement {
    pub pairing: Pairing,
    pub live: LiveStats,
    pub detection: DetectionStats,
}

/// The k-miss closed forms of `docs/qos.md`, exact for independent loss with probability `p`
/// and no delay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct KMissClosedForm {
    /// λ_M = (1 − p)·p^k/η, per hour.
    pub mistake_rate_per_hour: f64,
    /// E(T_M) = η/(1 − p), seconds.
    pub mean_mistake_duration: f64,
    /// P_A = 1 − p^k.
    pub query_accuracy: f64,
    /// Mean T_D for a crash at a uniformly random phase, (k − ½)·η, seconds (exact for p = 0;
    /// with loss the last heartbeat before a crash may itself be lost, which makes detection
    /// come earlier, by about η·p/(1 − p) on average).
    pub mean_detection: f64,
}

impl KMissClosedForm {
    pub fn new(p: f64, interval: Duration, k: u32) -> KMissClosedForm {
        let eta = interval.as_secs_f64();
        let pk = p.powi(i32::try_from(k).unwrap_or(i32::MAX));
        KMissClosedForm {
            mistake_rate_per_hour: 3600.0 * (1.0 - p) * pk / eta,
            mean_mistake_duration: eta / (1.0 - p),
            query_accuracy: 1.0 - pk,
            mean_detection: (f64::from(k) - 0.5) * eta,
        }
    }
}

/// The exact (Garwood) two-sided interval for the mean of a Poisson count `n` at `confidence`:
/// `[χ²(α/2; 2n)/2, χ²(1 − α/2; 2n + 2)/2]` with `α = 1 − confidence`, the lower bound 0 for
/// `n = 0`. Chi-square quantiles come from `statrs`.
pub fn poisson_interval(n: u64, confidence: f64) -> (f64, f64) {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    let alpha = 1.0 - confidence;
    let n = n as f64;
    let lower = if n == 0.0 {
        0.0
    } else {
        ChiSquared::new(2.0 * n)
            .expect("positive degrees of freedom")
            .inverse_cdf(alpha / 2.0)
            / 2.0
    };
    let upper = ChiSquared::new(2.0 * n + 2.0)
        .expect("positive degrees of freedom")
        .inverse_cdf(1.0 - alpha / 2.0)
        / 2.0;
    (lower, upper)
}

/// The consumers of randomness, each with its own ChaCha stream (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Heartbeats = 1,
    Crashes = 2,
    Probes = 3,
    /// The Gilbert-Elliott state timeline of one direction of a link ([`super::fault`]).
    LossState = 4,
    /// The random outages of one direction of a link ([`super::fault`]).
    Outages = 5,
    /// The per-attempt loss and latency draws of one direction's segments ([`super::fault`]).
    Segments = 6,
    /// Where each connection's kernels stand on their timer wheels ([`super::tcp`]).
    Timers = 7,
    /// The applications' messages: when each is due, its size and channel ([`super::traffic`]).
    Traffic = 8,
    /// The network simulator's own draws: turmoil's seed, tokens, jitter (`sim::runner`).
    Simulator = 16,
}

/// SplitMix64's finalizer: a stable, well-mixing bijection on `u64`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random stream of `purpose` for `key` under the master seed: the ChaCha8 key is
/// `seed_from_u64(master)` and the stream number is `mix(…mix(mix(purpose) ^ key[0]) … ^ key[n])`.
pub fn stream(master: u64, purpose: Purpose, key: &[u64]) -> ChaCha8Rng {
    let id = key.iter().fold(mix(purpose as u64), |acc, &k| mix(acc ^ k));
    let mut rng = ChaCha8Rng::seed_from_u64(master);
    rng.set_stream(id);
    rng
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The channel's random draws: loss (with its burst state) and delay.
#[derive(Clone, Debug)]
struct Channel {
    loss: Loss,
    jitter_ns: f64,
    bad: bool,
}

impl Channel {
    fn new(model: &Model, rng: &mut ChaCha8Rng) -> Channel {
        let bad = match model.loss {
            Loss::Independent { .. } => false,
            Loss::Bursty(ge) => rng.random::<f64>() < ge.bad_share(),
        };
        Channel {
            loss: model.loss,
            jitter_ns: nanos(model.jitter) as f64,
            bad,
        }
    }

    fn loss_now(&self) -> f64 {
        match self.loss {
            Loss::Independent { p } => p,
            Loss::Bursty(ge) if self.bad => ge.loss_bad,
            Loss::Bursty(ge) => ge.loss_good,
        }
    }

    /// Steps the burst state and draws one heartbeat's fate: its delay in ns, or `None` if
    /// lost. One 64-bit draw (two under bursty loss) whatever happens, so that the stream stays
    /// aligned.
    fn heartbeat(&mut self, rng: &mut ChaCha8Rng) -> Option<u64> {
        if let Loss::Bursty(ge) = self.loss {
            let step: f64 = rng.random();
            self.bad = if self.bad {
                step >= ge.bad_to_good
            } else {
                step < ge.good_to_bad
            };
        }
        self.leg(rng)
    }

    /// One message's fate in the current state, from one 64-bit draw: the high half decides
    /// the loss, the low half the delay (both uniform with 2⁻³² resolution).
    fn leg(&self, rng: &mut ChaCha8Rng) -> Option<u64> {
        const UNIT: f64 = 1.0 / 4_294_967_296.0;
        let u: u64 = rng.random();
        let lost = (u >> 32) as f64 * UNIT < self.loss_now();
        let delay = ((u & 0xFFFF_FFFF) as f64 * UNIT * self.jitter_ns) as u64;
        (!lost).then_some(delay)
    }
}

/// A probe on its way to the peer, with the fate of its answer decided at sending.
#[derive(Clone, Copy, Debug)]
struct OutboundProbe {
    at_peer: u64,
    answer_delay: Option<u64>,
}

/// "Nothing scheduled" in the event keys below.
const NEVER: u64 = u64::MAX;

/// One pairing's world: the peer, the channel and the monitor's detector, advanced event by
/// event in simulated time.
///
/// Internally time is kept in integer nanoseconds since the epoch (and handed to the detector
/// as [`Time`]): the next event is the minimum of four `u64` keys `t·4 + kind`, which orders
/// same-instant events by kind (sends, then the peer's answers, then arrivals, then timeouts)
/// without a branch per comparison. This limits a run to 2⁶² ns, about 146 years.
#[derive(Clone, Debug)]
pub struct Simulation {
    detector: AnyDetector,
    interval_ns: u64,
    channel: Channel,
    heartbeat_rng: ChaCha8Rng,
    probe_rng: ChaCha8Rng,
    /// When the next heartbeat is due, `NEVER` once the peer is dead.
    next_send: u64,
    /// The peer sends and answers nothing at or after this instant.
    dead_at: u64,
    /// Arrival times at the monitor, in order.
    inbound: VecDeque<u64>,
    last_inbound: u64,
    /// Probes travelling to the peer, in order.
    outbound: VecDeque<OutboundProbe>,
    last_outbound: u64,
    now: u64,
    suspected_since: Option<u64>,
    last_suspicion: Option<u64>,
    stats: LiveStats,
    /// Detector events, recorded only in crash trials.
    trace: Option<Vec<(Time, DetectorEvent)>>,
}

const SEND: u64 = 0;
const AT_PEER: u64 = 1;
const ARRIVAL: u64 = 2;
const TIMEOUT: u64 = 3;

fn key(t: u64, kind: u64) -> u64 {
    if t == NEVER { NEVER } else { (t << 2) | kind }
}

fn time(ns: u64) -> Time {
    Time::ZERO + Duration::from_nanos(ns)
}

fn ns_of(t: Time) -> u64 {
    nanos(t.since_epoch())
}

fn secs_between(later: u64, earlier: u64) -> f64 {
    later.saturating_sub(earlier) as f64 * 1e-9
}

/// The result of one crash trial.
#[derive(Clone, Debug, PartialEq)]
pub struct CrashOutcome {
    pub crash: Time,
    /// The last arrival at the monitor before the detection (or the detector's creation).
    pub last_arrival: Time,
    /// When the lasting suspicion began, `None` for a missed detection.
    pub detected: Option<Time>,
    /// The detector's events after the clone was taken.
    pub events: Vec<(Time, DetectorEvent)>,
}

impl CrashOutcome {
    /// T_D, zero if the detector already suspected at the crash.
    pub fn detection_time(&self) -> Option<Duration> {
        self.detected.map(|t| t.saturating_since(self.crash))
    }
}

impl Simulation {
    /// A world at time zero for `pairing` on `model`, with its random streams derived from
    /// `seed` as the module docs describe.
    pub fn new(model: &Model, pairing: &Pairing, seed: u64) -> Simulation {
        let eta = nanos(pairing.interval).max(1);
        let mut heartbeat_rng = stream(seed, Purpose::Heartbeats, &[eta]);
        let probe_rng = stream(
            seed,
            Purpose::Probes,
            &[eta, u64::from(pairing.miss_threshold)],
        );
        let channel = Channel::new(model, &mut heartbeat_rng);
        Simulation {
            detector: pairing
                .detector
                .build(Time::ZERO, pairing.interval, pairing.miss_threshold),
            interval_ns: eta,
            channel,
            heartbeat_rng,
            probe_rng,
            next_send: eta,
            dead_at: NEVER,
            inbound: VecDeque::new(),
            last_inbound: 0,
            outbound: VecDeque::new(),
            last_outbound: 0,
            now: 0,
            suspected_since: None,
            last_suspicion: None,
            stats: LiveStats::default(),
            trace: None,
        }
    }

    pub fn detector(&self) -> &AnyDetector {
        &self.detector
    }

    pub fn now(&self) -> Time {
        time(self.now)
    }

    /// The live statistics so far, with a suspicion still open counted up to now.
    pub fn live_stats(&self) -> LiveStats {
        let mut s = self.stats;
        s.exposure = Duration::from_nanos(self.now);
        if let Some(since) = self.suspected_since {
            let open = secs_between(self.now, since);
            s.suspected_secs += open;
            s.mistake_duration.push(open);
        }
        s
    }

    /// The key of the next event (see the type's docs), `NEVER` if nothing is scheduled.
    #[inline]
    fn next_event(&self) -> u64 {
        let timeout = self.detector.poll_timeout().map_or(NEVER, ns_of);
        let send = key(self.next_send, SEND);
        let peer = key(self.outbound.front().map_or(NEVER, |p| p.at_peer), AT_PEER);
        let arrival = key(self.inbound.front().copied().unwrap_or(NEVER), ARRIVAL);
        send.min(peer).min(arrival).min(key(timeout, TIMEOUT))
    }

    #[inline]
    fn push_inbound(&mut self, t: u64) {
        let t = t.max(self.last_inbound);
        self.last_inbound = t;
        self.inbound.push_back(t);
    }

    /// Processes the event with key `k`.
    #[inline]
    fn step(&mut self, k: u64) {
        self.now = self.now.max(k >> 2);
        let now = self.now;
        match k & 3 {
            SEND => {
                self.stats.heartbeats += 1;
                self.next_send = now.saturating_add(self.interval_ns);
                if self.next_send >= self.dead_at {
                    self.next_send = NEVER;
                }
                match self.channel.heartbeat(&mut self.heartbeat_rng) {
                    Some(delay) => self.push_inbound(now + delay),
                    None => self.stats.heartbeats_lost += 1,
                }
            }
            AT_PEER => {
                let probe = self.outbound.pop_front().expect("a probe in flight");
                if let (true, Some(delay)) = (now < self.dead_at, probe.answer_delay) {
                    self.push_inbound(now + delay);
                }
            }
            ARRIVAL => {
                self.inbound.pop_front();
                self.detector.handle_heartbeat(time(now));
                self.drain(now);
            }
            _ => {
                self.detector.handle_timeout(time(now));
                self.drain(now);
            }
        }
    }

    fn drain(&mut self, now: u64) {
        while let Some(e) = self.detector.poll_event() {
            if let Some(trace) = &mut self.trace {
                trace.push((time(now), e));
            }
            match e {
                DetectorEvent::Suspect { .. } => {
                    self.stats.false_suspicions += 1;
                    if let Some(prev) = self.last_suspicion {
                        self.stats.recurrence.push(secs_between(now, prev));
                    }
                    self.last_suspicion = Some(now);
                    self.suspected_since = Some(now);
                }
                DetectorEvent::Trust => {
                    if let Some(since) = self.suspected_since.take() {
                        let d = secs_between(now, since);
                        self.stats.suspected_secs += d;
                        self.stats.mistake_duration.push(d);
                    }
                }
                DetectorEvent::Probe => self.send_probe(now),
            }
        }
    }

    fn send_probe(&mut self, now: u64) {
        self.stats.probes += 1;
        let there = self.channel.leg(&mut self.probe_rng);
        let back = self.channel.leg(&mut self.probe_rng);
        if let Some(delay) = there {
            let at_peer = (now + delay).max(self.last_outbound);
            self.last_outbound = at_peer;
            self.outbound.push_back(OutboundProbe {
                at_peer,
                answer_delay: back,
            });
        }
    }

    /// Runs the live peer up to and including `until`.
    pub fn run_until(&mut self, until: Time) {
        let until = ns_of(until);
        loop {
            let k = self.next_event();
            if k == NEVER || k >> 2 > until {
                break;
            }
            self.step(k);
        }
        self.now = self.now.max(until);
    }

    /// Crashes the peer at `crash` (not before [`Simulation::now`]) in a clone of this world,
    /// and runs the clone until the detector suspects for good, or the trial counts as missed.
    /// `self` is left as it was.
    pub fn crash_at(&self, crash: Time) -> CrashOutcome {
        let mut w = self.clone();
        let crash_ns = ns_of(crash);
        w.dead_at = crash_ns;
        if w.next_send >= crash_ns {
            w.next_send = NEVER;
        }
        w.trace = Some(Vec::new());
        let horizon = crash_ns.saturating_add(nanos(DETECTION_HORIZON));
        let detected = loop {
            let settled = w.next_send == NEVER && w.inbound.is_empty() && w.outbound.is_empty();
            if settled && w.detector.verdict() == Verdict::Suspect {
                break w.suspected_since;
            }
            match w.next_event() {
                k if k != NEVER && k >> 2 <= horizon => w.step(k),
                _ => break None,
            }
        };
        CrashOutcome {
            crash,
            last_arrival: time(w.last_inbound),
            detected: detected.map(time),
            events: w.trace.unwrap_or_default(),
        }
    }
}

/// Measures one pairing: a live run of `effort.hours` with `effort.crashes` crash trials spread
/// evenly over it (see the module docs).
pub fn measure(model: &Model, pairing: &Pairing, effort: &Effort) -> Measurement {
    let eta = pairing.interval;
    let mut sim = Simulation::new(model, pairing, effort.seed);
    let mut phases = stream(effort.seed, Purpose::Crashes, &[nanos(eta)]);
    let slots = ((effort.hours * 3600.0 / eta.as_secs_f64()).ceil() as u64).max(1);
    let at = |i: u64| time(nanos(eta).saturating_mul(i));
    let mut detection = DetectionStats::default();
    let n = effort.crashes as u64;
    for j in 0..n {
        // Trial j at the middle of the j-th of n equal shares of the run.
        let i = ((2 * j + 1) as u128 * slots as u128 / (2 * n) as u128) as u64;
        sim.run_until(at(i));
        let phase = Duration::from_nanos(phases.random_range(1..=nanos(eta).max(1)));
        match sim.crash_at(at(i) + phase).detection_time() {
            Some(td) => detection.samples.push(td.as_secs_f64()),
            None => detection.missed += 1,
        }
    }
    sim.run_until(at(slots));
    detection.samples.sort_by(f64::total_cmp);
    Measurement {
        pairing: pairing.clone(),
        live: sim.live_stats(),
        detection,
    }
}

/// Measures every pairing on up to `threads` threads. The results come back in the order of
/// `pairings` and do not depend on `threads`.
pub fn measure_all(
    model: &Model,
    pairings: &[Pairing],
    effort: &Effort,
    threads: usize,
) -> Vec<Measurement> {
    // Longest first (the work is proportional to 1/η), so that no thread is left with a long
    // pairing at the end. The schedule changes only which thread measures what.
    let mut order: Vec<usize> = (0..pairings.len()).collect();
    order.sort_by_key(|&i| pairings[i].interval);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Measurement>>> = Mutex::new(vec![None; pairings.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, pairings.len().max(1)) {
            s.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let p = &pairings[i];
                    let m = measure(model, p, effort);
                    results.lock().expect("no worker panicked")[i] = Some(m);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panicked")
        .into_iter()
        .map(|m| m.expect("every pairing measured"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::detector::{AdaptiveConfig, KMissConfig, PhiConfig};

    fn kmiss(eta_ms: u64, k: u32) -> Pairing {
        Pairing {
            detector: DetectorConfig::KMiss(KMissConfig::default()),
            interval: Duration::from_millis(eta_ms),
            miss_threshold: k,
        }
    }

    fn model(p: f64, jitter_ms: u64) -> Model {
        Model {
            loss: Loss::Independent { p },
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    const EFFORT: Effort = Effort {
        hours: 20.0,
        crashes: 200,
        seed: 7,
    };

    #[test]
    fn same_seed_gives_identical_results_whatever_the_thread_count() {
        let pairings = vec![
            kmiss(250, 2),
            Pairing {
                detector: DetectorConfig::Phi(PhiConfig::default()),
                ..kmiss(500, 3)
            },
            Pairing {
                detector: DetectorConfig::Adaptive(AdaptiveConfig::default()),
                ..kmiss(500, 3)
            },
        ];
        let m = model(0.05, 50);
        let one = measure_all(&m, &pairings, &EFFORT, 1);
        let two = measure_all(&m, &pairings, &EFFORT, 2);
        assert_eq!(one, two);
        assert!(one[2].live.probes > 0);
        // A pairing's numbers do not depend on the grid around it.
        assert_eq!(measure(&m, &pairings[1], &EFFORT), one[1]);
    }

    #[test]
    fn pairings_with_the_same_interval_see_the_same_losses() {
        let m = model(0.2, 0);
        let runs: Vec<_> = [1, 2, 3, 4]
            .into_iter()
            .map(|k| measure(&m, &kmiss(500, k), &EFFORT))
            .collect();
        for pair in runs.windows(2) {
            let (a, b) = (&pair[0].live, &pair[1].live);
            assert_eq!(
                (a.heartbeats, a.heartbeats_lost),
                (b.heartbeats, b.heartbeats_lost)
            );
            // Each suspicion of k+1 is preceded, on the same losses, by one of k.
            assert!(a.false_suspicions > b.false_suspicions, "{a:?} {b:?}");
        }
    }

    #[test]
    fn garwood_interval_matches_published_values() {
        let (lo, hi) = poisson_interval(0, 0.95);
        assert_eq!(lo, 0.0);
        assert!((hi - 3.689).abs() < 1e-3, "{hi}");
        let (lo, hi) = poisson_interval(10, 0.95);
        assert!((lo - 4.795).abs() < 1e-3, "{lo}");
        assert!((hi - 18.39).abs() < 1e-2, "{hi}");
        let (lo, hi) = poisson_interval(1, 0.95);
        assert!((lo - 0.0253).abs() < 1e-4 && (hi - 5.572).abs() < 1e-3);
    }

    #[test]
    fn gilbert_elliott_keeps_the_mean_loss_and_burst_length() {
        let ge = GilbertElliott::with_mean_loss(0.02, 4.0).unwrap();
        assert!((ge.mean_loss() - 0.02).abs() < 1e-12);
        assert!(GilbertElliott::with_mean_loss(0.9, 2.0).is_none());
        assert!(GilbertElliott::with_mean_loss(0.1, 0.5).is_none());
        let m = Model {
            loss: Loss::Bursty(ge),
            jitter: Duration::ZERO,
        };
        let mut sim = Simulation::new(&m, &kmiss(1000, 3), 3);
        sim.run_until(Time::ZERO + Duration::from_secs(400_000));
        let s = sim.live_stats();
        let lost = s.heartbeats_lost as f64 / s.heartbeats as f64;
        assert!((lost - 0.02).abs() < 0.004, "{lost}");
        // Bursts make k-miss suspect far more often than independent loss at the same rate.
        let indep = KMissClosedForm::new(0.02, Duration::from_secs(1), 3);
        assert!(s.mistake_rate_per_hour() > 20.0 * indep.mistake_rate_per_hour);
    }

    #[test]
    fn arrivals_stay_in_order_and_count_for_detection_after_a_crash() {
        // Jitter larger than η: without in-order delivery heartbeats would overtake.
        let m = model(0.0, 1500);
        let mut sim = Simulation::new(&m, &kmiss(1000, 2), 1);
        sim.run_until(Time::ZERO + Duration::from_secs(50));
        let mut last = 0;
        for &t in &sim.inbound {
            assert!(t >= last);
            last = t;
        }
        let crash = sim.now() + Duration::from_millis(300);
        let out = sim.crash_at(crash);
        // Suspicion comes k·η after the last in-flight heartbeat arrives.
        assert_eq!(
            out.detected,
            Some(out.last_arrival + Duration::from_secs(2))
        );
        assert!(out.last_arrival <= crash + Duration::from_millis(1500));
    }

    #[test]
    fn closed_form_values() {
        let c = KMissClosedForm::new(0.01, Duration::from_secs(1), 2);
        assert!((c.mistake_rate_per_hour * 24.0 - 8.5536).abs() < 1e-3);
        assert!((c.mean_detection - 1.5).abs() < 1e-12);
        assert!((c.query_accuracy - 0.9999).abs() < 1e-12);
    }
}
