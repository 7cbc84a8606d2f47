//! What the drivers report, turned into logs, Prometheus metrics and alert webhooks.
//!
//! [`Telemetry`] is the production [`Observer`]. It must never block the connection that
//! reports an event: logging and metric updates are in-memory, and an alert POST runs in its
//! own task, with a bound on how many may be in flight (beyond it alerts are dropped and
//! logged).
//!
//! Metrics (all prefixed `mcp_`, labelled by `side` where both ends report them):
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `mcp_sessions` | gauge | connections with an established session |
//! | `mcp_throttling` | gauge | 1 while the server grants a throttled (longer) interval because of load |
//! | `mcp_heartbeat_acks_total` | counter | heartbeat round trips measured (replies received) |
//! | `mcp_heartbeat_rtt_seconds` | histogram | heartbeat round-trip time |
//! | `mcp_suspicions_total` | counter | the detector started suspecting the peer |
//! | `mcp_peer_dead_total` | counter | the peer was declared dead, by `reason` (below) |
//! | `mcp_peer_dead_silence_seconds` | histogram | time since the peer's last sign of life when it was declared dead, by `reason` |
//! | `mcp_health_transitions_total` | counter | health changes, by `to` |
//! | `mcp_reconnects_total` | counter | reconnect attempts scheduled by a client |
//! | `mcp_connect_failures_total` | counter | connection attempts that failed |
//! | `mcp_connections_accepted_total` | counter | connections a server accepted |
//! | `mcp_connections_refused_total` | counter | connections refused, by `reason` |
//! | `mcp_rejected_frames_total` | counter | frames rejected, by error `code` |
//! | `mcp_sessions_expired_total` | counter | detached sessions that were never resumed |
//! | `mcp_bytes_received_total`, `mcp_bytes_sent_total` | counter | counted when a connection ends |
//!
//! # Detection
//!
//! A peer is declared dead (`docs/protocol.md` §11.6) at the instant the driver reports
//! [`NetEvent::PeerLost`], which is the instant the simulator's judge measures: when the
//! detector suspects it (`reason="heartbeat_timeout"`, the connection is closed with CLOSE
//! HEARTBEAT_TIMEOUT), or when an established connection ends without a CLOSE from either side
//! (`eof`, `reset`, `timeout`, `write_stalled`, `io`). Each gets one warn line naming the peer
//! with the reason and the silence, `mcp_peer_dead_total{side,reason}`, an observation of
//! `mcp_peer_dead_silence_seconds`, and an alert. A connection ended by a CLOSE frame (either
//! side's) or by this side's shutdown is no detection and gets none of these.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::sync::Semaphore;

use super::CliError;
use super::opts::LogFormat;
use crate::net::{NetEvent, Observer, PeerLoss};
use crate::proto::frame::Load;
use crate::proto::health::HealthState;
use crate::proto::session::{Event, Side};

