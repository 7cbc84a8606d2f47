//! The client endpoint, sans-IO: every decision a client makes between connections.
//!
//! A [`ClientEndpoint`] owns the client's [`Session`] (which outlives connections), its
//! [`ReconnectPolicy`] (backoff and circuit breaker) and the jitter RNG, and decides when to
//! open a connection, when an attempt has taken too long, what a finished connection means
//! (the server answered, forgot the session, said GOAWAY, refused us), how long to wait before
//! the next attempt, and when to give up. A driver only carries its decisions out: it opens a
//! transport when asked, runs the session's connection loop over it, and sleeps until
//! [`ClientEndpoint::poll_timeout`].
//!
//! # Calling protocol
//!
//! ```text
//! loop {
//!     if let Some(end) = endpoint.ending() { break }          // finished: shut down, gave up…
//!     if let Some(attempt) = endpoint.poll_connect(now) {     // open a transport
//!         match connect(until endpoint.poll_timeout()) {
//!             Ok(t)  => { endpoint.handle_connected(now);      // HELLO is queued
//!                         drive endpoint.session_mut() over t;  // the connection loop
//!                         endpoint.handle_connection_ended(now) }
//!             Err(e) => endpoint.handle_connect_failed(now, e, permanent),
//!             timed out => endpoint.handle_timeout(now),
//!         }
//!     } else { sleep until endpoint.poll_timeout(); endpoint.handle_timeout(now) }
//!     drain endpoint.poll_event()                              // log, trace, metrics
//! }
//! ```
//!
//! [`ClientEndpoint::handle_shutdown`] ends it at any point; a connection that ends because of
//! the shutdown reports [`ClientEndpoint::handle_connection_ended`] after it.
//!
//! # Decisions
//!
//! - A connection on which the handshake completed, or whose server answered that it no
//!   longer knows the session (REJECT `UNKNOWN_SESSION`), proves the server reachable: the
//!   breaker closes and the backoff starts over. Any other end is a failed attempt.
//! - After REJECT `UNKNOWN_SESSION` the session starts afresh and the next attempt is at once.
//! - After a failed attempt the policy answers (see [`ReconnectPolicy`]): a backoff delay, the
//!   breaker's cooldown, or giving up. A GOAWAY's retry-after is a floor under the delay.
//! - A server that refuses the credential (`AUTH_FAILED`), a session the server closed for
//!   good, and a connect error the driver calls permanent (a certificate that cannot be
//!   verified) end the client: retrying would meet the same answer.

use std::collections::VecDeque;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::backoff::{Action, BreakerEvent, ConfigError, ReconnectConfig, ReconnectPolicy};
use super::error::ErrorCode;
use super::session::{ClientConfig, Session, State};
use super::time::Time;

/// Everything a client endpoint decides with.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    pub session: ClientConfig,
    pub reconnect: ReconnectConfig,
    /// A connection attempt that takes longer fails.
    pub connect_timeout: Duration,
    /// Seed of the jitter RNG: from the OS in production, from the master seed in simulation.
    pub seed: u64,
}

/// What happened between connections, for logs, traces and metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// Attempt number `attempt` (since the last reachable server) starts.
    Connecting { attempt: u32 },
    /// The attempt failed before a transport was up.
    ConnectFailed { error: String },
    /// The next attempt is `delay` from now.
    ReconnectIn { delay: Duration, attempt: u32 },
    /// The circuit breaker changed state.
    Breaker(BreakerEvent),
    /// The reconnect policy gave up after `attempts` failed attempts.
    GaveUp { attempts: u32 },
}

/// How a client ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// Shut down by its application, or its session was closed (for good) on a connection.
    Finished,
    /// The reconnect policy gave up.
    GaveUp { attempts: u32 },
    /// The server refused the session's credential.
    Refused { code: ErrorCode, reason: String },
    /// A connect error the driver called permanent.
    Unreachable { error: String },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// The next attempt may start.
    Ready,
    /// An attempt is under way and fails at `deadline`.
    Connecting { deadline: Time },
    /// A transport is up: the session runs on it.
    Connected,
    /// Waiting until `until` before the next attempt.
    Waiting { until: Time },
    /// Over: see `ending`.
    Done,
}

