//! Frames: the 16-byte header, every frame type's payload, encoding and a streaming decoder.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                     magic = 0x004D4350                        |
//! +---------------+-------+-------+-------------------------------+
//! |  version = 1  | rsvd  | type  |        payload length         |
//! +---------------+-------+-------+-------------------------------+
//! |                          session id                           |
//! +---------------------------------------------------------------+
//! |                        sequence number                        |
//! +---------------------------------------------------------------+
//! |                  payload (payload length bytes)             ...
//! ```
//!
//! All integers are big-endian. The flags byte carries the frame type in its low nibble; the
//! high nibble is reserved and must be zero. `docs/protocol.md` is the normative description.
//!
//! The [`Decoder`] follows the `tokio_util::codec` contract: incomplete input yields `Ok(None)`,
//! and the header is validated (magic, version, type, length limit) as soon as its 16 bytes are
//! in, so a hostile length never makes the caller buffer more than `16 + limit` bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{Error, ErrorCode};

/// `"\0MCP"`: the first four bytes of every frame.
pub const MAGIC: u32 = 0x004D_4350;
/// The protocol version this implementation speaks.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 16;
/// The largest payload the length field can describe.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;
/// Bytes of a resume token.
pub const TOKEN_LEN: usize = 16;
/// Bytes a DATA payload spends before the application's bytes (channel u16, priority u8).
pub const DATA_OVERHEAD: usize = 3;

/// A frame type: the low nibble of the flags byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FrameType {
    Hello = 0x1,
    Welcome = 0x2,
    Reject = 0x3,
    Heartbeat = 0x4,
    HeartbeatAck = 0x5,
    Data = 0x6,
    Ack = 0x7,
    Close = 0x8,
    GoAway = 0x9,
    Config = 0xA,
}

impl FrameType {
    fn from_nibble(t: u8) -> Result<FrameType, Error> {
        use FrameType::*;
        Ok(match t {
            0x1 => Hello,
            0x2 => Welcome,
            0x3 => Reject,
            0x4 => Heartbeat,
            0x5 => HeartbeatAck,
            0x6 => Data,
            0x7 => Ack,
            0x8 => Close,
            0x9 => GoAway,
            0xA => Config,
            other => return Err(Error::UnknownFrameType(other)),
        })
    }

    /// The frame type's name in upper case, as the spec writes it.
    pub fn name(self) -> &'static str {
        use FrameType::*;
        match self {
            Hello => "HELLO",
            Welcome => "WELCOME",
            Reject => "REJECT",
            Heartbeat => "HEARTBEAT",
            HeartbeatAck => "HEARTBEAT_ACK",
            Data => "DATA",
            Ack => "ACK",
            Close => "CLOSE",
            GoAway => "GOAWAY",
            Config => "CONFIG",
        }
    }
}

/// A decoded 16-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub frame_type: FrameType,
    pub payload_len: u16,
    pub session_id: u32,
    pub seq: u32,
}

impl Header {
    /// Parses and validates a header. `src` must hold at least [`HEADER_LEN`] bytes.
    pub fn parse(src: &[u8], max_payload: usize) -> Result<Header, Error> {
        let mut b = &src[..HEADER_LEN];
        let magic = b.get_u32();
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let version = b.get_u8();
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let flags = b.get_u8();
        if flags & 0xF0 != 0 {
            return Err(Error::ReservedFlags(flags));
        }
        let frame_type = FrameType::from_nibble(flags & 0x0F)?;
        let payload_len = b.get_u16();
        if payload_len as usize > max_payload {
            return Err(Error::FrameTooLarge {
                len: payload_len as usize,
                limit: max_payload,
            });
        }
        Ok(Header {
            frame_type,
            payload_len,
            session_id: b.get_u32(),
            seq: b.get_u32(),
        })
    }
}

/// How the two sides exchange heartbeats.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum HeartbeatMode {
    /// The client sends heartbeats; the server answers each with HEARTBEAT_ACK.
    OneWay,
    /// Both sides send heartbeats on their own schedule and answer the other's.
    TwoWay,
}

impl HeartbeatMode {
    fn to_u8(self) -> u8 {
        match self {
            HeartbeatMode::OneWay => 1,
            HeartbeatMode::TwoWay => 2,
        }
    }
    fn from_u8(v: u8, frame: &'static str) -> Result<HeartbeatMode, Error> {
        match v {
            1 => Ok(HeartbeatMode::OneWay),
            2 => Ok(HeartbeatMode::TwoWay),
            _ => Err(Error::Malformed {
                frame,
                what: "heartbeat mode not 1 or 2",
            }),
        }
    }
}

