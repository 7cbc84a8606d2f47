//! The server's session registry: admits HELLOs, keeps detached sessions for resume, expires them.
//!
//! Sessions are owned by whoever drives their connection; the registry only holds the ones
//! between connections. That keeps the hot path (frames on an established connection) free of
//! shared state: a driver touches the registry at handshake and at disconnect, nowhere else.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::error::{Error, ErrorCode};
use super::frame::{
    Body, Close, Frame, HeartbeatMode, HeartbeatParams, Hello, TOKEN_LEN, expand_seq,
};
use super::session::{Message, Session, SessionConfig, State};
use super::time::Time;

/// What the server accepts and grants.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// The shared secret clients must present; `None` accepts any credential.
    #[serde(skip)]
    pub credential: Option<Bytes>,
    /// Heartbeat parameters for clients that do not ask for any.
    pub default_interval_ms: u32,
    pub default_miss_threshold: u8,
    pub default_mode: HeartbeatMode,
    /// Requested intervals are clamped into this range.
    pub min_interval_ms: u32,
    pub max_interval_ms: u32,
    /// How long a session without a connection is kept for a resume.
    pub resume_window: Duration,
    /// Sessions (attached or detached) beyond which new sessions are refused with SERVER_BUSY.
    pub max_sessions: usize,
    pub session: SessionConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            credential: None,
            default_interval_ms: 1000,
            default_miss_threshold: 3,
            default_mode: HeartbeatMode::OneWay,
            min_interval_ms: 100,
            max_interval_ms: 60_000,
            resume_window: Duration::from_secs(30),
            max_sessions: 100_000,
            session: SessionConfig::default(),
        }
    }
}

/// The registry's answer to a HELLO.
#[derive(Debug)]
pub enum Admission {
    /// A new or resumed session, WELCOME queued. Drive it on this connection.
    Accepted(Box<Session>),
    /// Send this REJECT, flush, and close the connection.
    Rejected {
        frame: Frame,
        code: ErrorCode,
        reason: String,
    },
    /// The first frame was not HELLO: a protocol error, not a refusal (§6.2, §6.3). Send `close`
    /// (CLOSE UNEXPECTED_FRAME; none if the client's first frame was itself a CLOSE), flush,
    /// and close the connection.
    Unexpected { close: Option<Frame>, error: Error },
    /// The session is still attached to another connection. End that one with
    /// [`Session::handle_replaced`], [`Registry::detach`] it, then admit this HELLO again.
    Attached { session_id: u32 },
}

/// Things the registry did on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A detached session was not resumed within the resume window and is gone. `undelivered`
    /// holds the messages the server application sent that the client never acknowledged.
    Expired {
        session_id: u32,
        undelivered: Vec<Message>,
    },
}

enum Slot {
    Attached {
        token: [u8; TOKEN_LEN],
    },
    Detached {
        token: [u8; TOKEN_LEN],
        session: Box<Session>,
        expires: Time,
    },
}

impl Slot {
    fn token(&self) -> &[u8; TOKEN_LEN] {
        match self {
            Slot::Attached { token } | Slot::Detached { token, .. } => token,
        }
    }
}

/// All sessions a server knows. See the module docs.
pub struct Registry {
    config: ServerConfig,
    rng: ChaCha20Rng,
    slots: BTreeMap<u32, Slot>,
    expiries: BTreeSet<(Time, u32)>,
    events: VecDeque<RegistryEvent>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sessions", &self.slots.len())
            .field("detached", &self.expiries.len())
            .finish()
    }
}

fn reject(code: ErrorCode, reason: &str) -> Admission {
    let frame = Frame::new(
        0,
        0,
        Body::Reject(Close {
            code,
            reason: reason.to_string(),
        }),
    );
    Admission::Rejected {
        frame,
        code,
        reason: reason.to_string(),
    }
}

