//! Judging a run's detector transitions against its ground truth, in the vocabulary of
//! `shared/docs/qos.md` (Chen, Toueg and Aguilera 2002): detection time, missed detections,
//! false suspicions, mistake duration, and the exposure to compute rates from.
//!
//! # Rules
//!
//! Each watcher → peer pair is judged on its own (`client-7 → server`, `server → client-7`),
//! from the runner's transitions: the watcher's detector, plus the loss of its connection to
//! the peer (a suspicion) and a session established again (trust).
//!
//! - **Failure** of the peer, as the watcher sees it: the peer's host is killed, crashed, or
//!   paused for longer than [`Judge::tolerable_pause`]; or a partition between them, in either
//!   direction: over TCP a cut of watcher → peer stops the peer's new messages too, within an
//!   RTO (its ACKs are lost, so its kernel resends its oldest segment with backoff and queues
//!   every new write behind it). Overlapping failures merge.
//! - **Detection time** of a failure `[a, b)`: from `a` to the start of the suspicion that is
//!   still held at `b` (the detector "suspects and keeps suspecting"); zero if that suspicion
//!   began before `a`. No such suspicion: a **missed detection**, unless the failure is
//!   censored.
//! - **Censored failure**: one still in progress at the end of the run (or lasting up to it),
//!   begun less than [`Judge::decision_window`] before the end, and not suspected at the end:
//!   the run ended before any detector had to fire. Counted in
//!   [`PairQos::censored_failures`], neither missed nor detected. One begun earlier and
//!   undetected is missed. Likewise censored: a failure during which the watcher's own host
//!   went down (killed, crashed, paused) before its detector had suspected: the watcher
//!   stopped watching before it had to decide.
//! - **False suspicion**: a trust → suspect transition that starts outside every failure of the
//!   pair. Its **mistake duration** runs to the next trust; one still open when a failure or the
//!   run begins is a *censored mistake*: counted as a false suspicion, left out of the
//!   durations.
//! - A transition made while the watcher's own host was paused is ignored: a stopped process
//!   decides nothing (the drivers' gate already keeps them from acting; this is the judge's own
//!   guard).
//! - **The pair's life** starts at the watcher's first established session with the peer
//!   ([`Outcome::connected`]): sessions start at seeded instants over a connect ramp, and before
//!   its first session a watcher has nothing to suspect. A pair that never had a session has
//!   no failures and no exposure.
//! - **A failure is the pair's** only if, as it began, the watcher was up (not killed,
//!   crashed or paused) and watching the peer: connected to it, or already suspecting it. One that struck while the watcher had no
//!   connection and no suspicion (the server paused while a client's first handshake waited
//!   in its kernel; a client paused while it waited out its breaker after a server crash, a
//!   client the restarted server had never heard of) gives the watcher's detector nothing to
//!   act on, and counts neither as detected nor as missed.
//! - **Exposure**: the pair's life minus its failures, the time during which a false
//!   suspicion was possible.
//! - **Suspected time**: the part of the exposure during which the watcher suspected the peer,
//!   for P_A. Every suspicion counts for the time it overlaps the exposure, whoever started
//!   it: a censored one up to the failure or the end of the run that cut it, and one begun
//!   during a failure for as long as it outlasts the failure (the peer is back, still
//!   suspected).
//! - **Mistaken and recovering parts**: the suspected time splits by where each suspicion
//!   began. Suspicions begun outside every failure are mistakes, the detector's doing (with
//!   the default `dead_after = 0` a mistake also costs a reconnect, which the detector
//!   caused): their time is [`PairQos::suspected_mistaken`]. The rest is time a suspicion
//!   begun during a failure outlasted it: the peer is back and the watcher is still
//!   reconnecting (backoff, circuit breaker, handshake), which is reconnect policy, not
//!   detector quality. Each mistake duration is split another way, by
//!   [`Outcome::connected`]: the part during which the watcher still had a connection to the
//!   peer, and the part spent without one.

use std::ops::Range;
use std::time::Duration;

use super::runner::{DownPeriod, Outcome, SERVER};

