//! The protocol layer's one error type, and the error codes that travel on the wire.

use serde::Serialize;

/// A close or reject reason as carried in CLOSE, GOAWAY and REJECT frames (u16, big-endian).
///
/// The table in `docs/protocol.md` is normative; this enum mirrors it. Unknown codes received
/// from a peer are kept as [`ErrorCode::Other`] so that nothing a peer says is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ErrorCode {
    /// 0x0000: orderly close, no error.
    Normal,
    /// 0x0001: a violation not covered by a more specific code.
    ProtocolError,
    /// 0x0002: the first four bytes of a header were not `0x004D4350`.
    BadMagic,
    /// 0x0003: the version byte is not one this receiver speaks.
    UnsupportedVersion,
    /// 0x0004: the payload length is over the receiver's limit.
    FrameTooLarge,
    /// 0x0005: the frame type (low nibble of flags) is not defined.
    UnknownFrameType,
    /// 0x0006: the payload does not parse as its frame type says, or reserved bits are set.
    MalformedFrame,
    /// 0x0007: the header's session id is not this connection's session.
    WrongSession,
    /// 0x0008: a well-formed frame that is not allowed in the current state.
    UnexpectedFrame,
    /// 0x0009: the credentials in HELLO were refused.
    AuthFailed,
    /// 0x000A: a resume named a session that does not exist, has expired, or a bad token.
    UnknownSession,
    /// 0x000B: no complete handshake within the handshake timeout.
    HandshakeTimeout,
    /// 0x000C: the peer was declared dead by the failure detector.
    HeartbeatTimeout,
    /// 0x000D: the peer sent DATA beyond the advertised window.
    WindowViolation,
    /// 0x000E: a sequence number out of order, or an ACK for data never sent.
    SequenceError,
    /// 0x000F: the server is at a limit (connections, sessions); try again later.
    ServerBusy,
    /// 0x0010: the server is shutting down; resume elsewhere or later.
    ShuttingDown,
    /// 0x0011: the session was taken over by a resume on another connection.
    SessionReplaced,
    /// 0x0012: the sender hit a bug or resource failure of its own.
    InternalError,
    /// Any other value, kept verbatim.
    Other(u16),
}

impl ErrorCode {
    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        use ErrorCode::*;
        match self {
            Normal => 0x0000,
            ProtocolError => 0x0001,
            BadMagic => 0x0002,
            UnsupportedVersion => 0x0003,
            FrameTooLarge => 0x0004,
            UnknownFrameType => 0x0005,
            MalformedFrame => 0x0006,
            WrongSession => 0x0007,
            UnexpectedFrame => 0x0008,
            AuthFailed => 0x0009,
            UnknownSession => 0x000A,
            HandshakeTimeout => 0x000B,
            HeartbeatTimeout => 0x000C,
            WindowViolation => 0x000D,
            SequenceError => 0x000E,
            ServerBusy => 0x000F,
            ShuttingDown => 0x0010,
            SessionReplaced => 0x0011,
            InternalError => 0x0012,
            Other(v) => v,
        }
    }

    /// The code for a wire value; values without a name become [`ErrorCode::Other`].
    pub fn from_u16(v: u16) -> ErrorCode {
        use ErrorCode::*;
        match v {
            0x0000 => Normal,
            0x0001 => ProtocolError,
            0x0002 => BadMagic,
            0x0003 => UnsupportedVersion,
            0x0004 => FrameTooLarge,
            0x0005 => UnknownFrameType,
            0x0006 => MalformedFrame,
            0x0007 => WrongSession,
            0x0008 => UnexpectedFrame,
            0x0009 => AuthFailed,
            0x000A => UnknownSession,
            0x000B => HandshakeTimeout,
            0x000C => HeartbeatTimeout,
            0x000D => WindowViolation,
            0x000E => SequenceError,
            0x000F => ServerBusy,
            0x0010 => ShuttingDown,
            0x0011 => SessionReplaced,
            0x0012 => InternalError,
            other => Other(other),
        }
    }

    /// Does a CLOSE with this code end the session, not just the connection? True for NORMAL
    /// and for application codes (0x8000 and up); every other code leaves it resumable.
    pub fn ends_session(self) -> bool {
        self == ErrorCode::Normal || self.to_u16() >= 0x8000
    }

    /// A short lowercase name, used in logs, metrics labels and traces.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Normal => "normal",
            ProtocolError => "protocol_error",
            BadMagic => "bad_magic",
            UnsupportedVersion => "unsupported_version",
            FrameTooLarge => "frame_too_large",
            UnknownFrameType => "unknown_frame_type",
            MalformedFrame => "malformed_frame",
            WrongSession => "wrong_session",
            UnexpectedFrame => "unexpected_frame",
            AuthFailed => "auth_failed",
            UnknownSession => "unknown_session",
            HandshakeTimeout => "handshake_timeout",
            HeartbeatTimeout => "heartbeat_timeout",
            WindowViolation => "window_violation",
            SequenceError => "sequence_error",
            ServerBusy => "server_busy",
            ShuttingDown => "shutting_down",
            SessionReplaced => "session_replaced",
            InternalError => "internal_error",
            Other(_) => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::Other(v) => write!(f, "code 0x{v:04x}"),
            c => f.write_str(c.name()),
        }
    }
}

