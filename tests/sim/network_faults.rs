//! Network faults mean what they mean on Linux (`shared/docs/network-semantics.md`).

use std::time::Duration;

use mcpsim::sim::fault::Loss;
use mcpsim::sim::runner::{Fault, Outcome, run};

use crate::endpoint_faults::{every_second, scenario, secs, slow_server};

fn lines(out: &Outcome, node: &str, text: &str) -> Vec<Duration> {
    out.trace
        .iter()
        .filter(|l| l.node == node && l.text.contains(text))
        .map(|l| l.at)
        .collect()
}

#[test]
fn twenty_percent_loss_delays_but_never_breaks_a_connection() {
    let mut s = scenario(5, 300.0, vec![]);
    s.network.default.loss = Loss::Independent { p: 0.2 };
    // k large enough that the detector does not act on the delays: this is about TCP.
    s.stack.heartbeat.interval = mcpsim::units::Dur(Duration::from_millis(1000));
    s.stack.heartbeat.miss_threshold = 8;
    let out = run(&s, 7).unwrap();
    assert!(
        out.trace.iter().all(|l| !l.text.contains("ended")),
        "{}",
        out.trace_text()
    );
    for c in 0..5 {
        assert_eq!(lines(&out, &format!("client-{c}"), "connected").len(), 1);
    }
}

#[test]
fn a_three_second_partition_stalls_until_the_retransmission_after_it_heals() {
    let cut = Fault::Partition {
        from: "clients".into(),
        to: "server".into(),
        duration: secs(3.0),
        oneway: false,
    };
    let mut s = every_second(3, 1, 30.0, vec![(secs(10.5), cut)]);
    // This is about TCP: the detector suspects, but the connection is not closed before a
    // suspicion has lasted 30 s (by default it would be, at once), so the stall shows.
    s.stack.health.dead_after = mcpsim::units::Dur(secs(30.0));
    let out = run(&s, 1).unwrap();
    // Last reply before the cut: 10.030. Suspected 3 s later, during the partition.
    assert_eq!(
        lines(&out, "client-0", "suspect server"),
        vec![secs(13.030)],
        "{}",
        out.trace_text()
    );
    // The heartbeats sent during the cut are resent with backoff (0.2, 0.4, 0.8, 1.6 s …): the
    // first resend after the heal at 13.5 gets through, so trust returns after the heal plus
    // less than the backoff in force then, not at the heal itself.
    let trust = lines(&out, "client-0", "trust server");
    assert_eq!(trust.len(), 1, "{}", out.trace_text());
    assert!(
        trust[0] > secs(13.5) && trust[0] < secs(13.5 + 1.7),
        "trust at {:?}",
        trust[0]
    );
    // Nothing broke: the same connection carried on.
    assert!(
        lines(&out, "client-0", "ended").is_empty(),
        "{}",
        out.trace_text()
    );
}

#[test]
fn a_partition_longer_than_the_user_timeout_ends_in_a_timeout_error() {
    let cut = Fault::Partition {
        from: "clients".into(),
        to: "server".into(),
        duration: secs(30.0),
        oneway: false,
    };
    let mut s = scenario(1, 40.0, vec![(secs(10.5), cut)]);
    // A detector far slower than the user timeout, so TCP is what notices.
    s.stack.heartbeat.interval = mcpsim::units::Dur(Duration::from_millis(1000));
    s.stack.heartbeat.miss_threshold = 60;
    s.stack.tcp.user_timeout = Some(mcpsim::units::Dur(secs(5.0)));
    let out = run(&s, 1).unwrap();
    let ended = out
        .trace
        .iter()
        .find(|l| l.node == "client-0" && l.text.contains("ended"))
        .unwrap_or_else(|| panic!("no timeout\n{}", out.trace_text()));
    assert!(ended.text.contains("timed out"), "{}", ended.text);
    // First heartbeat into the cut at 11.020, first resend ~0.2 s later, abort 5 s after that.
    assert!(
        ended.at > secs(16.0) && ended.at < secs(17.0),
        "{:?}",
        ended.at
    );
}