/// RTT histogram buckets, in seconds: 0.1 ms to 10 s.
const RTT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Silence at detection, in seconds: 1 ms (an end of stream right after a heartbeat) to 10 min.
const SILENCE_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 600.0,
];
/// Alert POSTs in flight at once; more are dropped.
const MAX_ALERTS_IN_FLIGHT: usize = 16;
const ALERT_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the log subscriber on stderr. `RUST_LOG` filters; the default is `info`.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second call (tests) finds a subscriber already set: keep it.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Starts the Prometheus exporter on `addr` (`GET /metrics`). Call within the runtime.
pub fn install_metrics(addr: SocketAddr) -> Result<(), CliError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("mcp_heartbeat_rtt_seconds".into()),
            RTT_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("mcp_peer_dead_silence_seconds".into()),
                SILENCE_BUCKETS,
            )
        })
        .and_then(|b| b.install())
        .map_err(|e| CliError::Run(format!("cannot serve metrics on {addr} (--metrics): {e}")))?;
    describe_gauge!("mcp_sessions", "Connections with an established session.");
    describe_gauge!(
        "mcp_throttling",
        "1 while the server grants a longer interval because of its load."
    );
    describe_counter!(
        "mcp_heartbeat_acks_total",
        "Heartbeat round trips measured (replies received)."
    );
    describe_histogram!(
        "mcp_heartbeat_rtt_seconds",
        metrics::Unit::Seconds,
        "Heartbeat round-trip time."
    );
    describe_counter!(
        "mcp_suspicions_total",
        "Times the detector started suspecting the peer."
    );
    describe_counter!(
        "mcp_peer_dead_total",
        "Peers declared dead: by the detector, or by a connection ended without CLOSE; by reason."
    );
    describe_histogram!(
        "mcp_peer_dead_silence_seconds",
        metrics::Unit::Seconds,
        "Time since the peer's last sign of life when it was declared dead, by reason."
    );
    describe_counter!("mcp_health_transitions_total", "Peer health changes.");
    describe_counter!("mcp_reconnects_total", "Reconnect attempts scheduled.");
    describe_counter!(
        "mcp_connect_failures_total",
        "Connection attempts that failed."
    );
    describe_counter!(
        "mcp_connections_accepted_total",
        "Connections accepted by the server."
    );
    describe_counter!(
        "mcp_connections_refused_total",
        "Connections refused, by reason."
    );
    describe_counter!(
        "mcp_rejected_frames_total",
        "Frames rejected as malformed or illegal, by error code."
    );
    describe_counter!(
        "mcp_sessions_expired_total",
        "Detached sessions that expired unresumed."
    );
    describe_counter!(
        "mcp_bytes_received_total",
        "Bytes read, counted when a connection ends."
    );
    describe_counter!(
        "mcp_bytes_sent_total",
        "Bytes written, counted when a connection ends."
    );
    Ok(())
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Server => "server",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sends an alert to a webhook without waiting for it.
pub struct Webhook {
    url: reqwest::Url,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

impl Webhook {
    pub fn new(url: &str) -> Result<Webhook, CliError> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "bad --alert-webhook URL {url:?}: expected http:// or https://"
                ))
            })?;
        let client = reqwest::Client::builder()
            .timeout(ALERT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| CliError::Run(format!("cannot set up the alert webhook: {e}")))?;
        Ok(Webhook {
            url,
            client,
            slots: Arc::new(Semaphore::new(MAX_ALERTS_IN_FLIGHT)),
        })
    }

    /// POSTs `body` in a task of its own; drops it (and says so) when too many are in flight.
    pub fn fire(&self, body: serde_json::Value) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(body = %body, "alert dropped: too many in flight");
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(body = %body, "alert dropped: no runtime");
            return;
        };
        let request = self.client.post(self.url.clone()).json(&body);
        rt.spawn(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = %r.status(), "alert webhook answered an error"),
                Err(e) => tracing::warn!(error = %e, "alert webhook failed"),
            }
            drop(permit);
        });
    }
}

type Key = (String, Side, u32);

/// The production observer: logs, metrics, alerts.
pub struct Telemetry {
    /// Connections with an established session, and the peer's last known health.
    live: Mutex<BTreeMap<Key, &'static str>>,
    /// Who is at the other end of each of those connections, for the logs that name it.
    peers: Mutex<BTreeMap<Key, String>>,
    /// The last load figures each peer's heartbeats carried, for its alert.
    loads: Mutex<BTreeMap<Key, Load>>,
    webhook: Option<Webhook>,
}

impl Telemetry {
    /// `side` is the side this process runs, for gauges that must exist before any event.
    pub fn new(side: Side, webhook: Option<Webhook>) -> Telemetry {
        // Present from the start, so a scrape before the first session shows 0, not nothing.
        gauge!("mcp_sessions", "side" => side_name(side)).set(0.0);
        Telemetry {
            live: Mutex::new(BTreeMap::new()),
            peers: Mutex::new(BTreeMap::new()),
            loads: Mutex::new(BTreeMap::new()),
            webhook,
        }
    }

