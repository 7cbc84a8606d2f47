//! The detectors against the closed forms of `docs/qos.md` (Chen, Toueg, Aguilera 2002) and
//! against their own documented detection times, driven by a synthetic arrival process: the peer
//! sends a heartbeat every η, each lost independently with probability p, with no delay.
//!
//! Every comparison allows four standard errors computed from the run itself, so a real bias of a
//! few percent fails while sampling noise passes with probability about 1 − 6·10⁻⁵ per check.
//! Seeds are fixed, so a run is reproducible.

use std::time::Duration;

use mcpsim::proto::Time;
use mcpsim::proto::detector::{
    AdaptiveConfig, AdaptiveProbing, Detector, DetectorConfig, DetectorEvent, KMiss, KMissConfig,
    PhiAccrual, PhiConfig, Verdict,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ETA: Duration = Duration::from_secs(1);

/// How many standard errors an estimate may be off.
const Z: f64 = 4.0;

/// Sample mean and its standard error.
fn mean_and_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

fn assert_close(what: &str, observed: f64, expected: f64, se: f64) {
    assert!(
        (observed - expected).abs() <= Z * se,
        "{what}: observed {observed:.6}, expected {expected:.6}, allowed ±{:.6} ({Z} SE)",
        Z * se
    );
}

/// Hands every due timeout to the detector up to `until` (inclusive or not), recording events.
fn run_timeouts(
    d: &mut impl Detector,
    until: Time,
    inclusive: bool,
    out: &mut Vec<(Time, DetectorEvent)>,
) {
    while let Some(t) = d.poll_timeout() {
        if t > until || (!inclusive && t == until) {
            break;
        }
        d.handle_timeout(t);
        out.extend(std::iter::from_fn(|| d.poll_event()).map(|e| (t, e)));
    }
}

/// Delivers one arrival at `t` the way the calling protocol asks: timeouts strictly before `t`,
/// then the arrival, then timeouts due at `t` itself.
fn arrive(d: &mut impl Detector, t: Time, out: &mut Vec<(Time, DetectorEvent)>) {
    run_timeouts(d, t, false, out);
    d.handle_heartbeat(t);
    out.extend(std::iter::from_fn(|| d.poll_event()).map(|e| (t, e)));
    run_timeouts(d, t, true, out);
}

/// What a long run of a live, lossy peer shows: the QoS metrics of a detector.
struct Mistakes {
    /// Times between consecutive false suspicions (T_MR), in seconds.
    recurrences: Vec<f64>,
    /// Durations of false suspicions (T_M), in seconds.
    durations: Vec<f64>,
    /// Number of false suspicions.
    count: usize,
    /// Total monitored time, in seconds.
    exposure: f64,
}

fn lossy_run(d: &mut impl Detector, p: f64, slots: u64, seed: u64) -> Mistakes {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut events = Vec::new();
    for i in 1..=slots {
        let t = Time::ZERO + ETA * u32::try_from(i).unwrap();
        if rng.random::<f64>() >= p {
            arrive(d, t, &mut events);
        } else {
            run_timeouts(d, t, true, &mut events);
        }
    }
    let end = Time::ZERO + ETA * u32::try_from(slots).unwrap();
    let mut m = Mistakes {
        recurrences: Vec::new(),
        durations: Vec::new(),
        count: 0,
        exposure: end.as_secs_f64(),
    };
    let mut last_suspect: Option<Time> = None;
    let mut open: Option<Time> = None;
    for (t, e) in events {
        match e {
            DetectorEvent::Suspect { .. } => {
                m.count += 1;
                if let Some(prev) = last_suspect {
                    m.recurrences.push((t - prev).as_secs_f64());
                }
                last_suspect = Some(t);
                open = Some(t);
            }
            DetectorEvent::Trust => {
                let start = open.take().expect("trust without a suspicion");
                m.durations.push((t - start).as_secs_f64());
            }
            DetectorEvent::Probe => {}
        }
    }
    // A suspicion still open at the end counts for its observed part.
    if let Some(start) = open {
        m.durations.push((end - start).as_secs_f64());
    }
    m
}

#[test]
fn k_miss_false_suspicions_match_chen_toueg_aguilera_closed_forms() {
    let eta = ETA.as_secs_f64();
    for (k, p, slots, seed) in [(2u32, 0.3, 100_000u64, 1u64), (3, 0.3, 150_000, 2)] {
        let mut d = KMiss::new(Time::ZERO, ETA, k, KMissConfig::default());
        let m = lossy_run(&mut d, p, slots, seed);
        assert!(
            m.count >= 2000,
            "only {} mistakes, too few to test",
            m.count
        );
        let pk = p.powi(k as i32);

        // Mistake rate λ_M. The suspicions form a renewal process, so the count's variance is
        // about n·CV² of the recurrence times (CV² = 1 for a Poisson process).
        let (mean_tmr, _) = mean_and_se(&m.recurrences);
        let sd_tmr = (mean_and_se(&m.recurrences).1.powi(2) * m.recurrences.len() as f64).sqrt();
        let cv2 = (sd_tmr / mean_tmr).powi(2);
        let n = m.count as f64;
        let rate = n / m.exposure;
        let rate_se = (n * cv2).sqrt() / m.exposure;
        assert_close(
            &format!("λ_M, k={k} p={p}"),
            rate,
            (1.0 - p) * pk / eta,
            rate_se,
        );

        // Mean mistake duration E(T_M).
        let (tm, tm_se) = mean_and_se(&m.durations);
        assert_close(&format!("E(T_M), k={k} p={p}"), tm, eta / (1.0 - p), tm_se);

        // Query accuracy P_A: the suspected time is a random sum S of the durations, with
        // Var(S) ≈ n·Var(T_M) + E(T_M)²·Var(n).
        let suspected: f64 = m.durations.iter().sum();
        let var_tm = tm_se.powi(2) * m.durations.len() as f64;
        let s_se = (n * var_tm + tm * tm * n * cv2).sqrt();
        let pa = 1.0 - suspected / m.exposure;
        assert_close(
            &format!("P_A, k={k} p={p}"),
            pa,
            1.0 - pk,
            s_se / m.exposure,
        );
    }
}

/// Alternates live phases and crashes at a uniformly random phase of the heartbeat period, with
/// no loss. Returns the detection times; checks each against `worst`, evaluated at the crash.
fn crash_trials<D: Detector>(
    d: &mut D,
    trials: usize,
    seed: u64,
    worst: impl Fn(&D) -> Duration,
) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let eta_ns = u64::try_from(ETA.as_nanos()).unwrap();
    let mut events = Vec::new();
    let mut detections = Vec::with_capacity(trials);
    let mut t = Time::ZERO;
    for trial in 0..trials {
        // A live phase of a few heartbeats: no suspicion may happen in it.
        for _ in 0..5 {
            t += ETA;
            arrive(d, t, &mut events);
        }
        assert!(
            events
                .iter()
                .all(|(_, e)| !matches!(e, DetectorEvent::Suspect { .. })),
            "trial {trial}: false suspicion of a live peer: {events:?}"
        );
        assert_eq!(d.verdict(), Verdict::Trust);
        events.clear();
        // The crash: the heartbeat due at t + η is never sent. The phase is in (0, η] so that a
        // crash never coincides with a heartbeat the peer might or might not have sent.
        let crash = t + Duration::from_nanos(rng.random_range(1..=eta_ns));
        let bound = worst(d);
        let detected = loop {
            let Some(next) = d.poll_timeout() else {
                panic!("trial {trial}: detector stopped waking up without suspecting");
            };
            d.handle_timeout(next);
            let suspected = std::iter::from_fn(|| d.poll_event())
                .any(|e| matches!(e, DetectorEvent::Suspect { .. }));
            if suspected {
                break next;
            }
        };
        assert!(
            detected - t <= bound,
            "trial {trial}: suspected {:?} after the last heartbeat, worst case {bound:?}",
            detected - t
        );
        detections.push((detected - crash).as_secs_f64());
        // The peer comes back a random time later, and the first heartbeat restores trust.
        t = detected + Duration::from_nanos(rng.random_range(1..=eta_ns));
        d.handle_heartbeat(t);
        assert_eq!(d.poll_event(), Some(DetectorEvent::Trust));
    }
    detections
}