/// A client's decisions, sans-IO (see the module documentation).
#[derive(Debug)]
pub struct ClientEndpoint {
    session: Session,
    policy: ReconnectPolicy,
    rng: ChaCha8Rng,
    connect_timeout: Duration,
    /// Attempts since the server was last reachable.
    attempt: u32,
    phase: Phase,
    ending: Option<Ending>,
    events: VecDeque<ClientEvent>,
}

impl ClientEndpoint {
    pub fn new(config: EndpointConfig) -> Result<ClientEndpoint, ConfigError> {
        Ok(ClientEndpoint {
            session: Session::client(config.session),
            policy: ReconnectPolicy::new(config.reconnect)?,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            connect_timeout: config.connect_timeout,
            attempt: 0,
            phase: Phase::Ready,
            ending: None,
            events: VecDeque::new(),
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, for the connection loop to drive while a transport is up.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// How the client ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    /// Whether a transport should be opened now; if so, the attempt's number. The attempt
    /// fails at [`ClientEndpoint::poll_timeout`] unless the driver reports before.
    pub fn poll_connect(&mut self, now: Time) -> Option<u32> {
        if self.phase != Phase::Ready {
            return None;
        }
        if self.session.state() == State::Closed {
            self.finish(Ending::Finished);
            return None;
        }
        // A wait cut short by rounding may leave the breaker open: wait it out.
        if !self.policy.allow(now)
            && let Some(until) = self.policy.poll_timeout()
        {
            self.phase = Phase::Waiting { until };
            return None;
        }
        self.attempt += 1;
        self.events.push_back(ClientEvent::Connecting {
            attempt: self.attempt,
        });
        self.phase = Phase::Connecting {
            deadline: now + self.connect_timeout,
        };
        Some(self.attempt)
    }

    /// The endpoint's next deadline: the attempt's timeout, or the end of a wait.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.phase {
            Phase::Connecting { deadline } => Some(deadline),
            Phase::Waiting { until } => Some(until),
            Phase::Ready | Phase::Connected | Phase::Done => None,
        }
    }

    /// Time has reached `now`: an attempt past its deadline fails; a wait that is over ends.
    pub fn handle_timeout(&mut self, now: Time) {
        match self.phase {
            Phase::Connecting { deadline } if now >= deadline => {
                self.connect_failed(now, "connect timed out".into(), false);
            }
            Phase::Waiting { until } if now >= until => {
                self.policy.handle_timeout(now);
                self.phase = Phase::Ready;
            }
            _ => {}
        }
    }

    /// The transport is up: the session queues HELLO (a resume if it has an id).
    pub fn handle_connected(&mut self, now: Time) {
        if let Phase::Connecting { .. } = self.phase {
            self.phase = Phase::Connected;
            self.session.handle_connected(now);
        }
    }

    /// The attempt failed with `error`. `permanent`: retrying would meet the same error.
    pub fn handle_connect_failed(&mut self, now: Time, error: String, permanent: bool) {
        if let Phase::Connecting { .. } = self.phase {
            self.connect_failed(now, error, permanent);
        }
    }

    /// The connection the session ran on is over, for whatever reason.
    pub fn handle_connection_ended(&mut self, now: Time) {
        self.session.handle_disconnect(now);
        if self.phase != Phase::Connected {
            // Shut down meanwhile: the session is told, nothing more is decided.
            return;
        }
        let report = self.session.last_connection().clone();
        let session_lost = report
            .peer_close
            .as_ref()
            .is_some_and(|c| c.code == ErrorCode::UnknownSession);
        if report.established || session_lost {
            // The server is reachable: the breaker closes and backoff starts over.
            self.policy.handle_success(now);
            self.attempt = 0;
        }
        if session_lost {
            // The session was reset by the REJECT: open a new one without waiting.
            self.phase = Phase::Ready;
            return;
        }
        if let Some(close) = report.peer_close
            && !close.resumable
            && close.code == ErrorCode::AuthFailed
        {
            self.finish(Ending::Refused {
                code: close.code,
                reason: close.reason,
            });
            return;
        }
        self.failed(now, report.go_away.unwrap_or(Duration::ZERO));
    }

    /// The application is done with the client: nothing more is attempted.
    pub fn handle_shutdown(&mut self) {
        if self.phase != Phase::Done {
            self.finish(Ending::Finished);
        }
    }

    /// What happened since the last call, oldest first.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn connect_failed(&mut self, now: Time, error: String, permanent: bool) {
        self.events.push_back(ClientEvent::ConnectFailed {
            error: error.clone(),
        });
        if permanent {
            self.finish(Ending::Unreachable { error });
        } else {
            self.failed(now, Duration::ZERO);
        }
    }

