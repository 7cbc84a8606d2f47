//! The fault model of the network simulator: what a lossy, slow or partitioned link does to one
//! segment of a TCP connection, as `docs/network-semantics.md` describes it for Linux.
//!
//! Pure: no tokio, no turmoil, no clock. Time is a [`Duration`] since the start of the
//! simulation, and every random draw comes from a seeded RNG passed in or owned.
//!
//! # Pieces
//!
//! - [`Latency`]: a one-way delay distribution (also used for outage lengths).
//! - [`Loss`] and its running form [`LossProcess`]: no loss, independent loss, or Gilbert-Elliott
//!   bursts whose Good/Bad state evolves in **simulated time** (sojourns in seconds), so a faster
//!   sender does not shorten its own bursts.
//! - [`Timeline`]: sorted, merged intervals `[start, end)` during which a direction drops
//!   everything (partitions, a link down, flapping), scheduled or drawn from
//!   [`RandomOutages`].
//! - [`Direction`]: the faults of one direction between two hosts (latency, loss, outages), and
//!   with a [`LinkRate`] its bandwidth and the FIFO queue in front of it (netem's `rate` and
//!   `limit`): a packet is serialized after the ones queued before it, taking
//!   `(payload + HEADER_BYTES) × 8 / rate`, then takes the latency; one that finds the queue
//!   full is dropped (tail drop), which TCP sees as any other loss.
//! - [`Path`]: one direction of one connection: [`Path::carry`] tells when a packet sent at `t`
//!   arrives, if it is not lost; [`Path::syn`] plays out a whole connection attempt (SYNs and
//!   SYN-ACKs with their backoff).
//! - [`TcpConfig`]: the kernels' TCP settings. What the kernels do with each packet's fate
//!   (retransmission timers, probes, SACK recovery, delayed ACKs, timeouts) is
//!   [`super::tcp::TcpModel`].
//!
//! Because a packet's fate is decided when it is sent, every fault that can touch it must be
//! known by then: outages are scheduled or pre-sampled over a horizon before the run, and the
//! Gilbert-Elliott state is pre-sampled lazily from its own stream, so its timeline does not
//! depend on how often it is asked.
//!
//! A connection attempt sends its SYN at once and again at 1, 3, 7, 15 … s (initial RTO 1 s,
//! doubling) and gives up at the first timer `(2^(r+1) − 1)·1 s` after the first SYN for
//! `tcp_syn_retries = r` (127 s for 6). The server answers every SYN that reaches it with a
//! SYN-ACK and resends its SYN-ACK itself at 1, 3, 7 … s after the first one
//! (`tcp_synack_retries`). A partition never makes `connect` fail early.
//!
//! # Randomness
//!
//! Per-packet loss and latency draws come from the RNG passed to [`Path::carry`] (one stream
//! per connection direction, [`Purpose::Segments`]); each packet draws its loss first (always
//! exactly one `f64`, also under no loss), then its latency if it got through. A packet dropped
//! by a full queue draws nothing; the queue itself draws nothing, so without a rate the draws
//! are exactly what they were before links had one. The Gilbert-Elliott state
//! timeline owns its stream ([`Purpose::LossState`]) and random outages are drawn from
//! [`Purpose::Outages`], so a direction's bursts and outages do not depend on its traffic.
//!
//! # Files
//!
//! One file per concern, every item re-exported here: `latency.rs` ([`Latency`]), `loss.rs`
//! ([`Loss`], [`LossProcess`]), `outages.rs` ([`Timeline`], [`RandomOutages`]), `direction.rs`
//! ([`Direction`], [`LinkRate`]), `tcp_config.rs` ([`TcpConfig`], [`Backoff`]) and `path.rs`
//! ([`Path`], [`ConnectOutcome`]).
//!
//! [`Duration`]: std::time::Duration
//! [`Purpose::Segments`]: super::synthetic::Purpose::Segments
//! [`Purpose::LossState`]: super::synthetic::Purpose::LossState
//! [`Purpose::Outages`]: super::synthetic::Purpose::Outages

use thiserror::Error;

mod direction;
mod latency;
mod loss;
mod outages;
mod path;
mod tcp_config;

pub use direction::{Direction, HEADER_BYTES, LinkRate};
pub use latency::{Latency, MAX_DELAY};
pub use loss::{GeState, HISTORY, Loss, LossProcess};
pub use outages::{RandomOutages, Timeline};
pub use path::{ConnectOutcome, Path};
pub use tcp_config::{Backoff, TcpConfig};