/// Heartbeat parameters as negotiated in the handshake or changed by CONFIG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatParams {
    /// Heartbeat interval η in milliseconds (at least 1).
    pub interval_ms: u32,
    /// Consecutive missed beats before the peer is suspected (at least 1).
    pub miss_threshold: u8,
}

/// A resume request inside HELLO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub token: [u8; TOKEN_LEN],
    /// Highest DATA sequence number the client has received from the server.
    pub last_received: u32,
}

/// HELLO: the client opens or resumes a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub client_id: String,
    pub credential: Bytes,
    /// What the client would like; `None` lets the server choose.
    pub requested: Option<HeartbeatParams>,
    pub mode: Option<HeartbeatMode>,
    pub resume: Option<Resume>,
}

/// WELCOME: the server accepts a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub token: [u8; TOKEN_LEN],
    pub params: HeartbeatParams,
    pub mode: HeartbeatMode,
    pub resumed: bool,
    /// Highest DATA sequence number the server has received from the client.
    pub last_received: u32,
    /// DATA frames the server will accept beyond `last_received`.
    pub window: u32,
    /// The largest payload the server accepts.
    pub max_payload: u16,
}

/// The optional body of HEARTBEAT and HEARTBEAT_ACK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatInfo {
    /// Sender's clock in microseconds, meaningful only to the sender.
    pub timestamp_us: Option<u64>,
    /// Sender's CPU and memory load in per-mille, for the structured heartbeat log.
    pub load: Option<Load>,
}

/// Load figures a heartbeat may carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    pub cpu_permille: u16,
    pub mem_permille: u16,
}

/// DATA: one application message on a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub channel: u16,
    pub priority: u8,
    pub payload: Bytes,
}

/// CLOSE, GOAWAY and REJECT all carry a code and a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    pub code: ErrorCode,
    pub reason: String,
}

/// GOAWAY: the connection is going away but the session may be resumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoAway {
    pub code: ErrorCode,
    /// Milliseconds the client should wait before reconnecting.
    pub retry_after_ms: u32,
    pub reason: String,
}

/// A frame's type-specific part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Hello(Hello),
    Welcome(Welcome),
    Reject(Close),
    Heartbeat(HeartbeatInfo),
    HeartbeatAck(HeartbeatInfo),
    Data(Data),
    /// Cumulative acknowledgement (in the header's seq) and the receive window.
    Ack {
        window: u32,
    },
    Close(Close),
    GoAway(GoAway),
    Config(HeartbeatParams),
}

impl Body {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Body::Hello(_) => FrameType::Hello,
            Body::Welcome(_) => FrameType::Welcome,
            Body::Reject(_) => FrameType::Reject,
            Body::Heartbeat(_) => FrameType::Heartbeat,
            Body::HeartbeatAck(_) => FrameType::HeartbeatAck,
            Body::Data(_) => FrameType::Data,
            Body::Ack { .. } => FrameType::Ack,
            Body::Close(_) => FrameType::Close,
            Body::GoAway(_) => FrameType::GoAway,
            Body::Config(_) => FrameType::Config,
        }
    }
}

/// A whole frame: the header fields that matter to the receiver, and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub session_id: u32,
    pub seq: u32,
    pub body: Body,
}

impl Frame {
    pub fn new(session_id: u32, seq: u32, body: Body) -> Frame {
        Frame {
            session_id,
            seq,
            body,
        }
    }

    /// The empty heartbeat: 16 bytes on the wire.
    pub fn heartbeat(session_id: u32, seq: u32) -> Frame {
        Frame::new(session_id, seq, Body::Heartbeat(HeartbeatInfo::default()))
    }

    pub fn frame_type(&self) -> FrameType {
        self.body.frame_type()
    }

