//! End to end against a closed form: the real drivers over the simulated network.
//!
//! Derivation. The client sends a heartbeat every η from its connect time c, at s_j = c + j·η;
//! each crosses the link in d = 5 ms and its reply comes back d later. The server's machine
//! crashes at T, drawn uniformly over one heartbeat period. The last heartbeat it answers is the
//! last one to reach it before T, sent at s* with s* + d ≤ T; its reply reaches the client at
//! s* + 2d, and the k-miss detector suspects k·η after that:
//!
//!   D = s* + 2d + k·η − T = k·η + d − V,   V = (T − d) − s* ~ Uniform[0, η)
//!
//! so E[D] = (k − ½)·η + d, and every D lies in (k·η + d − η, k·η + d]. The simulator adds at
//! most 1 ms of timer rounding on top (timers fire on whole milliseconds).

use mcpsim::sim::runner::{Fault, run};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::endpoint_faults::{scenario, secs};

#[test]
fn mean_detection_of_a_server_crash_at_a_random_phase_is_k_minus_half_intervals_plus_the_reply_delay()
 {
    let (k, eta, d) = (3.0, 1.0, 0.005);
    let runs = 40u64;
    let one = |seed: u64| -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let crash_at = 10.0 + rng.random_range(0.0..eta);
        let crash = Fault::Crash {
            host: "server".into(),
            downtime: None,
        };
        let mut s = scenario(1, 0.0, vec![(secs(crash_at), crash)]);
        // A whole number of 1 ms ticks, a second past any detection.
        s.duration = std::time::Duration::from_millis(((crash_at + k * eta + 1.0) * 1e3) as u64);
        let out = run(&s, seed).unwrap();
        let suspect = out
            .transitions
            .iter()
            .find(|t| t.suspect && t.watcher == "client-0")
            .unwrap_or_else(|| panic!("seed {seed}: no detection\n{}", out.trace_text()));
        suspect.at.as_secs_f64() - crash_at
    };
    let samples: Vec<f64> = std::thread::scope(|s| {
        let halves: Vec<_> = [0, 1]
            .into_iter()
            .map(|h| {
                s.spawn(move || {
                    (0..runs)
                        .filter(|i| i % 2 == h)
                        .map(one)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let rounding = 0.001 + 1e-9;
    for x in &samples {
        assert!(
            *x > k * eta + d - eta && *x <= k * eta + d + rounding,
            "detection {x} outside its bounds"
        );
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let sd = (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let expected = (k - 0.5) * eta + d;
    let se = sd / n.sqrt();
    assert!(
        (mean - expected).abs() <= 4.0 * se + rounding,
        "mean detection {mean:.4} s, expected {expected:.4} s ± {:.4}",
        4.0 * se
    );
    // The spread is that of a uniform phase: sd ≈ η/√12.
    assert!((sd - eta / 12f64.sqrt()).abs() < 0.1, "sd {sd:.4}");
}