/// Everything that can go wrong in the protocol core.
///
/// Errors caused by the peer map to an [`ErrorCode`] with [`Error::code`]; the session sends that
/// code in a CLOSE frame before the driver drops the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("bad magic 0x{0:08x}")]
    BadMagic(u32),
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("payload length {len} over limit {limit}")]
    FrameTooLarge { len: usize, limit: usize },
    #[error("unknown frame type 0x{0:x}")]
    UnknownFrameType(u8),
    #[error("reserved flag bits set: 0x{0:02x}")]
    ReservedFlags(u8),
    #[error("malformed {frame} payload: {what}")]
    Malformed {
        frame: &'static str,
        what: &'static str,
    },
    #[error("truncated frame: {have} bytes buffered at end of stream")]
    Truncated { have: usize },
    #[error("wrong session id {got}, expected {expected}")]
    WrongSession { got: u32, expected: u32 },
    #[error("unexpected {frame} frame while {state}")]
    UnexpectedFrame {
        frame: &'static str,
        state: &'static str,
    },
    #[error("data seq {got} out of order, expected {expected}")]
    SequenceGap { got: u64, expected: u64 },
    #[error("ack {acked} for data never sent (highest sent {sent})")]
    AckBeyondSent { acked: u64, sent: u64 },
    #[error("data seq {seq} beyond window (acked {acked}, window {window})")]
    WindowViolation { seq: u64, acked: u64, window: u32 },
    #[error("peer closed: {code}: {reason}")]
    PeerClosed { code: ErrorCode, reason: String },
    #[error("rejected: {code}: {reason}")]
    Rejected { code: ErrorCode, reason: String },
    #[error("peer declared dead after {silent_ms} ms of silence")]
    HeartbeatTimeout { silent_ms: u64 },
}

impl Error {
    /// The code to send to the peer (or that the peer sent) for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Protocol(_) => ErrorCode::ProtocolError,
            Error::BadMagic(_) => ErrorCode::BadMagic,
            Error::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Error::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Error::UnknownFrameType(_) => ErrorCode::UnknownFrameType,
            Error::ReservedFlags(_) | Error::Malformed { .. } | Error::Truncated { .. } => {
                ErrorCode::MalformedFrame
            }
            Error::WrongSession { .. } => ErrorCode::WrongSession,
            Error::UnexpectedFrame { .. } => ErrorCode::UnexpectedFrame,
            Error::SequenceGap { .. } | Error::AckBeyondSent { .. } => ErrorCode::SequenceError,
            Error::WindowViolation { .. } => ErrorCode::WindowViolation,
            Error::PeerClosed { code, .. } | Error::Rejected { code, .. } => *code,
            Error::HeartbeatTimeout { .. } => ErrorCode::HeartbeatTimeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_round_trips_through_its_wire_value() {
        for v in 0..=0x0013u16 {
            assert_eq!(ErrorCode::from_u16(v).to_u16(), v);
        }
        assert_eq!(ErrorCode::from_u16(0x0013), ErrorCode::Other(0x0013));
    }
}