    fn status(&self, key: &Key) -> &'static str {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(key).copied().unwrap_or("disconnected")
    }

    /// The peer of a connection, as its driver named it (`client "id" at addr`, `server`).
    fn peer(&self, key: &Key) -> String {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(key).cloned().unwrap_or_default()
    }

    fn set_live(&self, key: Key, status: Option<&'static str>) {
        if status.is_none() {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            peers.remove(&key);
            let mut loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
            loads.remove(&key);
        }
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let side = side_name(key.1);
        match status {
            Some(s) => {
                if live.insert(key, s).is_none() {
                    gauge!("mcp_sessions", "side" => side).increment(1.0);
                }
            }
            None => {
                if live.remove(&key).is_some() {
                    gauge!("mcp_sessions", "side" => side).decrement(1.0);
                }
            }
        }
    }

    fn session_event(&self, node: &str, side: Side, sid: u32, event: &Event) {
        let side_s = side_name(side);
        let key = || (node.to_string(), side, sid);
        if let Event::HeartbeatReceived {
            load: Some(load), ..
        }
        | Event::Rtt {
            load: Some(load), ..
        } = event
        {
            let mut loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
            loads.insert(key(), *load);
        }
        match event {
            Event::Established {
                session_id,
                resumed,
                params,
                mode,
                retransmitting,
            } => {
                self.set_live((node.to_string(), side, *session_id), Some("healthy"));
                tracing::info!(
                    node,
                    side = side_s,
                    session_id,
                    event = if *resumed { "resumed" } else { "established" },
                    status = "healthy",
                    interval_ms = params.0,
                    miss_threshold = params.1,
                    mode = ?mode,
                    retransmitting,
                    "session established"
                );
            }
            Event::PeerSuspected { silent } => {
                counter!("mcp_suspicions_total", "side" => side_s).increment(1);
                tracing::warn!(
                    node,
                    side = side_s,
                    session_id = sid,
                    event = "peer_suspected",
                    silent_ms = ms(*silent),
                    "peer suspected"
                );
            }
            Event::PeerTrusted => {
                tracing::info!(
                    node,
                    side = side_s,
                    session_id = sid,
                    event = "peer_trusted",
                    "peer trusted again"
                );
            }
            // Acted on as the driver's `PeerLost` that follows it, with the peer's name.
            Event::PeerDead { silent } => tracing::debug!(
                node,
                side = side_s,
                session_id = sid,
                event = "heartbeat_timeout",
                silent_ms = ms(*silent),
                "detector suspicion: peer dead"
            ),
            Event::Rtt { rtt, load, .. } => {
                counter!("mcp_heartbeat_acks_total", "side" => side_s).increment(1);
                histogram!("mcp_heartbeat_rtt_seconds", "side" => side_s).record(rtt.as_secs_f64());
                if tracing::enabled!(tracing::Level::DEBUG) {
                    tracing::debug!(
                        node,
                        side = side_s,
                        session_id = sid,
                        event = "heartbeat_rtt",
                        peer = self.peer(&key()),
                        status = self.status(&key()),
                        rtt_ms = ms(*rtt),
                        peer_cpu = load.map(|l| f64::from(l.cpu_permille) / 1000.0),
                        peer_mem = load.map(|l| f64::from(l.mem_permille) / 1000.0),
                        "heartbeat round trip"
                    );
                }
            }
            Event::ParamsChanged {
                interval_ms,
                miss_threshold,
            } => tracing::info!(
                node,
                side = side_s,
                session_id = sid,
                event = "params_changed",
                interval_ms,
                miss_threshold,
                "heartbeat parameters changed"
            ),
            Event::GoAway { code, retry_after } => tracing::info!(
                node,
                side = side_s,
                session_id = sid,
                event = "go_away",
                code = code.name(),
                retry_after_ms = ms(*retry_after),
                "server asked to go away"
            ),
            Event::ConnectionClosed {
                code,
                reason,
                by_peer,
                resumable,
            } => tracing::info!(
                node,
                side = side_s,
                session_id = sid,
                event = "closed",
                code = code.name(),
                reason = reason.as_str(),
                by_peer,
                resumable,
                "connection closed"
            ),
            Event::Health(h) => {
                let to = h.to.name();
                counter!("mcp_health_transitions_total", "side" => side_s, "to" => to).increment(1);
                {
                    let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(s) = live.get_mut(&key()) {
                        *s = to;
                    }
                }
                let healthy = matches!(h.to, HealthState::Healthy);
                if healthy {
                    tracing::info!(
                        node,
                        side = side_s,
                        session_id = sid,
                        event = "health",
                        status = to,
                        from = h.from.name(),
                        reason = h.reason.as_str(),
                        "peer health changed"
                    );
                } else {
                    tracing::warn!(
                        node,
                        side = side_s,
                        session_id = sid,
                        event = "health",
                        status = to,
                        from = h.from.name(),
                        reason = h.reason.as_str(),
                        "peer health changed"
                    );
                }
            }
            // Counted with the traffic; one line per heartbeat only when asked for (the
            // simulator's `--trace-level segments` shows the same receipts).
            Event::HeartbeatReceived { seq, gap, load } => {
                if tracing::enabled!(tracing::Level::TRACE) {
                    tracing::trace!(
                        node,
                        side = side_s,
                        session_id = sid,
                        event = "heartbeat",
                        peer = self.peer(&key()),
                        seq,
                        gap_ms = gap.map(ms),
                        peer_cpu = load.map(|l| f64::from(l.cpu_permille) / 1000.0),
                        peer_mem = load.map(|l| f64::from(l.mem_permille) / 1000.0),
                        "heartbeat received"
                    );
                }
            }
            Event::Undelivered { messages } => tracing::warn!(
                node,
                side = side_s,
                session_id = sid,
                event = "undelivered",
                count = messages.len(),
                "messages will not be delivered"
            ),
        }
    }
}