    /// Bytes of payload this frame encodes to.
    pub fn payload_len(&self) -> usize {
        match &self.body {
            Body::Hello(h) => {
                1 + reason_len(&h.client_id)
                    + 2
                    + h.credential.len()
                    + 4
                    + 1
                    + 1
                    + 1
                    + if h.resume.is_some() { TOKEN_LEN + 4 } else { 0 }
            }
            Body::Welcome(_) => TOKEN_LEN + 4 + 1 + 1 + 1 + 4 + 4 + 2,
            Body::Reject(c) | Body::Close(c) => 2 + 1 + reason_len(&c.reason),
            Body::Heartbeat(i) | Body::HeartbeatAck(i) => heartbeat_info_len(i),
            Body::Data(d) => DATA_OVERHEAD + d.payload.len(),
            Body::Ack { .. } => 4,
            Body::GoAway(g) => 2 + 4 + 1 + reason_len(&g.reason),
            Body::Config(_) => 5,
        }
    }

    /// Bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Appends the frame's bytes to `dst`.
    ///
    /// Fails only if the payload does not fit the 16-bit length field (a DATA payload or a
    /// credential over 64 KiB); nothing is written then. Reasons and client ids longer than 255
    /// bytes are cut at a character boundary.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), Error> {
        let len = self.payload_len();
        if len > MAX_PAYLOAD_LEN {
            return Err(Error::FrameTooLarge {
                len,
                limit: MAX_PAYLOAD_LEN,
            });
        }
        dst.reserve(HEADER_LEN + len);
        // The header in one piece: one copy into the buffer instead of six.
        let mut head = [0u8; HEADER_LEN];
        head[..4].copy_from_slice(&MAGIC.to_be_bytes());
        head[4] = VERSION;
        head[5] = self.frame_type() as u8;
        head[6..8].copy_from_slice(&(len as u16).to_be_bytes());
        head[8..12].copy_from_slice(&self.session_id.to_be_bytes());
        head[12..].copy_from_slice(&self.seq.to_be_bytes());
        dst.put_slice(&head);
        match &self.body {
            Body::Hello(h) => {
                put_str(dst, &h.client_id);
                dst.put_u16(h.credential.len() as u16);
                dst.put_slice(&h.credential);
                let p = h.requested.unwrap_or(HeartbeatParams {
                    interval_ms: 0,
                    miss_threshold: 0,
                });
                dst.put_u32(p.interval_ms);
                dst.put_u8(p.miss_threshold);
                dst.put_u8(h.mode.map_or(0, HeartbeatMode::to_u8));
                match &h.resume {
                    None => dst.put_u8(0),
                    Some(r) => {
                        dst.put_u8(1);
                        dst.put_slice(&r.token);
                        dst.put_u32(r.last_received);
                    }
                }
            }
            Body::Welcome(w) => {
                dst.put_slice(&w.token);
                dst.put_u32(w.params.interval_ms);
                dst.put_u8(w.params.miss_threshold);
                dst.put_u8(w.mode.to_u8());
                dst.put_u8(w.resumed as u8);
                dst.put_u32(w.last_received);
                dst.put_u32(w.window);
                dst.put_u16(w.max_payload);
            }
            Body::Reject(c) | Body::Close(c) => {
                dst.put_u16(c.code.to_u16());
                put_str(dst, &c.reason);
            }
            Body::Heartbeat(i) | Body::HeartbeatAck(i) => {
                // Load travels only after a timestamp; without one, the timestamp is 0.
                if i.timestamp_us.is_some() || i.load.is_some() {
                    dst.put_u64(i.timestamp_us.unwrap_or(0));
                }
                if let Some(l) = i.load {
                    dst.put_u16(l.cpu_permille);
                    dst.put_u16(l.mem_permille);
                }
            }
            Body::Data(d) => {
                dst.put_u16(d.channel);
                dst.put_u8(d.priority);
                dst.put_slice(&d.payload);
            }
            Body::Ack { window } => dst.put_u32(*window),
            Body::GoAway(g) => {
                dst.put_u16(g.code.to_u16());
                dst.put_u32(g.retry_after_ms);
                put_str(dst, &g.reason);
            }
            Body::Config(p) => {
                dst.put_u32(p.interval_ms);
                dst.put_u8(p.miss_threshold);
            }
        }
        Ok(())
    }

    /// The frame's bytes in a fresh buffer.
    pub fn to_bytes(&self) -> Result<Bytes, Error> {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b)?;
        Ok(b.freeze())
    }

    /// Parses a payload whose header has already been validated.
    pub fn from_parts(header: &Header, payload: Bytes) -> Result<Frame, Error> {
        let body = parse_body(header.frame_type, payload)?;
        Ok(Frame {
            session_id: header.session_id,
            seq: header.seq,
            body,
        })
    }
}

/// Length of `s` once cut to 255 bytes on a character boundary, as [`put_str`] writes it.
fn reason_len(s: &str) -> usize {
    truncated(s).len()
}