#[test]
fn a_one_way_partition_silences_both_directions_within_an_rto() {
    // Server → clients is cut. The client hears nothing. The server hears the client's
    // heartbeats only until the client's kernel, getting no ACKs, times out (probe ~0.2 s, RTO
    // ~0.4 s after its first unacknowledged heartbeat, 10.520): from then on it resends that
    // heartbeat and queues every new one behind it (window 1), as Linux does. So the server
    // falls silent too, at most one interval after the cut plus k·η later.
    let cut = Fault::Partition {
        from: "server".into(),
        to: "clients".into(),
        duration: secs(10.0),
        oneway: true,
    };
    let s = every_second(3, 1, 30.0, vec![(secs(10.5), cut)]);
    let out = run(&s, 1).unwrap();
    assert_eq!(
        lines(&out, "client-0", "suspect server"),
        vec![secs(13.030)],
        "{}",
        out.trace_text()
    );
    let server = lines(&out, "server", "suspect client-0");
    assert_eq!(server.len(), 1, "{}", out.trace_text());
    assert!(
        server[0] >= secs(10.5 + 3.0) && server[0] <= secs(10.5 + 1.0 + 3.0 + 0.03),
        "{}",
        out.trace_text()
    );
}

#[test]
fn a_latency_spike_longer_than_k_intervals_is_a_false_suspicion_of_a_live_server() {
    // Replies take 4 s for 10 s: the server is alive, the client cannot tell.
    let slow = slow_server(4.0, 10.0);
    let mut s = every_second(3, 1, 40.0, vec![(secs(10.5), slow)]);
    // About TCP, as above: suspicions do not close the connection for 30 s. (With the default,
    // dead at the instant of suspicion, see judge.rs for what the same spike costs.)
    s.stack.health.dead_after = mcpsim::units::Dur(secs(30.0));
    let out = run(&s, 1).unwrap();
    // Last fast reply 10.030; the next (heartbeat 11.020) arrives 4 s late, at 15.025: after
    // the 3 s deadline (13.030), so a suspicion, then trust when it arrives. The reply also
    // carries the ACK of that heartbeat, so the client's kernel times out meanwhile (RTO
    // ~0.4 s) and queues its later heartbeats: the server hears nothing after 11.025 and
    // suspects the live client at 14.025, until the late ACK shows the timeout was spurious
    // (its timestamp predates the resend) and the queue leaves at 15.025. Those heartbeats'
    // replies come back together 4 s later, so the client is silent-suspicious once more
    // (18.025 → 19.030). This is what TCP does to a heartbeat under a sudden 4 s delay.
    assert_eq!(
        lines(&out, "client-0", "suspect server"),
        vec![secs(13.030), secs(18.025)],
        "{}",
        out.trace_text()
    );
    assert_eq!(
        lines(&out, "client-0", "trust server"),
        vec![secs(15.025), secs(19.030)]
    );
    // Nobody was down: these are what false suspicions look like.
    assert!(out.down.is_empty());
    assert_eq!(
        lines(&out, "server", "suspect client-0"),
        vec![secs(14.025)],
        "{}",
        out.trace_text()
    );
}

#[test]
fn a_partition_aimed_at_one_session_cuts_only_that_session() {
    use mcpsim::sim::qos::Judge;
    let cut = Fault::Partition {
        from: "client-1".into(),
        to: "server".into(),
        duration: secs(10.0),
        oneway: false,
    };
    let s = every_second(3, 3, 30.0, vec![(secs(10.5), cut)]);
    let out = run(&s, 1).unwrap();
    assert_eq!(
        lines(&out, "client-1", "suspect server"),
        vec![secs(13.030)],
        "{}",
        out.trace_text()
    );
    assert!(lines(&out, "client-0", "suspect").is_empty());
    assert!(lines(&out, "client-2", "suspect").is_empty());
    let judged = Judge::default().judge(&out);
    let failures = |w: &str, p: &str| {
        judged
            .iter()
            .find(|q| q.watcher == w && q.peer == p)
            .unwrap()
            .failures
    };
    assert_eq!(failures("client-1", "server"), 1);
    assert_eq!(failures("server", "client-1"), 1);
    assert_eq!(failures("client-0", "server"), 0);
}