/// Bad fault parameters.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum FaultError {
    #[error("{dist} latency: {reason}")]
    Latency {
        dist: &'static str,
        reason: &'static str,
    },
    #[error("loss: {0}")]
    Loss(&'static str),
    #[error("outages: {0}")]
    Outages(&'static str),
    #[error("link rate: {0}")]
    Rate(&'static str),
}

/// What the tests of every file here share: the master seed, its segment streams, short
/// durations and a Gilbert-Elliott loss.
#[cfg(test)]
mod testing {
    use std::time::Duration;

    use rand_chacha::ChaCha8Rng;

    use super::Loss;
    use crate::sim::synthetic::{Purpose, stream};

    pub(super) const MASTER: u64 = 0x5eed;

    pub(super) fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    pub(super) fn secs(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    pub(super) fn rng(key: u64) -> ChaCha8Rng {
        stream(MASTER, Purpose::Segments, &[key])
    }

    pub(super) fn ge(g2b: f64, b2g: f64, good: f64, bad: f64) -> Loss {
        Loss::GilbertElliott {
            p_good_to_bad_per_s: g2b,
            p_bad_to_good_per_s: b2g,
            loss_good: good,
            loss_bad: bad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{ge, secs};
    use super::*;

    #[test]
    fn invalid_parameters_are_errors() {
        let bad = [
            Latency::Constant { value_ms: -1.0 },
            Latency::Uniform {
                min_ms: 5.0,
                max_ms: 2.0,
            },
            Latency::Normal {
                mean_ms: 1.0,
                sd_ms: -1.0,
                min_ms: 0.0,
            },
            Latency::Lognormal {
                min_ms: 0.0,
                median_ms: 0.0,
                sigma: 1.0,
            },
            Latency::Pareto {
                min_ms: 0.0,
                scale_ms: 1.0,
                shape: 0.0,
            },
            Latency::Exponential {
                min_ms: 0.0,
                mean_ms: f64::NAN,
            },
        ];
        for l in bad {
            assert!(l.validate().is_err(), "{l:?}");
            assert!(Direction::ideal(l).is_err(), "{l:?}");
        }
        let err = Latency::Uniform {
            min_ms: 5.0,
            max_ms: 2.0,
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.to_string(), "uniform latency: max_ms below min_ms");
        assert!(LossProcess::seeded(&Loss::Independent { p: 1.5 }, 1, &[]).is_err());
        assert!(LossProcess::seeded(&ge(-1.0, 1.0, 0.0, 1.0), 1, &[]).is_err());
        assert!(LossProcess::seeded(&ge(1.0, 1.0, 0.0, 2.0), 1, &[]).is_err());
        let outages = RandomOutages {
            rate_per_hour: f64::NAN,
            duration: Latency::Constant { value_ms: 1.0 },
        };
        assert!(outages.sample_seeded(secs(10.0), 1, &[]).is_err());
    }

    #[test]
    fn fault_parameters_deserialize_from_tagged_tables() {
        let l: Latency =
            serde_json::from_str(r#"{"dist":"lognormal","min_ms":2,"median_ms":3,"sigma":0.5}"#)
                .unwrap();
        assert_eq!(
            l,
            Latency::Lognormal {
                min_ms: 2.0,
                median_ms: 3.0,
                sigma: 0.5
            }
        );
        let loss: Loss = serde_json::from_str(
            r#"{"model":"gilbert-elliott","p_good_to_bad_per_s":0.1,"p_bad_to_good_per_s":1,
                "loss_good":0,"loss_bad":0.5}"#,
        )
        .unwrap();
        assert_eq!(loss, ge(0.1, 1.0, 0.0, 0.5));
        let o: RandomOutages = serde_json::from_str(
            r#"{"rate_per_hour":2,"duration":{"dist":"exponential","min_ms":100,"mean_ms":900}}"#,
        )
        .unwrap();
        assert_eq!(o.rate_per_hour, 2.0);
        assert!(serde_json::from_str::<Latency>(r#"{"dist":"constant","value":1}"#).is_err());
        assert!(serde_json::from_str::<Loss>(r#"{"model":"random","p":0.1}"#).is_err());
    }
}