fn truncated(s: &str) -> &str {
    if s.len() <= 255 {
        return s;
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_str(dst: &mut BytesMut, s: &str) {
    let s = truncated(s);
    dst.put_u8(s.len() as u8);
    dst.put_slice(s.as_bytes());
}

fn heartbeat_info_len(i: &HeartbeatInfo) -> usize {
    match (i.timestamp_us, i.load) {
        (None, None) => 0,
        (Some(_), None) => 8,
        (_, Some(_)) => 12,
    }
}

/// A bounds-checked reader over a payload that reports which frame and field ran short.
struct Reader {
    buf: Bytes,
    frame: &'static str,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), Error> {
        if self.buf.remaining() < n {
            return Err(Error::Malformed {
                frame: self.frame,
                what,
            });
        }
        Ok(())
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, Error> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }
    fn token(&mut self) -> Result<[u8; TOKEN_LEN], Error> {
        self.need(TOKEN_LEN, "resume token cut short")?;
        let mut t = [0u8; TOKEN_LEN];
        self.buf.copy_to_slice(&mut t);
        Ok(t)
    }
    fn string(&mut self, what: &'static str) -> Result<String, Error> {
        let n = self.u8(what)? as usize;
        let b = self.bytes(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed {
            frame: self.frame,
            what: "text is not utf-8",
        })
    }
    fn finish(self) -> Result<(), Error> {
        if self.buf.has_remaining() {
            return Err(Error::Malformed {
                frame: self.frame,
                what: "trailing bytes",
            });
        }
        Ok(())
    }
}

fn params(
    interval_ms: u32,
    miss_threshold: u8,
    frame: &'static str,
) -> Result<HeartbeatParams, Error> {
    if interval_ms == 0 || miss_threshold == 0 {
        return Err(Error::Malformed {
            frame,
            what: "interval and miss threshold must be positive",
        });
    }
    Ok(HeartbeatParams {
        interval_ms,
        miss_threshold,
    })
}

fn parse_body(t: FrameType, payload: Bytes) -> Result<Body, Error> {
    let mut r = Reader {
        buf: payload,
        frame: t.name(),
    };
    let body = match t {
        FrameType::Hello => {
            let client_id = r.string("client id cut short")?;
            let n = r.u16("credential length missing")? as usize;
            let credential = r.bytes(n, "credential cut short")?;
            let interval_ms = r.u32("interval missing")?;
            let miss = r.u8("miss threshold missing")?;
            let requested = match (interval_ms, miss) {
                (0, 0) => None,
                (i, m) => Some(params(i, m, "HELLO")?),
            };
            let mode = match r.u8("mode missing")? {
                0 => None,
                m => Some(HeartbeatMode::from_u8(m, "HELLO")?),
            };
            let resume = match r.u8("resume flag missing")? {
                0 => None,
                1 => Some(Resume {
                    token: r.token()?,
                    last_received: r.u32("last received missing")?,
                }),
                _ => {
                    return Err(Error::Malformed {
                        frame: "HELLO",
                        what: "resume flag not 0 or 1",
                    });
                }
            };
            Body::Hello(Hello {
                client_id,
                credential,
                requested,
                mode,
                resume,
            })
        }
        FrameType::Welcome => {
            let token = r.token()?;
            let interval_ms = r.u32("interval missing")?;
            let miss = r.u8("miss threshold missing")?;
            let params = params(interval_ms, miss, "WELCOME")?;
            let mode = HeartbeatMode::from_u8(r.u8("mode missing")?, "WELCOME")?;
            let resumed = match r.u8("resumed flag missing")? {
                0 => false,
                1 => true,
                _ => {
                    return Err(Error::Malformed {
                        frame: "WELCOME",
                        what: "resumed flag not 0 or 1",
                    });
                }
            };
            let last_received = r.u32("last received missing")?;
            let window = r.u32("window missing")?;
            let max_payload = r.u16("max payload missing")?;
            if (max_payload as usize) < DATA_OVERHEAD {
                return Err(Error::Malformed {
                    frame: "WELCOME",
                    what: "max payload below 3",
                });
            }
            Body::Welcome(Welcome {
                token,
                params,
                mode,
                resumed,
                last_received,
                window,
                max_payload,
            })
        }
        FrameType::Reject | FrameType::Close => {
            let code = ErrorCode::from_u16(r.u16("code missing")?);
            let reason = r.string("reason cut short")?;
            let c = Close { code, reason };
            if t == FrameType::Reject {
                Body::Reject(c)
            } else {
                Body::Close(c)
            }
        }
        FrameType::Heartbeat | FrameType::HeartbeatAck => {
            let info = match r.buf.remaining() {
                0 => HeartbeatInfo::default(),
                8 => HeartbeatInfo {
                    timestamp_us: Some(r.u64("timestamp")?),
                    load: None,
                },
                12 => HeartbeatInfo {
                    timestamp_us: Some(r.u64("timestamp")?),
                    load: Some(Load {
                        cpu_permille: r.u16("cpu")?,
                        mem_permille: r.u16("mem")?,
                    }),
                },
                _ => {
                    return Err(Error::Malformed {
                        frame: t.name(),
                        what: "payload is not 0, 8 or 12 bytes",
                    });
                }
            };
            if t == FrameType::Heartbeat {
                Body::Heartbeat(info)
            } else {
                Body::HeartbeatAck(info)
            }
        }
        FrameType::Data => {
            let channel = r.u16("channel missing")?;
            let priority = r.u8("priority missing")?;
            let payload = std::mem::take(&mut r.buf);
            Body::Data(Data {
                channel,
                priority,
                payload,
            })
        }
        FrameType::Ack => Body::Ack {
            window: r.u32("window missing")?,
        },
        FrameType::GoAway => {
            let code = ErrorCode::from_u16(r.u16("code missing")?);
            let retry_after_ms = r.u32("retry-after missing")?;
            let reason = r.string("reason cut short")?;
            Body::GoAway(GoAway {
                code,
                retry_after_ms,
                reason,
            })
        }
        FrameType::Config => {
            let interval_ms = r.u32("interval missing")?;
            let miss = r.u8("miss threshold missing")?;
            Body::Config(params(interval_ms, miss, "CONFIG")?)
        }
    };
    r.finish()?;
    Ok(body)
}

/// A streaming frame decoder with a payload limit.
///
/// Feed it a buffer that the driver appends socket reads to; each call takes at most one frame
/// off the front. After an error the stream is unusable: the caller sends CLOSE with
/// [`Error::code`] and drops the connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_payload: usize,
    head: Option<Header>,
}