/// How a run is judged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Judge {
    /// Pauses up to this long are noise the detector should ride out, not failures.
    pub tolerable_pause: Duration,
    /// How long a detector may take to decide: a failure that lasts to the end of the run,
    /// began less than this before the end and is not suspected at the end is censored, not
    /// missed. For a k-miss pairing, (k + 1)·η + grace (one interval of heartbeat phase, k
    /// missing beats, the grace); zero: every undetected failure is missed.
    pub decision_window: Duration,
}

/// One watcher → peer pair's results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairQos {
    pub watcher: String,
    pub peer: String,
    /// Every failure: `detections.len() + missed + censored_failures`.
    pub failures: usize,
    /// Detection times of the detected failures.
    pub detections: Vec<Duration>,
    pub missed: usize,
    /// Failures the run ended too early to decide (see [`Judge::decision_window`]): neither
    /// detected nor missed.
    pub censored_failures: usize,
    pub false_suspicions: usize,
    /// Durations of the false suspicions that ended in trust.
    pub mistake_durations: Vec<Duration>,
    /// Of each of [`PairQos::mistake_durations`], in the same order: the part during which the
    /// watcher had a connection to the peer (the detector's doing). The rest of it was spent
    /// reconnecting.
    pub mistake_connected: Vec<Duration>,
    /// False suspicions left out of the durations: still open at a failure or at the end.
    pub censored_mistakes: usize,
    pub exposure: Duration,
    /// The part of the exposure during which the watcher suspected the peer.
    pub suspected: Duration,
    /// The part of [`PairQos::suspected`] in suspicions begun outside every failure: the
    /// detector's mistakes. The rest (`suspected − suspected_mistaken`) is suspicions of a
    /// failure that outlasted it: reconnecting after the peer came back.
    pub suspected_mistaken: Duration,
}

impl Judge {
    /// Every client → server and server → client pair of the run, in node order.
    pub fn judge(&self, out: &Outcome) -> Vec<PairQos> {
        let clients: Vec<&String> = out.hosts.keys().filter(|n| *n != SERVER).collect();
        let mut pairs = Vec::new();
        for c in &clients {
            pairs.push(self.pair(out, c, SERVER));
        }
        for c in &clients {
            pairs.push(self.pair(out, SERVER, c));
        }
        pairs
    }