#[test]
fn k_miss_mean_detection_time_is_k_minus_half_intervals() {
    for k in [1u32, 3] {
        let mut d = KMiss::new(Time::ZERO, ETA, k, KMissConfig::default());
        let worst = |d: &KMiss| d.timeout();
        let td = crash_trials(&mut d, 4000, 10 + u64::from(k), worst);
        let (mean, se) = mean_and_se(&td);
        assert_close(
            &format!("mean T_D, k={k}"),
            mean,
            (f64::from(k) - 0.5) * ETA.as_secs_f64(),
            se,
        );
        let max = td.iter().cloned().fold(0.0, f64::max);
        assert!(max <= f64::from(k) * ETA.as_secs_f64());
    }
}

#[test]
fn k_miss_with_grace_never_exceeds_k_intervals_plus_grace() {
    let grace = Duration::from_millis(300);
    let mut d = KMiss::new(Time::ZERO, ETA, 2, KMissConfig { grace });
    let td = crash_trials(&mut d, 2000, 20, |_| ETA * 2 + grace);
    let (mean, se) = mean_and_se(&td);
    assert_close("mean T_D with grace", mean, 1.5 + 0.3, se);
}

/// The standardized silence at which phi reaches `threshold`, by bisection on the definition
/// phi(y) = −log10(1 − F(y)), F(y) = 1/(1 + e^(−y(1.5976 + 0.070566 y²))), independently of the
/// detector's closed form.
fn phi_crossing(threshold: f64) -> f64 {
    let phi = |y: f64| {
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        -(e / (1.0 + e)).log10()
    };
    let (mut lo, mut hi) = (-20.0f64, 20.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi(mid) < threshold {
            lo = mid
        } else {
            hi = mid
        }
    }
    hi
}