impl Decoder {
    /// A decoder that refuses payloads over `max_payload` bytes (at most 65,535).
    pub fn new(max_payload: usize) -> Decoder {
        Decoder {
            max_payload: max_payload.min(MAX_PAYLOAD_LEN),
            head: None,
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Takes one frame off the front of `src`, `Ok(None)` if more bytes are needed.
    ///
    /// Never asks for more than `16 + max_payload` bytes to be buffered: when a header is
    /// complete it reserves room for exactly its payload.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        // Asked once more after every read's last frame: settled here, without the call.
        if self.head.is_none() && src.len() < HEADER_LEN {
            return Ok(None);
        }
        self.decode_some(src)
    }

    fn decode_some(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        let head = match self.head {
            Some(h) => h,
            None => {
                if src.len() < HEADER_LEN {
                    return Ok(None);
                }
                let h = Header::parse(src, self.max_payload)?;
                src.advance(HEADER_LEN);
                self.head = Some(h);
                h
            }
        };
        let len = head.payload_len as usize;
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.head = None;
        // An empty payload (a plain heartbeat, its reply) takes nothing from the buffer: no
        // split, which would share the buffer and count references for nothing. The plain
        // heartbeat and its reply, most of what a connection carries, have nothing to parse.
        let payload = match (len, head.frame_type) {
            (0, FrameType::Heartbeat) => {
                return Ok(Some(Frame::heartbeat(head.session_id, head.seq)));
            }
            (0, FrameType::HeartbeatAck) => {
                let body = Body::HeartbeatAck(HeartbeatInfo::default());
                return Ok(Some(Frame::new(head.session_id, head.seq, body)));
            }
            (0, _) => Bytes::new(),
            _ => src.split_to(len).freeze(),
        };
        Frame::from_parts(&head, payload).map(Some)
    }

    /// Like [`Decoder::decode`], at end of stream: leftover bytes are a truncated frame.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        match self.decode(src)? {
            Some(f) => Ok(Some(f)),
            None if src.is_empty() && self.head.is_none() => Ok(None),
            None => Err(Error::Truncated {
                have: src.len() + if self.head.is_some() { HEADER_LEN } else { 0 },
            }),
        }
    }
}

