//! The detectors against the closed forms of `docs/qos.md` (Chen, Toueg, Aguilera 2002) and
//! against their own documented detection times, measured with the library's synthetic model
//! (`mcpsim::sim::synthetic`): the peer sends a heartbeat every η, each lost independently with
//! probability p, with no delay.
//!
//! Every comparison allows four standard errors computed from the run itself, so a real bias of a
//! few percent fails while sampling noise passes with probability about 1 − 6·10⁻⁵ per check.
//! Seeds are fixed, so a run is reproducible.

use std::time::Duration;

use mcpsim::proto::Time;
use mcpsim::proto::detector::Detector;
use mcpsim::proto::detector::{
    AdaptiveConfig, AnyDetector, DetectorConfig, DetectorEvent, KMissConfig, PhiAccrual, PhiConfig,
    Verdict,
};
use mcpsim::sim::synthetic::{Loss, Model, Pairing, Purpose, Simulation, Summary, stream};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ETA: Duration = Duration::from_secs(1);

/// How many standard errors an estimate may be off.
const Z: f64 = 4.0;

/// Sample mean and its standard error.
fn mean_and_se(xs: &[f64]) -> (f64, f64) {
    let mut s = Summary::default();
    xs.iter().for_each(|&x| s.push(x));
    (s.mean, s.std_error())
}

fn assert_close(what: &str, observed: f64, expected: f64, se: f64) {
    assert!(
        (observed - expected).abs() <= Z * se,
        "{what}: observed {observed:.6}, expected {expected:.6}, allowed ±{:.6} ({Z} SE)",
        Z * se
    );
}

fn model(p: f64) -> Model {
    Model {
        loss: Loss::Independent { p },
        jitter: Duration::ZERO,
    }
}

fn pairing(detector: DetectorConfig, k: u32) -> Pairing {
    Pairing {
        detector,
        interval: ETA,
        miss_threshold: k,
    }
}

#[test]
fn k_miss_false_suspicions_match_chen_toueg_aguilera_closed_forms() {
    let eta = ETA.as_secs_f64();
    for (k, p, slots, seed) in [(2u32, 0.3, 100_000u32, 1u64), (3, 0.3, 150_000, 2)] {
        let mut sim = Simulation::new(&model(p), &pairing(DetectorConfig::default(), k), seed);
        sim.run_until(Time::ZERO + ETA * slots);
        let m = sim.live_stats();
        assert!(
            m.false_suspicions >= 2000,
            "only {} mistakes, too few to test",
            m.false_suspicions
        );
        let pk = p.powi(k as i32);
        let exposure = m.exposure.as_secs_f64();

        // Mistake rate λ_M. The suspicions form a renewal process, so the count's variance is
        // about n·CV² of the recurrence times (CV² = 1 for a Poisson process).
        let cv2 = m.recurrence.variance() / m.recurrence.mean.powi(2);
        let n = m.false_suspicions as f64;
        let rate = n / exposure;
        let rate_se = (n * cv2).sqrt() / exposure;
        assert_close(
            &format!("λ_M, k={k} p={p}"),
            rate,
            (1.0 - p) * pk / eta,
            rate_se,
        );

        // Mean mistake duration E(T_M).
        let (tm, tm_se) = (m.mistake_duration.mean, m.mistake_duration.std_error());
        assert_close(&format!("E(T_M), k={k} p={p}"), tm, eta / (1.0 - p), tm_se);

        // Query accuracy P_A: the suspected time is a random sum S of the durations, with
        // Var(S) ≈ n·Var(T_M) + E(T_M)²·Var(n).
        let var_tm = m.mistake_duration.variance();
        let s_se = (n * var_tm + tm * tm * n * cv2).sqrt();
        assert_close(
            &format!("P_A, k={k} p={p}"),
            m.query_accuracy(),
            1.0 - pk,
            s_se / exposure,
        );
    }
}