    /// One watcher → peer pair.
    pub fn pair(&self, out: &Outcome, watcher: &str, peer: &str) -> PairQos {
        let end = out.duration;
        let host = |n: &str| out.hosts.get(n).cloned().unwrap_or_else(|| n.to_string());
        let (hw, hp) = (host(watcher), host(peer));
        let connected: &[Range<Duration>] = out
            .connected
            .get(&(watcher.to_string(), peer.to_string()))
            .map_or(&[], Vec::as_slice);
        // The pair exists from the watcher's first session with the peer: before it there is
        // nothing to suspect.
        let since = connected.first().map_or(end, |r| r.start);
        let watcher_paused = merge(
            out.down
                .iter()
                .filter(|d| d.kind == "paused" && d.host == hw)
                .map(|d| d.start..d.end.unwrap_or(end))
                .collect(),
        );
        // The watcher's suspicion intervals [start, end), in time order.
        let mut suspicions: Vec<Range<Duration>> = Vec::new();
        let mut open: Option<Duration> = None;
        for t in out
            .transitions
            .iter()
            .filter(|t| t.watcher == watcher && t.peer == peer)
        {
            if watcher_paused.iter().any(|p| p.contains(&t.at)) {
                continue;
            }
            match (t.suspect, open) {
                (true, None) => open = Some(t.at),
                (false, Some(s)) => {
                    suspicions.push(s..t.at);
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(s) = open {
            suspicions.push(s..Duration::MAX);
        }
        // A failure is the pair's to detect when the watcher was watching the peer as it began:
        // connected to it, or already suspecting it. One that struck while the watcher had no
        // connection and no suspicion (a client paused while it waited out its breaker after a
        // server crash, which the restarted server never heard of) gives its detector nothing
        // to act on; neither does one before the pair's first session.
        // The watcher's own host down (killed, crashed, paused): it decides nothing then.
        let watcher_down = merge(
            out.down
                .iter()
                .filter(|d| d.kind != "partitioned" && d.host == hw)
                .map(|d| d.start..d.end.unwrap_or(end))
                .collect(),
        );
        let watching = |t: Duration| {
            t >= since
                && !watcher_down.iter().any(|w| w.contains(&t))
                && (connected.iter().any(|r| r.contains(&t))
                    || suspicions.iter().any(|s| s.start <= t && t < s.end))
        };
        let failures = merge(
            out.down
                .iter()
                .filter(|d| watching(d.start) && self.fails(d, (watcher, &hw), (peer, &hp)))
                .map(|d| d.start..d.end.unwrap_or(end).min(end))
                .collect(),
        );

        let mut q = PairQos {
            watcher: watcher.to_string(),
            peer: peer.to_string(),
            failures: failures.len(),
            ..PairQos::default()
        };
        for f in &failures {
            // The suspicion held when the failure ends (or the run does).
            let held = suspicions
                .iter()
                .find(|s| s.start < f.end && s.end >= f.end);
            // Undecided: the run ended too early to tell, or the watcher itself went down
            // (killed, crashed, paused) before its detector could tell.
            let watcher_fell = watcher_down
                .iter()
                .find(|w| w.start >= f.start && w.start < f.end)
                .map(|w| w.start);
            let undecided = (f.end >= end && end - f.start < self.decision_window)
                || watcher_fell.is_some_and(|w| {
                    !suspicions
                        .iter()
                        .any(|s| s.start < w && s.end >= f.end.min(w))
                });
            match held {
                Some(s) => q.detections.push(s.start.max(f.start) - f.start),
                None if undecided => q.censored_failures += 1,
                None => q.missed += 1,
            }
        }
        for s in &suspicions {
            if failures.iter().any(|f| f.contains(&s.start)) {
                continue;
            }
            q.false_suspicions += 1;
            let next_failure = failures
                .iter()
                .map(|f| f.start)
                .filter(|a| *a > s.start)
                .min();
            let censored = s.end == Duration::MAX || next_failure.is_some_and(|a| s.end > a);
            if censored {
                q.censored_mistakes += 1;
            } else {
                q.mistake_durations.push(s.end - s.start);
                q.mistake_connected.push(
                    within(s.clone(), connected)
                        .into_iter()
                        .map(|r| r.end - r.start)
                        .sum(),
                );
            }
        }
        let failed: Duration = failures.iter().map(|f| f.end - f.start).sum();
        q.exposure = end.saturating_sub(since).saturating_sub(failed);
        for s in &suspicions {
            let mistaken = !failures.iter().any(|f| f.contains(&s.start));
            let s = s.start..s.end.min(end);
            let time = outside(s, &failures);
            q.suspected += time;
            if mistaken {
                q.suspected_mistaken += time;
            }
        }
        q
    }

    /// Does `d` fail the peer for the watcher? Each is `(node, host)`: a partition may name
    /// either.
    fn fails(&self, d: &DownPeriod, watcher: (&str, &str), peer: (&str, &str)) -> bool {
        let is = |name: &str, (node, host): (&str, &str)| name == node || name == host;
        let peer_host = peer.1;
        match d.kind {
            // Over TCP a cut either way stops the peer's new messages: cut towards the watcher
            // they are lost; cut the other way, the peer's ACKs are, so its kernel resends its
            // oldest segment with backoff and queues every new write behind it (window 1).
            "partitioned" => d.blocked.iter().any(|(from, to)| {
                (is(from, peer) && is(to, watcher)) || (is(from, watcher) && is(to, peer))
            }),
            "paused" => {
                d.host == peer_host && d.end.is_none_or(|e| e - d.start > self.tolerable_pause)
            }
            _ => d.host == peer_host,
        }
    }
}

/// How much of `r` lies outside every one of `failures` (sorted, disjoint).
fn outside(r: Range<Duration>, failures: &[Range<Duration>]) -> Duration {
    let covered: Duration = failures
        .iter()
        .map(|f| r.end.min(f.end).saturating_sub(r.start.max(f.start)))
        .sum();
    r.end.saturating_sub(r.start).saturating_sub(covered)
}

/// The parts of `r` that lie within `set` (sorted, disjoint).
fn within(r: Range<Duration>, set: &[Range<Duration>]) -> Vec<Range<Duration>> {
    set.iter()
        .map(|c| r.start.max(c.start)..r.end.min(c.end))
        .filter(|x| x.start < x.end)
        .collect()
}

/// Sorted, merged intervals.
fn merge(mut v: Vec<Range<Duration>>) -> Vec<Range<Duration>> {
    v.retain(|r| r.start < r.end);
    v.sort_by_key(|r| r.start);
    let mut out: Vec<Range<Duration>> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::proto::frame::HeartbeatMode;
    use crate::sim::runner::Transition;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn outcome(down: Vec<DownPeriod>, transitions: Vec<(f64, bool)>) -> Outcome {
        let mut hosts = BTreeMap::new();
        hosts.insert("server".to_string(), "server".to_string());
        hosts.insert("client-0".to_string(), "clients".to_string());
        Outcome {
            trace: Vec::new(),
            down,
            transitions: transitions
                .into_iter()
                .map(|(at, suspect)| Transition {
                    at: s(at),
                    watcher: "client-0".into(),
                    peer: "server".into(),
                    suspect,
                })
                .collect(),
            hosts,
            duration: s(100.0),
            mode: HeartbeatMode::OneWay,
            reconnects: BTreeMap::new(),
            connect_attempts: Vec::new(),
            traffic: BTreeMap::new(),
            // Both ends connected throughout, unless a test says otherwise.
            connected: [("client-0", "server"), ("server", "client-0")]
                .into_iter()
                .map(|(w, p)| ((w.to_string(), p.to_string()), vec![s(0.0)..s(100.0)]))
                .collect(),
            client_heartbeats: Default::default(),
            server_heartbeats: Default::default(),
            delivery: None,
            queue_drops: 0,
        }
    }

    fn down(host: &str, kind: &'static str, a: f64, b: Option<f64>) -> DownPeriod {
        DownPeriod {
            host: host.into(),
            blocked: Vec::new(),
            start: s(a),
            end: b.map(s),
            kind,
        }
    }

    fn client_view(out: &Outcome) -> PairQos {
        Judge::default().pair(out, "client-0", "server")
    }

    fn out_pair(out: &Outcome, watcher: &str, peer: &str) -> PairQos {
        Judge::default().pair(out, watcher, peer)
    }

    #[test]
    fn detection_time_runs_from_the_failure_to_the_suspicion_that_is_kept() {
        let out = outcome(
            vec![down("server", "crashed", 10.0, Some(20.0))],
            vec![(12.5, true), (21.0, false)],
        );
        let q = client_view(&out);
        assert_eq!(q.detections, vec![s(2.5)]);
        assert_eq!((q.missed, q.false_suspicions), (0, 0));
        assert_eq!(q.exposure, s(90.0));
    }

    #[test]
    fn a_suspicion_dropped_before_the_failure_ends_is_not_a_detection() {
        // Suspected, trusted again (a stale reply), suspected again: the second one counts.
        let out = outcome(
            vec![down("server", "crashed", 10.0, Some(20.0))],
            vec![(12.0, true), (13.0, false), (14.0, true), (25.0, false)],
        );
        assert_eq!(client_view(&out).detections, vec![s(4.0)]);
    }

    #[test]
    fn a_failure_that_ends_unsuspected_is_a_missed_detection() {
        let out = outcome(vec![down("server", "crashed", 10.0, Some(11.0))], vec![]);
        let q = client_view(&out);
        assert_eq!((q.failures, q.missed), (1, 1));
        assert!(q.detections.is_empty());
    }

    #[test]
    fn already_suspecting_when_the_failure_comes_is_detection_at_once() {
        let out = outcome(
            vec![down("server", "crashed", 10.0, None)],
            vec![(8.0, true)],
        );
        let q = client_view(&out);
        assert_eq!(q.detections, vec![Duration::ZERO]);
        // The suspicion began while the server was alive: also a false suspicion, censored.
        assert_eq!(q.false_suspicions, 1);
        assert!(q.mistake_durations.is_empty());
    }

    #[test]
    fn suspicions_of_a_live_peer_are_false_and_their_durations_counted() {
        let out = outcome(
            vec![],
            vec![(5.0, true), (5.5, false), (50.0, true), (51.0, false)],
        );
        let q = client_view(&out);
        assert_eq!(q.false_suspicions, 2);
        assert_eq!(q.mistake_durations, vec![s(0.5), s(1.0)]);
        assert_eq!(q.exposure, s(100.0));
    }

    #[test]
    fn a_short_pause_is_noise_and_a_long_one_a_failure() {
        let out = outcome(
            vec![down("server", "paused", 10.0, Some(12.0))],
            vec![(11.5, true), (12.1, false)],
        );
        let lenient = Judge {
            tolerable_pause: s(3.0),
            ..Judge::default()
        }
        .pair(&out, "client-0", "server");
        assert_eq!((lenient.failures, lenient.false_suspicions), (0, 1));
        let strict = Judge {
            tolerable_pause: s(1.0),
            ..Judge::default()
        }
        .pair(&out, "client-0", "server");
        assert_eq!(
            (
                strict.failures,
                strict.false_suspicions,
                strict.detections.len()
            ),
            (1, 0, 1)
        );
    }

    #[test]
    fn a_one_way_partition_fails_both_sides_because_tcp_needs_its_acks() {
        // The clients hear nothing; the server hears the clients' oldest heartbeat resent and
        // nothing newer, since their kernels get no ACKs and queue new writes behind it.
        let mut p = down("server->clients", "partitioned", 10.0, Some(20.0));
        p.blocked = vec![("server".into(), "clients".into())];
        let out = outcome(vec![p], vec![]);
        let judge = Judge::default();
        assert_eq!(judge.pair(&out, "client-0", "server").failures, 1);
        assert_eq!(judge.pair(&out, "server", "client-0").failures, 1);
    }

    #[test]
    fn suspected_time_is_the_suspicions_overlap_with_the_exposure() {
        // A false suspicion of 2 s, one cut by the failure at 10 s (1 s of it counts), and a
        // detection held 3 s past the failure's end: 2 + 1 + 3 s of a live peer suspected.
        let out = outcome(
            vec![down("server", "crashed", 10.0, Some(20.0))],
            vec![(3.0, true), (5.0, false), (9.0, true), (23.0, false)],
        );
        let q = client_view(&out);
        assert_eq!(q.suspected, s(6.0));
        assert_eq!((q.false_suspicions, q.censored_mistakes), (2, 1));
    }

    #[test]
    fn a_suspicion_open_at_the_end_counts_up_to_the_end() {
        let out = outcome(vec![], vec![(90.0, true)]);
        let q = client_view(&out);
        assert_eq!(q.suspected, s(10.0));
        assert_eq!((q.false_suspicions, q.censored_mistakes), (1, 1));
        assert!(q.mistake_durations.is_empty());
    }

    #[test]
    fn transitions_of_a_paused_watcher_are_ignored() {
        let out = outcome(
            vec![down("clients", "paused", 10.0, Some(15.0))],
            vec![(12.0, true), (15.0, false)],
        );
        let q = client_view(&out);
        assert_eq!(q.false_suspicions, 0);
    }

    fn within_window(window: f64) -> Judge {
        Judge {
            decision_window: s(window),
            ..Judge::default()
        }
    }

    #[test]
    fn a_failure_the_run_ends_too_early_to_decide_is_censored_not_missed() {
        // Paused from 97.8 s to past the end (100 s): 2.2 s is less than a 4 s window.
        let out = outcome(vec![down("server", "crashed", 97.8, None)], vec![]);
        let q = within_window(4.0).pair(&out, "client-0", "server");
        assert_eq!((q.failures, q.missed, q.censored_failures), (1, 0, 1));
        assert!(q.detections.is_empty());
        // Without a window, the same failure is missed.
        let strict = Judge::default().pair(&out, "client-0", "server");
        assert_eq!((strict.missed, strict.censored_failures), (1, 0));
    }

    #[test]
    fn an_undetected_failure_that_began_before_the_decision_window_is_missed() {
        let out = outcome(vec![down("server", "crashed", 90.0, None)], vec![]);
        let q = within_window(4.0).pair(&out, "client-0", "server");
        assert_eq!((q.missed, q.censored_failures), (1, 0));
    }

    #[test]
    fn a_failure_within_the_decision_window_that_is_detected_by_the_end_is_a_detection() {
        let out = outcome(
            vec![down("server", "crashed", 97.0, None)],
            vec![(99.0, true)],
        );
        let q = within_window(4.0).pair(&out, "client-0", "server");
        assert_eq!(q.detections, vec![s(2.0)]);
        assert_eq!((q.missed, q.censored_failures), (0, 0));
    }

    #[test]
    fn a_failure_that_ended_before_the_end_of_the_run_is_never_censored() {
        let out = outcome(vec![down("server", "crashed", 97.0, Some(99.0))], vec![]);
        let q = within_window(4.0).pair(&out, "client-0", "server");
        assert_eq!((q.missed, q.censored_failures), (1, 0));
    }

    #[test]
    fn a_failure_before_the_watchers_first_session_is_not_the_pairs_and_exposure_starts_there() {
        // The server paused 0.5–9 s while client-0's first handshake waited; its session came
        // at 9.2 s.
        let mut out = outcome(vec![down("server", "paused", 0.5, Some(9.0))], vec![]);
        out.connected
            .insert(("client-0".into(), "server".into()), vec![s(9.2)..s(100.0)]);
        let q = client_view(&out);
        assert_eq!((q.failures, q.missed), (0, 0));
        assert_eq!(q.exposure, s(100.0 - 9.2));
        // A pair that never had a session has nothing to judge.
        out.connected.clear();
        let q = client_view(&out);
        assert_eq!((q.failures, q.missed, q.exposure), (0, 0, Duration::ZERO));
    }

    #[test]
    fn a_failure_while_the_watcher_had_no_connection_and_no_suspicion_is_not_the_pairs() {
        // The server watched client-0 until 30 s; client-0 (reconnecting elsewhere in its
        // life) was paused 40–60 s with no connection to the server: nothing to detect.
        let mut out = outcome(vec![down("clients", "paused", 40.0, Some(60.0))], vec![]);
        out.connected
            .insert(("server".into(), "client-0".into()), vec![s(0.0)..s(30.0)]);
        let q = out_pair(&out, "server", "client-0");
        assert_eq!((q.failures, q.missed), (0, 0));
        // Connected when it began: a failure, here missed.
        out.connected
            .insert(("server".into(), "client-0".into()), vec![s(0.0)..s(45.0)]);
        let q = out_pair(&out, "server", "client-0");
        assert_eq!((q.failures, q.missed), (1, 1));
    }

    #[test]
    fn a_failure_the_watcher_itself_went_down_in_before_deciding_is_censored() {
        // The server watches client-0, which pauses at 40 s; the server crashes at 41 s, before
        // any k·η could pass: undecided, not missed.
        let out = outcome(
            vec![
                down("clients", "paused", 40.0, Some(55.0)),
                down("server", "crashed", 41.0, Some(60.0)),
            ],
            vec![],
        );
        let q = out_pair(&out, "server", "client-0");
        assert_eq!((q.failures, q.missed, q.censored_failures), (1, 0, 1));
    }

    #[test]
    fn a_mistakes_time_is_the_detectors_and_its_duration_splits_by_connection() {
        // Connected until 30 s and again from 35 s; falsely suspected from 20 s to 40 s: all
        // 20 s are the detector's mistake, 15 s of it with the connection still up.
        let mut out = outcome(vec![], vec![(20.0, true), (40.0, false)]);
        out.connected.insert(
            ("client-0".into(), "server".into()),
            vec![s(0.0)..s(30.0), s(35.0)..s(100.0)],
        );
        let q = client_view(&out);
        assert_eq!(q.suspected, s(20.0));
        assert_eq!(q.suspected_mistaken, s(20.0));
        assert_eq!(q.mistake_durations, vec![s(20.0)]);
        assert_eq!(q.mistake_connected, vec![s(15.0)]);
    }

    #[test]
    fn a_suspicion_of_a_failure_that_outlasts_it_is_recovery_not_a_mistake() {
        // Crashed 10–20 s, suspected 12–22 s: only 20–22 s is suspected time, and it is the
        // wait for the session to come back, not a mistake of the detector.
        let out = outcome(
            vec![down("server", "crashed", 10.0, Some(20.0))],
            vec![(12.0, true), (22.0, false)],
        );
        let q = client_view(&out);
        assert_eq!((q.suspected, q.suspected_mistaken), (s(2.0), s(0.0)));
    }
}