/// Expands a 32-bit wire sequence number to the 64-bit value closest to `expected`.
///
/// Sequence numbers are 64-bit inside the core and travel as their low 32 bits; because a
/// window never spans 2^31 frames, the nearest candidate is always the right one.
pub fn expand_seq(wire: u32, expected: u64) -> u64 {
    const SPAN: u64 = 1 << 32;
    let candidate = (expected & !(SPAN - 1)) | wire as u64;
    if candidate + SPAN / 2 < expected && candidate.checked_add(SPAN).is_some() {
        candidate + SPAN
    } else if candidate > expected + SPAN / 2 && candidate >= SPAN {
        candidate - SPAN
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let bytes = f.to_bytes().unwrap();
        assert_eq!(bytes.len(), f.encoded_len());
        let mut buf = BytesMut::from(&bytes[..]);
        let got = Decoder::new(MAX_PAYLOAD_LEN)
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(got, f);
        assert!(buf.is_empty());
    }

    fn close(code: ErrorCode, reason: &str) -> Close {
        Close {
            code,
            reason: reason.into(),
        }
    }

    #[test]
    fn empty_heartbeat_is_sixteen_bytes() {
        let b = Frame::heartbeat(7, 42).to_bytes().unwrap();
        assert_eq!(
            &b[..],
            &[
                0x00, 0x4D, 0x43, 0x50, 1, 0x04, 0, 0, 0, 0, 0, 7, 0, 0, 0, 42
            ]
        );
    }

    #[test]
    fn every_frame_type_round_trips() {
        let token = [0xAB; TOKEN_LEN];
        let p = HeartbeatParams {
            interval_ms: 1000,
            miss_threshold: 3,
        };
        let frames = vec![
            Frame::new(
                0,
                0,
                Body::Hello(Hello {
                    client_id: "edge-7".into(),
                    credential: Bytes::from_static(b"secret"),
                    requested: Some(p),
                    mode: Some(HeartbeatMode::TwoWay),
                    resume: Some(Resume {
                        token,
                        last_received: 9,
                    }),
                }),
            ),
            Frame::new(
                0,
                0,
                Body::Hello(Hello {
                    client_id: String::new(),
                    credential: Bytes::new(),
                    requested: None,
                    mode: None,
                    resume: None,
                }),
            ),
            Frame::new(
                5,
                0,
                Body::Welcome(Welcome {
                    token,
                    params: p,
                    mode: HeartbeatMode::OneWay,
                    resumed: true,
                    last_received: 3,
                    window: 64,
                    max_payload: 16384,
                }),
            ),
            Frame::new(
                0,
                0,
                Body::Reject(close(ErrorCode::AuthFailed, "bad credential")),
            ),
            Frame::heartbeat(5, 1),
            Frame::new(
                5,
                2,
                Body::Heartbeat(HeartbeatInfo {
                    timestamp_us: Some(123),
                    load: None,
                }),
            ),
            Frame::new(
                5,
                2,
                Body::HeartbeatAck(HeartbeatInfo {
                    timestamp_us: Some(123),
                    load: Some(Load {
                        cpu_permille: 250,
                        mem_permille: 500,
                    }),
                }),
            ),
            Frame::new(
                5,
                9,
                Body::Data(Data {
                    channel: 3,
                    priority: 1,
                    payload: Bytes::from_static(b"{}"),
                }),
            ),
            Frame::new(5, 9, Body::Ack { window: 32 }),
            Frame::new(
                5,
                0,
                Body::Close(close(ErrorCode::Other(0x7777), "ünïcode")),
            ),
            Frame::new(
                5,
                0,
                Body::GoAway(GoAway {
                    code: ErrorCode::ShuttingDown,
                    retry_after_ms: 500,
                    reason: "restart".into(),
                }),
            ),
            Frame::new(
                5,
                0,
                Body::Config(HeartbeatParams {
                    interval_ms: 2000,
                    miss_threshold: 4,
                }),
            ),
        ];
        for f in frames {
            round_trip(f);
        }
    }

    #[test]
    fn long_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(200); // 400 bytes
        let f = Frame::new(1, 0, Body::Close(close(ErrorCode::Normal, &reason)));
        let mut buf = BytesMut::from(&f.to_bytes().unwrap()[..]);
        let got = Decoder::new(MAX_PAYLOAD_LEN)
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        let Body::Close(c) = got.body else {
            panic!("not a close")
        };
        assert_eq!(c.reason, "é".repeat(127));
    }

    #[test]
    fn header_split_across_reads_decodes() {
        let bytes = Frame::new(
            1,
            2,
            Body::Data(Data {
                channel: 1,
                priority: 0,
                payload: Bytes::from(vec![7u8; 100]),
            }),
        )
        .to_bytes()
        .unwrap();
        for split in 0..bytes.len() {
            let mut d = Decoder::new(1024);
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&bytes[..split]);
            assert_eq!(d.decode(&mut buf).unwrap(), None, "split at {split}");
            buf.extend_from_slice(&bytes[split..]);
            assert!(d.decode(&mut buf).unwrap().is_some(), "split at {split}");
        }
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        let good = Frame::heartbeat(1, 1).to_bytes().unwrap().to_vec();
        let cases: Vec<(usize, u8, ErrorCode)> = vec![
            (0, 0xFF, ErrorCode::BadMagic),
            (4, 2, ErrorCode::UnsupportedVersion),
            (5, 0x0F, ErrorCode::UnknownFrameType),
            (5, 0x00, ErrorCode::UnknownFrameType),
            (5, 0x14, ErrorCode::MalformedFrame),
            (6, 0xFF, ErrorCode::FrameTooLarge),
        ];
        for (at, byte, code) in cases {
            let mut b = good.clone();
            b[at] = byte;
            let err = Decoder::new(1024)
                .decode(&mut BytesMut::from(&b[..]))
                .unwrap_err();
            assert_eq!(err.code(), code, "byte {at} = {byte:#x}: {err}");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_its_payload_arrives() {
        let mut b = Frame::heartbeat(1, 1).to_bytes().unwrap().to_vec();
        b[6] = 0x40; // payload length 0x4000 = 16384
        let mut buf = BytesMut::from(&b[..]);
        let err = Decoder::new(1024).decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            Error::FrameTooLarge {
                len: 16384,
                limit: 1024
            }
        );
    }

    #[test]
    fn malformed_payloads_name_the_frame_and_field() {
        let mut b = BytesMut::new();
        Frame::new(1, 0, Body::Ack { window: 1 })
            .encode(&mut b)
            .unwrap();
        b[7] = 3; // claim 3 payload bytes, give 3 of the 4
        b.truncate(HEADER_LEN + 3);
        let err = Decoder::new(1024).decode(&mut b).unwrap_err();
        assert_eq!(err.to_string(), "malformed ACK payload: window missing");
    }

    #[test]
    fn a_welcome_with_a_max_payload_below_three_is_malformed() {
        let welcome = |max_payload| {
            Frame::new(
                5,
                0,
                Body::Welcome(Welcome {
                    token: [1; TOKEN_LEN],
                    params: HeartbeatParams {
                        interval_ms: 1000,
                        miss_threshold: 3,
                    },
                    mode: HeartbeatMode::OneWay,
                    resumed: false,
                    last_received: 0,
                    window: 8,
                    max_payload,
                }),
            )
        };
        for max_payload in 0..3 {
            let mut b = BytesMut::from(&welcome(max_payload).to_bytes().unwrap()[..]);
            let err = Decoder::new(1024).decode(&mut b).unwrap_err();
            assert_eq!(
                err.to_string(),
                "malformed WELCOME payload: max payload below 3"
            );
        }
        round_trip(welcome(3));
    }

    #[test]
    fn eof_inside_a_frame_is_truncation() {
        let bytes = Frame::heartbeat(1, 1).to_bytes().unwrap();
        let mut buf = BytesMut::from(&bytes[..10]);
        let err = Decoder::new(1024).decode_eof(&mut buf).unwrap_err();
        assert_eq!(err, Error::Truncated { have: 10 });
        assert_eq!(
            Decoder::new(1024).decode_eof(&mut BytesMut::new()).unwrap(),
            None
        );
    }

    #[test]
    fn wire_sequence_numbers_expand_across_the_wrap() {
        assert_eq!(expand_seq(5, 3), 5);
        assert_eq!(expand_seq(u32::MAX, 1 << 32), (1 << 32) - 1);
        assert_eq!(expand_seq(2, (1 << 32) - 3), (1 << 32) + 2);
        assert_eq!(expand_seq(0, 0), 0);
        assert_eq!(expand_seq(u32::MAX, 0), u32::MAX as u64);
    }
}