/// Crash trials on a loss-free live run: every 5 heartbeats, the simulation is cloned and the
/// peer crashes at a uniformly random phase of the heartbeat period. Returns the detection
/// times; checks each against `worst`, evaluated on the detector at the crash and measured from
/// the last heartbeat.
fn crash_trials(
    detector: DetectorConfig,
    k: u32,
    trials: u32,
    seed: u64,
    worst: impl Fn(&AnyDetector) -> Duration,
) -> Vec<f64> {
    let mut sim = Simulation::new(&model(0.0), &pairing(detector, k), seed);
    let mut phases = stream(seed, Purpose::Crashes, &[]);
    let eta_ns = u64::try_from(ETA.as_nanos()).unwrap();
    (1..=trials)
        .map(|trial| {
            let t = Time::ZERO + ETA * (5 * trial);
            sim.run_until(t);
            assert_eq!(
                sim.live_stats().false_suspicions,
                0,
                "trial {trial}: false suspicion of a live peer"
            );
            assert_eq!(sim.detector().verdict(), Verdict::Trust);
            let bound = worst(sim.detector());
            // The phase is in (0, η] so that a crash never coincides with a heartbeat the peer
            // might or might not have sent.
            let crash = t + Duration::from_nanos(phases.random_range(1..=eta_ns));
            let out = sim.crash_at(crash);
            assert_eq!(out.last_arrival, t);
            let detected = out.detected.expect("no missed detection");
            assert!(
                detected - t <= bound,
                "trial {trial}: suspected {:?} after the last heartbeat, worst case {bound:?}",
                detected - t
            );
            (detected - crash).as_secs_f64()
        })
        .collect()
}

#[test]
fn k_miss_mean_detection_time_is_k_minus_half_intervals() {
    for k in [1u32, 3] {
        let worst = |d: &AnyDetector| match d {
            AnyDetector::KMiss(d) => d.timeout(),
            _ => unreachable!(),
        };
        let td = crash_trials(DetectorConfig::default(), k, 4000, 10 + u64::from(k), worst);
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
    let config = DetectorConfig::KMiss(KMissConfig { grace });
    let td = crash_trials(config, 2, 2000, 20, |_| ETA * 2 + grace);
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

    // Crash trials on a fresh detector. Each trial crashes a clone of the world, so no crash
    // silence reaches the live detector's history (nor would it: phi keeps outages out), but
    // the estimate is still moving away from the bootstrap samples over the first trials, so
    // the bound is read from the detector at each crash.
    let td = crash_trials(DetectorConfig::Phi(config), 3, 1000, 30, |d| match d {
        AnyDetector::Phi(d) => d.suspect_after().unwrap() + Duration::from_nanos(1),
        _ => unreachable!(),
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
    let worst_of = |d: &AnyDetector| match d {
        AnyDetector::Adaptive(d) => d.worst_case_detection(),
        _ => unreachable!(),
    };
    let worst = worst_of(&DetectorConfig::Adaptive(config).build(Time::ZERO, ETA, 4));
    assert_eq!(worst, Duration::from_millis(1000 + 3 * 250 + 2 * 50));
    let td = crash_trials(DetectorConfig::Adaptive(config), 4, 4000, 40, worst_of);
    let (mean, se) = mean_and_se(&td);
    assert_close("adaptive mean T_D", mean, worst.as_secs_f64() - 0.5, se);
}

#[test]
fn adaptive_probes_the_documented_number_of_times_before_suspecting() {
    // The peer dies before its first heartbeat: the detector probes from its virtual heartbeat.
    let config = DetectorConfig::Adaptive(AdaptiveConfig::default());
    let sim = Simulation::new(&model(0.0), &pairing(config, 4), 1);
    let out = sim.crash_at(Time::ZERO + Duration::from_nanos(1));
    let probes: Vec<Time> = out
        .events
        .iter()
        .filter(|(_, e)| *e == DetectorEvent::Probe)
        .map(|(t, _)| *t)
        .collect();
    let ms = |n| Time::ZERO + Duration::from_millis(n);
    assert_eq!(probes, [ms(1000), ms(1250), ms(1500)]);
    assert_eq!(
        out.events.last(),
        Some(&(
            ms(1750),
            DetectorEvent::Suspect {
                silent: Duration::from_millis(1750)
            }
        ))
    );
    assert_eq!(out.detected, Some(ms(1750)));
}