/// A peer declared dead, as an alert describes it.
pub struct Dead<'a> {
    pub node: &'a str,
    pub side: Side,
    pub session_id: u32,
    pub peer: &'a str,
    pub reason: PeerLoss,
    pub silent: Duration,
    /// The peer's last load figures, when its heartbeats carried them.
    pub load: Option<Load>,
}

/// The JSON an alert webhook receives.
pub fn alert_body(dead: &Dead<'_>, at: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "event": "peer_dead",
        "node": dead.node,
        "side": side_name(dead.side),
        "session_id": dead.session_id,
        "peer": dead.peer,
        "reason": dead.reason.name(),
        "silent_ms": dead.silent.as_millis() as u64,
        "peer_cpu": dead.load.map(|l| f64::from(l.cpu_permille) / 1000.0),
        "peer_mem": dead.load.map(|l| f64::from(l.mem_permille) / 1000.0),
        "at": humantime::format_rfc3339_millis(at).to_string(),
    })
}

impl Telemetry {
    /// The peer was declared dead: one warn line, the counter and histogram, an alert.
    fn peer_dead(&self, dead: &Dead<'_>) {
        let side_s = side_name(dead.side);
        let reason = dead.reason.name();
        counter!("mcp_peer_dead_total", "side" => side_s, "reason" => reason).increment(1);
        histogram!("mcp_peer_dead_silence_seconds", "side" => side_s, "reason" => reason)
            .record(dead.silent.as_secs_f64());
        tracing::warn!(
            node = dead.node,
            side = side_s,
            session_id = dead.session_id,
            event = "peer_dead",
            peer = dead.peer,
            reason,
            silent_ms = ms(dead.silent),
            "peer dead"
        );
        if let Some(hook) = &self.webhook {
            hook.fire(alert_body(dead, SystemTime::now()));
        }
    }
}

