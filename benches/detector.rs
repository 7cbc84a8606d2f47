//! Detector updates per second: one heartbeat arrival plus the `poll_timeout` a driver makes after
//! it (for `tcp`, also the round trip its reply measured, as in two-way mode). The simulator's
//! speed is bounded by this, so each detector should manage well over ten million updates per
//! second on one core.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mcpsim::proto::Time;
use mcpsim::proto::detector::{
    AdaptiveConfig, Detector, DetectorConfig, PhiConfig, TcpScheduleConfig,
};

const ETA: Duration = Duration::from_secs(1);
/// Updates per measured iteration, so the loop, not criterion's bookkeeping, dominates.
const BATCH: u64 = 10_000;

fn detector_updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("detector_update");
    group.throughput(Throughput::Elements(BATCH));
    for config in [
        DetectorConfig::default(),
        DetectorConfig::Phi(PhiConfig::default()),
        DetectorConfig::Adaptive(AdaptiveConfig::default()),
        DetectorConfig::Tcp(TcpScheduleConfig::default()),
    ] {
        let measures_rtt = matches!(config, DetectorConfig::Tcp(_));
        group.bench_function(config.name(), |b| {
            let mut d = config.build(Time::ZERO, ETA, 3);
            let mut now = Time::ZERO;
            let mut i = 0u64;
            b.iter(|| {
                for _ in 0..BATCH {
                    // A little deterministic jitter, so phi's statistics are not degenerate.
                    i += 1;
                    now += ETA + Duration::from_millis(i % 7);
                    if measures_rtt {
                        d.handle_rtt(black_box(Duration::from_millis(60 + i % 5)));
                    }
                    d.handle_heartbeat(black_box(now));
                    black_box(d.poll_timeout());
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, detector_updates);
criterion_main!(benches);