#[test]
fn a_fault_aimed_at_nothing_is_an_error_naming_it() {
    let cut = Fault::Partition {
        from: "client-9".into(),
        to: "server".into(),
        duration: secs(1.0),
        oneway: false,
    };
    let err = run(&scenario(3, 5.0, vec![(secs(1.0), cut)]), 1).unwrap_err();
    assert!(err.to_string().contains("`client-9`"), "{err}");
    let pause = Fault::Pause {
        host: "client-0".into(),
        duration: secs(1.0),
    };
    let err = run(&scenario(3, 5.0, vec![(secs(1.0), pause)]), 1).unwrap_err();
    assert!(err.to_string().contains("`client-0`"), "{err}");
}

#[test]
fn a_random_partition_process_aimed_at_one_session_cuts_only_that_session() {
    use mcpsim::sim::fault::{Latency, RandomOutages};
    use mcpsim::sim::qos::Judge;
    use mcpsim::sim::runner::{RandomFault, RandomKind};
    let mut s = scenario(3, 300.0, vec![]);
    s.random_faults = vec![RandomFault {
        host: "client-1".into(),
        kind: RandomKind::Partition {
            to: "server".into(),
            oneway: false,
        },
        process: RandomOutages {
            rate_per_hour: 60.0,
            duration: Latency::constant(secs(10.0)),
        },
    }];
    let out = run(&s, 2).unwrap();
    assert!(
        !out.down.is_empty(),
        "no partition drawn: pick another seed"
    );
    assert!(
        out.down.iter().all(|d| d.host == "client-1<->server"),
        "{:?}",
        out.down
    );
    let judged = Judge::default().judge(&out);
    for q in &judged {
        if q.watcher == "client-1" || q.peer == "client-1" {
            assert_eq!(q.failures, out.down.len(), "{q:?}");
            assert_eq!(q.missed, 0, "{q:?}\n{}", out.trace_text());
        } else {
            assert_eq!((q.failures, q.false_suspicions), (0, 0), "{q:?}");
        }
    }
    for c in ["client-0", "client-2"] {
        assert!(lines(&out, c, "suspect").is_empty(), "{}", out.trace_text());
        assert_eq!(out.reconnects[c].attempts, 1);
    }
}

#[test]
fn random_latency_episodes_aimed_at_one_session_slow_only_that_session() {
    use mcpsim::sim::fault::{Latency, RandomOutages};
    use mcpsim::sim::runner::{RandomFault, RandomKind};
    let mut s = scenario(3, 300.0, vec![]);
    s.random_faults = vec![RandomFault {
        host: "server".into(),
        kind: RandomKind::Slow {
            to: "client-1".into(),
            latency: Latency::constant(secs(4.0)),
            oneway: true,
        },
        process: RandomOutages {
            rate_per_hour: 60.0,
            duration: Latency::constant(secs(10.0)),
        },
    }];
    let out = run(&s, 2).unwrap();
    let episodes = lines(&out, "server", "fault: slow server -> client-1");
    assert!(!episodes.is_empty(), "no episode drawn: pick another seed");
    // Replies 4 s late outlast k·η = 3 s: the slowed client suspects the live server.
    assert!(!lines(&out, "client-1", "suspect server").is_empty());
    for c in ["client-0", "client-2"] {
        assert!(lines(&out, c, "suspect").is_empty(), "{}", out.trace_text());
    }
    assert!(out.down.is_empty());
}