impl Observer for Telemetry {
    fn observe(&self, node: &str, side: Side, sid: u32, event: &NetEvent) {
        let side_s = side_name(side);
        match event {
            NetEvent::Session(e) => self.session_event(node, side, sid, e),
            NetEvent::Connecting { attempt } => tracing::debug!(
                node,
                side = side_s,
                session_id = sid,
                event = "connecting",
                attempt,
                "connecting"
            ),
            NetEvent::ConnectFailed { error } => {
                counter!("mcp_connect_failures_total", "side" => side_s).increment(1);
                tracing::warn!(
                    node,
                    side = side_s,
                    session_id = sid,
                    event = "connect_failed",
                    error = error.as_str(),
                    "connect failed"
                );
            }
            NetEvent::ReconnectIn { delay, attempt } => {
                counter!("mcp_reconnects_total", "side" => side_s).increment(1);
                tracing::info!(
                    node,
                    side = side_s,
                    session_id = sid,
                    event = "reconnect_in",
                    delay_ms = ms(*delay),
                    attempt,
                    "reconnecting"
                );
            }
            NetEvent::Breaker(b) => tracing::warn!(
                node,
                side = side_s,
                session_id = sid,
                event = "breaker",
                from = ?b.from,
                to = ?b.to,
                "circuit breaker changed"
            ),
            NetEvent::GaveUp { attempts } => tracing::error!(
                node,
                side = side_s,
                session_id = sid,
                event = "gave_up",
                attempts,
                "gave up reconnecting"
            ),
            NetEvent::Accepted { peer } => {
                counter!("mcp_connections_accepted_total").increment(1);
                tracing::debug!(
                    node,
                    side = side_s,
                    event = "accepted",
                    %peer,
                    "connection accepted"
                );
            }
            NetEvent::Refused { peer, reason } => {
                counter!("mcp_connections_refused_total", "reason" => *reason).increment(1);
                tracing::warn!(
                    node,
                    side = side_s,
                    event = "refused",
                    %peer,
                    reason,
                    "connection refused"
                );
            }
            NetEvent::HandshakeTimeout { peer } => {
                counter!("mcp_connections_refused_total", "reason" => "handshake timeout")
                    .increment(1);
                tracing::info!(
                    node,
                    side = side_s,
                    event = "handshake_timeout",
                    %peer,
                    "no hello in time"
                );
            }
            NetEvent::Expired { undelivered } => {
                counter!("mcp_sessions_expired_total").increment(1);
                tracing::info!(
                    node,
                    side = side_s,
                    session_id = sid,
                    event = "expired",
                    undelivered,
                    "detached session expired"
                );
            }
            NetEvent::Attached { peer } => {
                let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
                peers.insert((node.to_string(), side, sid), peer.clone());
            }
            NetEvent::Throttle {
                interval_ms,
                cpu_permille,
                throttling,
            } => {
                gauge!("mcp_throttling").set(if *throttling { 1.0 } else { 0.0 });
                tracing::warn!(
                    node,
                    side = side_s,
                    event = if *throttling {
                        "throttle_on"
                    } else {
                        "throttle_off"
                    },
                    interval_ms,
                    cpu = f64::from(*cpu_permille) / 1000.0,
                    "load-aware heartbeats: granting a new interval"
                );
            }
            NetEvent::Rejected { error } => {
                let code = error.code().name();
                counter!("mcp_rejected_frames_total", "side" => side_s, "code" => code)
                    .increment(1);
                tracing::warn!(
                    node,
                    side = side_s,
                    session_id = sid,
                    event = "rejected",
                    code,
                    error = %error,
                    "frame rejected"
                );
            }
            NetEvent::Traffic {
                bytes_in,
                bytes_out,
                heartbeats_sent,
                heartbeats_received,
            } => {
                counter!("mcp_bytes_received_total", "side" => side_s).increment(*bytes_in);
                counter!("mcp_bytes_sent_total", "side" => side_s).increment(*bytes_out);
                counter!("mcp_heartbeats_sent_total", "side" => side_s).increment(*heartbeats_sent);
                counter!("mcp_heartbeats_received_total", "side" => side_s)
                    .increment(*heartbeats_received);
            }
            NetEvent::PeerLost {
                reason,
                silent,
                peer,
            } => {
                let load = {
                    let loads = self.loads.lock().unwrap_or_else(|e| e.into_inner());
                    loads.get(&(node.to_string(), side, sid)).copied()
                };
                self.peer_dead(&Dead {
                    node,
                    side,
                    session_id: sid,
                    peer,
                    reason: *reason,
                    silent: *silent,
                    load,
                })
            }
            NetEvent::Disconnected {
                reason,
                bytes_in,
                bytes_out,
            } => {
                // Bytes were counted from the connection's Traffic events.
                self.set_live((node.to_string(), side, sid), None);
                tracing::info!(
                    node,
                    side = side_s,
                    session_id = sid,
                    event = "disconnected",
                    reason = %reason,
                    bytes_in,
                    bytes_out,
                    "connection ended"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads one HTTP/1.1 request, answers 200, and returns its head and body.
    async fn one_request(listener: tokio::net::TcpListener) -> (String, Vec<u8>) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "request ended early");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("no content-length");
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "body ended early");
            buf.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        (head, buf[head_end..head_end + len].to_vec())
    }

    #[tokio::test]
    async fn a_lost_peer_posts_an_alert_to_the_webhook() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alerts", listener.local_addr().unwrap());
        let telemetry = Telemetry::new(Side::Server, Some(Webhook::new(&url).unwrap()));
        let receiver = tokio::spawn(one_request(listener));

        // The client's last heartbeat carried its load: the alert says what it was.
        telemetry.observe(
            "server",
            Side::Server,
            42,
            &NetEvent::Session(Event::HeartbeatReceived {
                seq: 7,
                gap: None,
                load: Some(Load {
                    cpu_permille: 975,
                    mem_permille: 500,
                }),
            }),
        );
        telemetry.observe(
            "server",
            Side::Server,
            42,
            &NetEvent::PeerLost {
                reason: PeerLoss::Eof,
                silent: Duration::from_millis(3250),
                peer: "client \"c1\" at 127.0.0.1:5000".into(),
            },
        );

        let (head, body) = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .expect("no request within 5 s")
            .unwrap();
        assert!(head.starts_with("POST /alerts HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["event"], "peer_dead");
        assert_eq!(v["node"], "server");
        assert_eq!(v["side"], "server");
        assert_eq!(v["session_id"], 42);
        assert_eq!(v["reason"], "eof");
        assert_eq!(v["peer"], "client \"c1\" at 127.0.0.1:5000");
        assert_eq!(v["silent_ms"], 3250);
        assert_eq!(
            (v["peer_cpu"].as_f64(), v["peer_mem"].as_f64()),
            (Some(0.975), Some(0.5))
        );
        let at = v["at"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(at).is_ok(), "{at}");
    }

    #[test]
    fn bad_webhook_urls_are_refused() {
        assert!(Webhook::new("not a url").is_err());
        assert!(Webhook::new("ftp://example.invalid/").is_err());
    }

    #[test]
    fn sessions_are_counted_once_per_connection() {
        let t = Telemetry::new(Side::Server, None);
        let est = NetEvent::Session(Event::Established {
            session_id: 5,
            resumed: false,
            params: (1000, 3),
            mode: crate::proto::frame::HeartbeatMode::OneWay,
            retransmitting: 0,
        });
        t.observe("s", Side::Server, 5, &est);
        t.observe("s", Side::Server, 5, &est);
        assert_eq!(t.live.lock().unwrap().len(), 1);
        let gone = NetEvent::Disconnected {
            reason: crate::net::ConnEnd::Eof,
            bytes_in: 10,
            bytes_out: 20,
        };
        t.observe("s", Side::Server, 5, &gone);
        t.observe("s", Side::Server, 5, &gone);
        assert!(t.live.lock().unwrap().is_empty());
    }
}