#[test]
fn phi_detects_a_crash_within_its_documented_worst_case() {
    // With steady heartbeats the estimate settles at μ = η and σ = min_std_deviation, so the
    // worst case is η + acceptable pause + min_std_deviation·y*.
    let config = PhiConfig::default();
    let y_star = phi_crossing(config.threshold);
    let worst = ETA.as_secs_f64()
        + config.acceptable_heartbeat_pause.as_secs_f64()
        + config.min_std_deviation.as_secs_f64() * y_star;
    let mut warm = PhiAccrual::new(Time::ZERO, ETA, 3, config);
    for i in 1..=30u32 {
        warm.handle_heartbeat(Time::ZERO + ETA * i);
    }
    let after = warm.suspect_after().unwrap().as_secs_f64();
    assert!((after - worst).abs() < 1e-6, "{after} vs {worst}");

    // Crash trials on a fresh detector. The long silences of earlier trials enter the history,
    // so the bound is read from the detector at each crash.
    let mut d = PhiAccrual::new(Time::ZERO, ETA, 3, config);
    let td = crash_trials(&mut d, 1000, 30, |d| {
        d.suspect_after().unwrap() + Duration::from_nanos(1)
    });
    assert!(td.iter().all(|&x| x > 0.0));

    // Steady state again from a clone per trial: T_D = t* − phase exactly, mean t* − η/2.
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let steady = warm;
    let last = Time::ZERO + ETA * 30;
    let td: Vec<f64> = (0..2000)
        .map(|_| {
            let mut d = steady.clone();
            let crash = last + Duration::from_nanos(rng.random_range(1..=1_000_000_000));
            let at = d.poll_timeout().unwrap();
            d.handle_timeout(at);
            assert_eq!(d.verdict(), Verdict::Suspect);
            assert!(at - last <= Duration::from_secs_f64(worst) + Duration::from_micros(1));
            (at - crash).as_secs_f64()
        })
        .collect();
    let (mean, se) = mean_and_se(&td);
    assert_close("phi mean T_D", mean, worst - 0.5, se);
}

#[test]
fn adaptive_mean_detection_time_matches_its_formula() {
    // η + n·π + 2δ − η/2 for a crash at a uniformly random phase.
    let grace = Duration::from_millis(50);
    let config = AdaptiveConfig {
        grace,
        ..AdaptiveConfig::default()
    };
    let mut d = AdaptiveProbing::new(Time::ZERO, ETA, 4, config);
    let worst = d.worst_case_detection();
    assert_eq!(worst, Duration::from_millis(1000 + 3 * 250 + 2 * 50));
    let td = crash_trials(&mut d, 4000, 40, |d| d.worst_case_detection());
    let (mean, se) = mean_and_se(&td);
    assert_close("adaptive mean T_D", mean, worst.as_secs_f64() - 0.5, se);
}

#[test]
fn adaptive_probes_the_documented_number_of_times_before_suspecting() {
    let mut d = DetectorConfig::Adaptive(AdaptiveConfig::default()).build(Time::ZERO, ETA, 4);
    let mut events = Vec::new();
    run_timeouts(&mut d, Time::ZERO + ETA * 10, true, &mut events);
    let probes: Vec<Time> = events
        .iter()
        .filter(|(_, e)| *e == DetectorEvent::Probe)
        .map(|(t, _)| *t)
        .collect();
    let ms = |n| Time::ZERO + Duration::from_millis(n);
    assert_eq!(probes, [ms(1000), ms(1250), ms(1500)]);
    assert_eq!(
        events.last(),
        Some(&(
            ms(1750),
            DetectorEvent::Suspect {
                silent: Duration::from_millis(1750)
            }
        ))
    );
}