impl Registry {
    /// A registry drawing session ids and resume tokens from `rng`. In production seed it from
    /// the operating system (`ChaCha20Rng::from_os_rng()`): tokens must be unguessable.
    pub fn new(config: ServerConfig, rng: ChaCha20Rng) -> Registry {
        Registry {
            config,
            rng,
            slots: BTreeMap::new(),
            expiries: BTreeSet::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Sessions known, attached or detached.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Sessions waiting for a resume.
    pub fn detached(&self) -> usize {
        self.expiries.len()
    }

    /// Handles the first frame of a connection, which must be HELLO.
    pub fn admit(&mut self, now: Time, frame: &Frame) -> Admission {
        let Body::Hello(hello) = &frame.body else {
            let error = Error::UnexpectedFrame {
                frame: frame.frame_type().name(),
                state: "awaiting hello",
            };
            let close = (!matches!(frame.body, Body::Close(_))).then(|| {
                Frame::new(
                    0,
                    0,
                    Body::Close(Close {
                        code: error.code(),
                        reason: error.to_string(),
                    }),
                )
            });
            return Admission::Unexpected { close, error };
        };
        if let Some(secret) = &self.config.credential {
            // Constant time over the secret's length, so timing does not reveal a prefix.
            let ok = hello.credential.len() == secret.len()
                && bool::from(hello.credential.as_ref().ct_eq(secret.as_ref()));
            if !ok {
                return reject(ErrorCode::AuthFailed, "credential refused");
            }
        }
        match &hello.resume {
            None if frame.session_id != 0 => {
                reject(ErrorCode::WrongSession, "new session must use id 0")
            }
            Some(resume) => self.resume(now, frame.session_id, &resume.token, resume.last_received),
            None => self.open(now, hello),
        }
    }

    fn resume(&mut self, now: Time, id: u32, token: &[u8; TOKEN_LEN], wire_last: u32) -> Admission {
        let known = self
            .slots
            .get(&id)
            .is_some_and(|s| bool::from(s.token().ct_eq(token)));
        if !known {
            return reject(ErrorCode::UnknownSession, "no such session");
        }
        // Still attached elsewhere: the slot stays where it is (taking it out here would leave
        // the session nowhere to be detached to, and every later resume unknown).
        if matches!(self.slots.get(&id), Some(Slot::Attached { .. })) {
            return Admission::Attached { session_id: id };
        }
        let Some(Slot::Detached {
            session, expires, ..
        }) = self.slots.remove(&id)
        else {
            unreachable!("checked above: the slot is detached");
        };
        self.expiries.remove(&(expires, id));
        let token = *token;
        let sent = session.next_seq_sent();
        let last = expand_seq(wire_last, sent);
        if last > sent {
            // The client claims data we never sent; keep the session for an honest retry.
            self.slots.insert(
                id,
                Slot::Detached {
                    token,
                    session,
                    expires,
                },
            );
            self.expiries.insert((expires, id));
            return reject(
                ErrorCode::SequenceError,
                "last received beyond what was sent",
            );
        }
        self.slots.insert(id, Slot::Attached { token });
        Admission::Accepted(Box::new(session.attach(now, Some(last))))
    }

    fn open(&mut self, now: Time, hello: &Hello) -> Admission {
        if self.slots.len() >= self.config.max_sessions {
            return reject(ErrorCode::ServerBusy, "session limit reached");
        }
        let c = &self.config;
        let params = match hello.requested {
            Some(p) => HeartbeatParams {
                interval_ms: p
                    .interval_ms
                    .clamp(c.min_interval_ms.max(1), c.max_interval_ms.max(1)),
                miss_threshold: p.miss_threshold.max(1),
            },
            None => HeartbeatParams {
                interval_ms: c.default_interval_ms.max(1),
                miss_threshold: c.default_miss_threshold.max(1),
            },
        };
        let mode = hello.mode.unwrap_or(c.default_mode);
        let id = loop {
            let id = self.rng.next_u32();
            if id != 0 && !self.slots.contains_key(&id) {
                break id;
            }
        };
        let mut token = [0u8; TOKEN_LEN];
        self.rng.fill_bytes(&mut token);
        self.slots.insert(id, Slot::Attached { token });
        let session = Session::server(self.config.session.clone(), now, id, token, params, mode);
        Admission::Accepted(Box::new(session))
    }

    /// A connection ended. A session that is not closed is kept for the resume window.
    pub fn detach(&mut self, now: Time, mut session: Session) {
        session.handle_disconnect(now);
        let id = session.id();
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if session.state() == State::Closed {
            return;
        }
        let token = *slot.token();
        let expires = now + self.config.resume_window;
        self.expiries.insert((expires, id));
        self.slots.insert(
            id,
            Slot::Detached {
                token,
                session: Box::new(session),
                expires,
            },
        );
    }

    /// Ends a session for good (the application closed it, or it is being dropped).
    pub fn remove(&mut self, session_id: u32) -> Option<Session> {
        match self.slots.remove(&session_id)? {
            Slot::Attached { .. } => None,
            Slot::Detached {
                session, expires, ..
            } => {
                self.expiries.remove(&(expires, session_id));
                Some(*session)
            }
        }
    }

    /// When the next detached session expires.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.expiries.first().map(|(t, _)| *t)
    }

    /// Expires detached sessions whose resume window has passed.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(&(t, id)) = self.expiries.first() {
            if t > now {
                break;
            }
            self.expiries.pop_first();
            let undelivered = match self.slots.remove(&id) {
                Some(Slot::Detached { mut session, .. }) => session.take_undelivered(),
                _ => Vec::new(),
            };
            self.events.push_back(RegistryEvent::Expired {
                session_id: id,
                undelivered,
            });
        }
    }

    pub fn poll_event(&mut self) -> Option<RegistryEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::proto::frame::Resume;

    fn hello(session_id: u32, resume: Option<Resume>) -> Frame {
        Frame::new(
            session_id,
            0,
            Body::Hello(Hello {
                client_id: "c".into(),
                credential: Bytes::new(),
                requested: None,
                mode: None,
                resume,
            }),
        )
    }

    fn accepted(a: Admission) -> Session {
        match a {
            Admission::Accepted(s) => *s,
            other => panic!("expected Accepted, got {other:?}"),
        }
    }

    #[test]
    fn a_resume_of_an_attached_session_waits_for_it_and_then_takes_it_over() {
        let mut r = Registry::new(ServerConfig::default(), ChaCha20Rng::seed_from_u64(1));
        let t0 = Time::ZERO;
        let s = accepted(r.admit(t0, &hello(0, None)));
        let (id, token) = (s.id(), s.token().unwrap());
        let resume = hello(
            id,
            Some(Resume {
                token,
                last_received: 0,
            }),
        );
        // Twice, as a client retrying would: the session stays known.
        for _ in 0..2 {
            assert!(
                matches!(r.admit(t0, &resume), Admission::Attached { session_id } if session_id == id)
            );
        }
        // The old connection ends (replaced) and hands the session back.
        let mut s = s;
        s.handle_replaced();
        r.detach(t0, s);
        let s = accepted(r.admit(t0, &resume));
        assert_eq!(s.id(), id);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_wrong_token_neither_removes_nor_detaches_the_named_session() {
        let mut r = Registry::new(ServerConfig::default(), ChaCha20Rng::seed_from_u64(1));
        let t0 = Time::ZERO;
        let s = accepted(r.admit(t0, &hello(0, None)));
        let mut token = s.token().unwrap();
        token[0] ^= 1;
        let wrong = hello(
            s.id(),
            Some(Resume {
                token,
                last_received: 0,
            }),
        );
        assert!(matches!(
            r.admit(t0, &wrong),
            Admission::Rejected {
                code: ErrorCode::UnknownSession,
                ..
            }
        ));
        assert_eq!((r.len(), r.detached()), (1, 0));
    }
}