    /// An attempt failed at `now`: wait as the policy says, never less than `floor`, or give up.
    fn failed(&mut self, now: Time, floor: Duration) {
        if self.session.state() == State::Closed {
            self.finish(Ending::Finished);
            return;
        }
        // After a working connection died the policy was reset, so this is its first, short,
        // jittered delay; never sooner than a GOAWAY's retry-after.
        let action = self.policy.handle_failure(now, &mut self.rng);
        while let Some(ev) = self.policy.poll_event() {
            self.events.push_back(ClientEvent::Breaker(ev));
        }
        let wait = match action {
            Action::Retry { after } => after,
            Action::WaitForBreaker { until } => until.saturating_since(now),
            Action::GiveUp { attempts } => {
                self.events.push_back(ClientEvent::GaveUp { attempts });
                self.finish(Ending::GaveUp { attempts });
                return;
            }
        };
        let delay = wait.max(floor);
        self.events.push_back(ClientEvent::ReconnectIn {
            delay,
            attempt: self.attempt + 1,
        });
        self.phase = Phase::Waiting { until: now + delay };
    }

    fn finish(&mut self, ending: Ending) {
        self.phase = Phase::Done;
        self.ending.get_or_insert(ending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::backoff::{BackoffConfig, BreakerConfig, Jitter, Policy};
    use crate::proto::registry::{Admission, Registry, ServerConfig};
    use crate::proto::{Frame, FrameType};
    use bytes::Bytes;
    use rand_chacha::ChaCha20Rng;

    fn at(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    /// Backoff 100, 200, 400… ms without jitter; the breaker opens after `threshold` failures
    /// for 5 s; `max_attempts` retries at most.
    fn endpoint(threshold: u32, max_attempts: Option<u32>) -> ClientEndpoint {
        ClientEndpoint::new(EndpointConfig {
            session: ClientConfig::default(),
            reconnect: ReconnectConfig {
                backoff: BackoffConfig {
                    policy: Policy::Exponential { factor: 2.0 },
                    base_ms: 100,
                    cap_ms: 10_000,
                    jitter: Jitter::None,
                    max_attempts,
                },
                breaker: BreakerConfig {
                    failure_threshold: threshold,
                    cooldown_ms: 5_000,
                    cooldown_jitter: 0.0,
                },
            },
            connect_timeout: Duration::from_secs(2),
            seed: 7,
        })
        .expect("valid config")
    }

    fn events(e: &mut ClientEndpoint) -> Vec<ClientEvent> {
        std::iter::from_fn(|| e.poll_event()).collect()
    }

    /// Connects at `now` and lets `registry` answer the HELLO; returns the server's session
    /// when it accepted.
    fn connect_to(e: &mut ClientEndpoint, registry: &mut Registry, now: Time) -> Option<Session> {
        e.poll_connect(now).expect("an attempt is due");
        e.handle_connected(now);
        let hello = e.session_mut().poll_transmit(now).expect("HELLO");
        assert_eq!(hello.frame_type(), FrameType::Hello);
        let (answer, server) = match registry.admit(now, &hello) {
            Admission::Accepted(mut s) => (s.poll_transmit(now).expect("WELCOME"), Some(*s)),
            Admission::Rejected { frame, .. } => (frame, None),
            other => panic!("unexpected admission {other:?}"),
        };
        let _ = e.session_mut().handle_frame(now, reencode(answer));
        server
    }

    /// A frame as the peer's decoder would see it.
    fn reencode(f: Frame) -> Frame {
        let mut buf = bytes::BytesMut::new();
        f.encode(&mut buf).expect("encodes");
        let mut dec = crate::proto::Decoder::new(crate::proto::frame::MAX_PAYLOAD_LEN);
        dec.decode(&mut buf)
            .expect("decodes")
            .expect("a whole frame")
    }

    fn registry(credential: Option<&'static [u8]>) -> Registry {
        Registry::new(
            ServerConfig {
                credential: credential.map(Bytes::from_static),
                ..ServerConfig::default()
            },
            ChaCha20Rng::seed_from_u64(1),
        )
    }

    #[test]
    fn a_new_endpoint_asks_for_attempt_one_at_once_and_nothing_more_until_it_is_answered() {
        let mut e = endpoint(5, None);
        assert_eq!(e.poll_connect(at(0)), Some(1));
        assert_eq!(e.poll_connect(at(0)), None);
        assert_eq!(e.poll_timeout(), Some(at(2_000)));
        assert_eq!(events(&mut e), [ClientEvent::Connecting { attempt: 1 }]);
    }

    #[test]
    fn an_attempt_that_outlasts_the_connect_timeout_fails_and_waits_the_first_backoff_delay() {
        let mut e = endpoint(5, None);
        e.poll_connect(at(0));
        e.handle_timeout(at(1_999));
        assert_eq!(e.poll_timeout(), Some(at(2_000)), "not yet timed out");
        e.handle_timeout(at(2_000));
        assert_eq!(e.poll_timeout(), Some(at(2_100)));
        assert_eq!(
            events(&mut e)[1..],
            [
                ClientEvent::ConnectFailed {
                    error: "connect timed out".into()
                },
                ClientEvent::ReconnectIn {
                    delay: Duration::from_millis(100),
                    attempt: 2
                }
            ]
        );
        assert_eq!(e.poll_connect(at(2_050)), None, "still waiting");
        e.handle_timeout(at(2_100));
        assert_eq!(e.poll_connect(at(2_100)), Some(2));
    }

    #[test]
    fn consecutive_failures_double_the_delay_until_the_breaker_opens_for_its_cooldown() {
        let mut e = endpoint(3, None);
        let mut now = at(0);
        let mut waits = Vec::new();
        for _ in 0..3 {
            e.poll_connect(now).expect("attempt");
            e.handle_connect_failed(now, "refused".into(), false);
            let until = e.poll_timeout().expect("a wait");
            waits.push(until.saturating_since(now));
            now = until;
            e.handle_timeout(now);
        }
        assert_eq!(
            waits,
            [
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_secs(5)
            ]
        );
        assert!(
            events(&mut e)
                .iter()
                .any(|ev| matches!(ev, ClientEvent::Breaker(_)))
        );
    }

    #[test]
    fn the_policy_gives_up_after_max_attempts_and_the_endpoint_says_so() {
        let mut e = endpoint(100, Some(2));
        let mut now = at(0);
        while e.ending().is_none() {
            e.poll_connect(now).expect("attempt");
            e.handle_connect_failed(now, "refused".into(), false);
            if let Some(t) = e.poll_timeout() {
                now = t;
                e.handle_timeout(now);
            }
        }
        assert_eq!(e.ending(), Some(&Ending::GaveUp { attempts: 3 }));
        assert_eq!(
            events(&mut e).last(),
            Some(&ClientEvent::GaveUp { attempts: 3 })
        );
        assert_eq!(e.poll_connect(now), None);
    }

    #[test]
    fn a_permanent_connect_error_ends_the_client_without_a_retry() {
        let mut e = endpoint(5, None);
        e.poll_connect(at(0));
        e.handle_connect_failed(at(5), "certificate expired".into(), true);
        assert_eq!(
            e.ending(),
            Some(&Ending::Unreachable {
                error: "certificate expired".into()
            })
        );
        assert_eq!(e.poll_timeout(), None);
    }

    #[test]
    fn an_established_connection_resets_the_backoff_so_the_next_wait_is_the_first_delay_again() {
        let mut e = endpoint(5, None);
        let mut reg = registry(None);
        // Two failures first: the next delay would be 400 ms.
        let mut now = at(0);
        for _ in 0..2 {
            e.poll_connect(now);
            e.handle_connect_failed(now, "refused".into(), false);
            now = e.poll_timeout().expect("a wait");
            e.handle_timeout(now);
        }
        assert!(connect_to(&mut e, &mut reg, now).is_some());
        assert!(e.session().last_connection().established);
        e.handle_connection_ended(now + Duration::from_secs(30));
        assert_eq!(
            e.poll_timeout(),
            Some(now + Duration::from_secs(30) + Duration::from_millis(100))
        );
        assert_eq!(
            events(&mut e).last(),
            Some(&ClientEvent::ReconnectIn {
                delay: Duration::from_millis(100),
                attempt: 1
            })
        );
    }

    #[test]
    fn a_goaway_retry_after_is_a_floor_under_the_backoff_delay() {
        let mut e = endpoint(5, None);
        let mut reg = registry(None);
        let mut server = connect_to(&mut e, &mut reg, at(0)).expect("accepted");
        server.go_away(ErrorCode::ShuttingDown, Duration::from_secs(3), "draining");
        let goaway = std::iter::from_fn(|| server.poll_transmit(at(10)))
            .find(|f| f.frame_type() == FrameType::GoAway)
            .expect("GOAWAY");
        let _ = e.session_mut().handle_frame(at(10), reencode(goaway));
        e.handle_connection_ended(at(10));
        assert_eq!(e.poll_timeout(), Some(at(3_010)));
    }

    #[test]
    fn a_server_that_forgot_the_session_gets_a_fresh_one_at_once() {
        let mut e = endpoint(5, None);
        let mut first = registry(None);
        connect_to(&mut e, &mut first, at(0)).expect("accepted");
        let old_id = e.session().id();
        e.handle_connection_ended(at(1_000));
        e.handle_timeout(e.poll_timeout().expect("a wait"));
        // A restarted server with an empty registry answers the resume with UNKNOWN_SESSION.
        let mut restarted = registry(None);
        let now = at(2_000);
        assert!(connect_to(&mut e, &mut restarted, now).is_none());
        e.handle_connection_ended(now);
        assert_eq!(e.poll_timeout(), None, "no wait");
        assert_eq!(e.poll_connect(now), Some(1), "the count starts over");
        assert_ne!(e.session().id(), old_id);
    }

    #[test]
    fn a_refused_credential_ends_the_client_with_the_servers_reason() {
        let mut e = endpoint(5, None);
        let mut reg = registry(Some(b"secret"));
        assert!(connect_to(&mut e, &mut reg, at(0)).is_none());
        e.handle_connection_ended(at(0));
        assert!(matches!(
            e.ending(),
            Some(Ending::Refused {
                code: ErrorCode::AuthFailed,
                ..
            })
        ));
    }

    #[test]
    fn a_shutdown_while_connected_decides_nothing_more_but_tells_the_session() {
        let mut e = endpoint(5, None);
        let mut reg = registry(None);
        connect_to(&mut e, &mut reg, at(0)).expect("accepted");
        e.handle_shutdown();
        e.handle_connection_ended(at(10));
        assert_eq!(e.ending(), Some(&Ending::Finished));
        assert_eq!(e.poll_timeout(), None);
        assert_eq!(events(&mut e), [ClientEvent::Connecting { attempt: 1 }]);
        assert_ne!(e.session().state(), State::Established);
    }
}
