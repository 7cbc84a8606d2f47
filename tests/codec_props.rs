//! Property tests for the frame codec: `Frame::encode` and the streaming `Decoder`.
//!
//! What is proved here (for every input proptest generates):
//!
//! - `encoded_frames_round_trip`: every frame type, with every optional part present or absent,
//!   decodes to the frame that was encoded, in exactly `encoded_len()` bytes.
//! - `long_text_is_cut_on_a_char_boundary`: client ids and reasons over 255 bytes come back as
//!   the longest prefix of at most 255 bytes that ends on a character boundary.
//! - `arbitrary_bytes_in_arbitrary_chunks_never_panic`: any byte stream, split anywhere, yields
//!   only frames, "need more" or a typed error, and the decoder never consumes bytes it has not
//!   been given.
//! - `decoder_never_buffers_more_than_the_limit`: see its doc comment; checked both against the
//!   buffer and against a counting global allocator.
//! - `concatenated_frames_split_anywhere_decode_in_order`: a stream of valid frames cut into
//!   arbitrary chunks decodes to the same frames in the same order, with nothing left over.
//! - `single_byte_header_corruption_is_caught_or_harmless`: changing any one header byte gives
//!   exactly the error that byte's field calls for, or the same frame with that field changed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use mcpsim::proto::frame::{
    Close, Data, GoAway, HEADER_LEN, HeartbeatInfo, HeartbeatMode, HeartbeatParams, Hello, Load,
    MAX_PAYLOAD_LEN, Resume, TOKEN_LEN, Welcome,
};
use mcpsim::proto::{Body, Decoder, Error, ErrorCode, Frame, Header};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// A counting allocator: records the largest single allocation made on this thread while armed.

/// Wraps the system allocator; while a thread has armed it, remembers the largest block that
/// thread asked for (fresh allocations and the new size of reallocations alike).
struct PeakAlloc;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping only touches
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: PeakAlloc = PeakAlloc;

/// Runs `f` and returns its result with the largest single allocation it made (0 if none).
fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, PEAK.with(Cell::get))
}

/// Fixed-size allocations `decode` may make whatever the limit: splitting the payload off a
/// buffer turns it into a shared one, which costs one 40-byte block in bytes 1.x.
const BOOKKEEPING: usize = 64;

// ---------------------------------------------------------------------------------------------
// Strategies.

/// Text of at most 63 characters, so at most 252 bytes: never cut by the encoder.
fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,63}", "[a-z0-9-]{0,40}"]
}

fn params() -> impl Strategy<Value = HeartbeatParams> {
    (1..=u32::MAX, 1..=u8::MAX).prop_map(|(interval_ms, miss_threshold)| HeartbeatParams {
        interval_ms,
        miss_threshold,
    })
}

fn mode() -> impl Strategy<Value = HeartbeatMode> {
    prop_oneof![Just(HeartbeatMode::OneWay), Just(HeartbeatMode::TwoWay)]
}

fn code() -> impl Strategy<Value = ErrorCode> {
    // Through the wire mapping, so named values are never spelled `Other(named)`.
    prop_oneof![0..0x20u16, any::<u16>()].prop_map(ErrorCode::from_u16)
}

fn bytes_up_to(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn heartbeat_info() -> impl Strategy<Value = HeartbeatInfo> {
    // A load only travels with a timestamp; the encoder drops a lone load.
    prop_oneof![
        Just(HeartbeatInfo::default()),
        any::<u64>().prop_map(|ts| HeartbeatInfo {
            timestamp_us: Some(ts),
            load: None
        }),
        (any::<u64>(), any::<u16>(), any::<u16>()).prop_map(|(ts, cpu, mem)| HeartbeatInfo {
            timestamp_us: Some(ts),
            load: Some(Load {
                cpu_permille: cpu,
                mem_permille: mem
            }),
        }),
    ]
}

fn close() -> impl Strategy<Value = Close> {
    (code(), short_text()).prop_map(|(code, reason)| Close { code, reason })
}

fn body() -> impl Strategy<Value = Body> {
    let hello = (
        short_text(),
        bytes_up_to(300),
        prop::option::of(params()),
        prop::option::of(mode()),
        prop::option::of((any::<[u8; TOKEN_LEN]>(), any::<u32>())),
    )
        .prop_map(|(client_id, credential, requested, mode, resume)| {
            Body::Hello(Hello {
                client_id,
                credential,
                requested,
                mode,
                resume: resume.map(|(token, last_received)| Resume {
                    token,
                    last_received,
                }),
            })
        });
    let welcome = (
        any::<[u8; TOKEN_LEN]>(),
        params(),
        mode(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        // A WELCOME offering a max payload below 3 bytes is malformed (§3.2): not a frame.
        3..=u16::MAX,
    )
        .prop_map(
            |(token, params, mode, resumed, last_received, window, max_payload)| {
                Body::Welcome(Welcome {
                    token,
                    params,
                    mode,
                    resumed,
                    last_received,
                    window,
                    max_payload,
                })
            },
        );
    // Mostly small DATA payloads, sometimes right up to the largest the length field allows.
    let data_payload = prop_oneof![
        8 => bytes_up_to(1024),
        1 => (MAX_PAYLOAD_LEN - 3 - 64..=MAX_PAYLOAD_LEN - 3)
            .prop_map(|n| Bytes::from(vec![0xA5; n])),
    ];
    let data =
        (any::<u16>(), any::<u8>(), data_payload).prop_map(|(channel, priority, payload)| {
            Body::Data(Data {
                channel,
                priority,
                payload,
            })
        });
    let goaway = (code(), any::<u32>(), short_text()).prop_map(|(code, retry_after_ms, reason)| {
        Body::GoAway(GoAway {
            code,
            retry_after_ms,
            reason,
        })
    });
    prop_oneof![
        hello,
        welcome,
        close().prop_map(Body::Reject),
        heartbeat_info().prop_map(Body::Heartbeat),
        heartbeat_info().prop_map(Body::HeartbeatAck),
        data,
        any::<u32>().prop_map(|window| Body::Ack { window }),
        close().prop_map(Body::Close),
        goaway,
        params().prop_map(Body::Config),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u32>(), any::<u32>(), body()).prop_map(|(s, q, b)| Frame::new(s, q, b))
}

/// Frames small enough to put many in one stream.
fn small_frame() -> impl Strategy<Value = Frame> {
    frame().prop_filter("keep streams small", |f| f.encoded_len() <= 2048)
}

/// Chunk sizes for splitting a stream; 0 means an empty read.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![3 => 0..=20usize, 1 => 0..=2000usize], 1..16)
}

/// Bytes that look like frames to the header check: valid headers with any length and type,
/// followed by any number of bytes, so the decoder spends time waiting on payloads.
fn frame_like_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = (
        1..=10u8,
        any::<u16>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..1200),
    )
        .prop_map(|(t, len, ids, tail)| {
            let mut b = vec![0x00, 0x4D, 0x43, 0x50, 1, t];
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&ids.to_be_bytes());
            b.extend_from_slice(&tail);
            b
        });
    prop::collection::vec(piece, 1..4).prop_map(|v| v.concat())
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![0..=64usize, 0..=4096usize, Just(MAX_PAYLOAD_LEN)]
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn encode(f: &Frame) -> Vec<u8> {
    let mut b = BytesMut::new();
    f.encode(&mut b)
        .expect("generated frames fit the length field");
    b.to_vec()
}

/// Cuts `input` into pieces whose sizes cycle through `sizes` (a 0 is an empty read).
fn chunks<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let sizes = if sizes.iter().all(|&n| n == 0) {
        &[1][..]
    } else {
        sizes
    };
    let mut out = Vec::new();
    let mut rest = input;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Feeds `input` in chunks, decoding after each; stops at the first error.
fn decode_chunked(
    input: &[u8],
    sizes: &[usize],
    limit: usize,
) -> (Vec<Frame>, Option<Error>, BytesMut) {
    let mut d = Decoder::new(limit);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for c in chunks(input, sizes) {
        buf.extend_from_slice(c);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), buf),
            }
        }
    }
    match d.decode_eof(&mut buf) {
        Ok(Some(f)) => frames.push(f),
        Ok(None) => {}
        Err(e) => return (frames, Some(e), buf),
    }
    (frames, None, buf)
}

/// The text the encoder puts on the wire for `s`: at most 255 bytes, cut on a char boundary.
fn cut(s: &str) -> &str {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encoded_frames_round_trip(f in frame()) {
        let bytes = encode(&f);
        prop_assert_eq!(bytes.len(), f.encoded_len());
        let mut buf = BytesMut::from(&bytes[..]);
        let got = Decoder::new(MAX_PAYLOAD_LEN).decode(&mut buf);
        prop_assert_eq!(got, Ok(Some(f)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary(
        client_id in ".{0,200}",
        reason in ".{0,200}",
        code in code(),
    ) {
        let hello = Frame::new(1, 0, Body::Hello(Hello {
            client_id: client_id.clone(),
            credential: Bytes::new(),
            requested: None,
            mode: None,
            resume: None,
        }));
        let close = Frame::new(1, 0, Body::Close(Close { code, reason: reason.clone() }));
        let mut buf = BytesMut::new();
        hello.encode(&mut buf).unwrap();
        close.encode(&mut buf).unwrap();
        let mut d = Decoder::new(MAX_PAYLOAD_LEN);
        let Some(Frame { body: Body::Hello(h), .. }) = d.decode(&mut buf).unwrap() else {
            panic!("not a hello")
        };
        prop_assert_eq!(h.client_id.as_str(), cut(&client_id));
        let Some(Frame { body: Body::Close(c), .. }) = d.decode(&mut buf).unwrap() else {
            panic!("not a close")
        };
        prop_assert_eq!(c.reason.as_str(), cut(&reason));
        // The cut is the longest one possible: at most three bytes of a character are lost.
        prop_assert!(c.reason.len() + 3 >= reason.len().min(255));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic(
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..4096),
            frame_like_stream(),
        ],
        sizes in chunk_sizes(),
        limit in limit(),
    ) {
        let (frames, err, rest) = decode_chunked(&input, &sizes, limit);
        let decoded: usize = frames.iter().map(Frame::encoded_len).sum();
        prop_assert!(decoded + rest.len() <= input.len());
        if let Some(e) = err {
            // Every decode error is a peer violation with a code worth sending in CLOSE.
            prop_assert!(
                matches!(
                    e.code(),
                    ErrorCode::BadMagic
                        | ErrorCode::UnsupportedVersion
                        | ErrorCode::FrameTooLarge
                        | ErrorCode::UnknownFrameType
                        | ErrorCode::MalformedFrame
                ),
                "unexpected error {e:?}"
            );
        } else {
            // No error: everything given was consumed as whole frames.
            prop_assert_eq!(decoded, input.len());
            prop_assert!(rest.is_empty());
        }
    }

    /// With a decoder limit `L`, fed any bytes in any chunking, the decoder never makes the
    /// caller hold more than `16 + L` bytes of one frame. Checked three ways after every call:
    ///
    /// 1. `Ok(None)` is only returned while the current frame (as told by an independent
    ///    `Header::parse` of the input) is incomplete, and then fewer than `16 + L` of its bytes
    ///    are buffered: the decoder never waits for more than it needs.
    /// 2. After `Ok(None)` with a header pending, `src.capacity()` covers the rest of that
    ///    payload (the reserve happened) and the payload is at most `L`.
    /// 3. Every single allocation made *inside* `decode` is smaller than `2 × (16 + L)` (or
    ///    than [`BOOKKEEPING`], for the fixed-size block BytesMut allocates when a frame's
    ///    payload is split off). The
    ///    harness hands `decode` a buffer with no spare capacity, so the only growth is the
    ///    decoder's own `reserve`; BytesMut grows a `Vec`, which rounds a request of `r` bytes
    ///    on a buffer of `c < r` bytes up to `max(r, 2c)`, hence the factor 2. A decoder that
    ///    reserved the claimed length before checking it against `L` would allocate up to
    ///    65,551 bytes here and fail for small `L`.
    #[test]
    fn decoder_never_buffers_more_than_the_limit(
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..4096),
            frame_like_stream(),
        ],
        sizes in chunk_sizes(),
        limit in limit(),
    ) {
        let bound = HEADER_LEN + limit;
        let mut d = Decoder::new(limit);
        let mut buf = BytesMut::new();
        let mut fed = 0usize; // bytes appended to the buffer so far
        let mut start = 0usize; // offset in `input` of the frame being decoded
        'feed: for c in chunks(&input, &sizes) {
            buf.extend_from_slice(c);
            fed += c.len();
            loop {
                // No spare capacity, so any allocation below is the decoder's doing.
                let mut src = BytesMut::from(&buf[..]);
                let (res, peak) = peak_alloc(|| d.decode(&mut src));
                prop_assert!(
                    peak < (2 * bound).max(BOOKKEEPING),
                    "allocated {peak} bytes with limit {limit}"
                );
                let pending = fed - start;
                let head = (pending >= HEADER_LEN)
                    .then(|| Header::parse(&input[start..start + HEADER_LEN], limit));
                match res {
                    Ok(Some(f)) => {
                        let h = head.expect("a frame needs a header").expect("and a valid one");
                        let len = HEADER_LEN + h.payload_len as usize;
                        prop_assert!(pending >= len);
                        prop_assert_eq!(f.session_id, h.session_id);
                        prop_assert_eq!(f.seq, h.seq);
                        start += len;
                    }
                    Ok(None) => {
                        prop_assert!(pending < bound, "waiting with {pending} bytes, limit {limit}");
                        match head {
                            None => prop_assert_eq!(src.len(), pending),
                            Some(Ok(h)) => {
                                let p = h.payload_len as usize;
                                prop_assert!(p <= limit);
                                prop_assert!(pending < HEADER_LEN + p);
                                prop_assert_eq!(src.len(), pending - HEADER_LEN);
                                prop_assert!(src.capacity() >= p, "reserved {} of {p}", src.capacity());
                            }
                            Some(Err(e)) => prop_assert!(false, "header error {e:?} not reported"),
                        }
                        buf = src;
                        break;
                    }
                    Err(e) => {
                        if let Some(Err(he)) = head {
                            prop_assert_eq!(e, he);
                        }
                        break 'feed;
                    }
                }
                buf = src;
            }
        }
    }

    #[test]
    fn concatenated_frames_split_anywhere_decode_in_order(
        frames in prop::collection::vec(small_frame(), 1..12),
        sizes in chunk_sizes(),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
        let (got, err, rest) = decode_chunked(&stream, &sizes, MAX_PAYLOAD_LEN);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, frames);
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn single_byte_header_corruption_is_caught_or_harmless(
        f in small_frame(),
        at in 0..HEADER_LEN,
        xor in 1..=u8::MAX,
        sizes in chunk_sizes(),
    ) {
        let limit = 4096;
        let good = encode(&f);
        let mut bad = good.clone();
        bad[at] ^= xor;
        let v = bad[at];
        let (frames, err, _) = decode_chunked(&bad, &sizes, limit);
        let first = frames.first().cloned().ok_or_else(|| err.clone().expect("no frame, no error"));
        match at {
            0..=3 => {
                let magic = u32::from_be_bytes(bad[..4].try_into().unwrap());
                prop_assert_eq!(first, Err(Error::BadMagic(magic)));
            }
            4 => prop_assert_eq!(first, Err(Error::UnsupportedVersion(v))),
            5 if v & 0xF0 != 0 => prop_assert_eq!(first, Err(Error::ReservedFlags(v))),
            5 if !(1..=10).contains(&v) => prop_assert_eq!(first, Err(Error::UnknownFrameType(v))),
            5 => match first {
                // Another type over the same payload: it parses as that type or is malformed.
                Ok(g) => prop_assert_eq!(g.frame_type() as u8, v),
                Err(e) => prop_assert_eq!(e.code(), ErrorCode::MalformedFrame),
            },
            6 | 7 => {
                let len = u16::from_be_bytes([bad[6], bad[7]]) as usize;
                if len > limit {
                    prop_assert_eq!(first, Err(Error::FrameTooLarge { len, limit }));
                } else if len > good.len() - HEADER_LEN {
                    // Waits for bytes that never come.
                    prop_assert_eq!(first, Err(Error::Truncated { have: good.len() }));
                } else {
                    // A shorter payload: parses or not; the bytes cut off are then read as
                    // the next header, which must not pass as a frame unnoticed.
                    match first {
                        Ok(_) => prop_assert!(err.is_some(), "cut-off bytes went unnoticed"),
                        Err(e) => prop_assert_eq!(e.code(), ErrorCode::MalformedFrame),
                    }
                }
            }
            8..=11 => {
                let session_id = u32::from_be_bytes(bad[8..12].try_into().unwrap());
                prop_assert_eq!(first, Ok(Frame { session_id, ..f.clone() }));
                prop_assert_eq!(err, None);
            }
            _ => {
                let seq = u32::from_be_bytes(bad[12..16].try_into().unwrap());
                prop_assert_eq!(first, Ok(Frame { seq, ..f.clone() }));
                prop_assert_eq!(err, None);
            }
        }
    }
}

/// A header claiming exactly `L` bytes, alone in a buffer with no spare room: the decoder asks
/// for room for that payload and no more (the allocation is `16 + L`, header included, because
/// BytesMut keeps the consumed header in the same block).
#[test]
fn pending_header_reserves_exactly_its_payload() {
    for limit in [17usize, 100, 1024, MAX_PAYLOAD_LEN] {
        let mut b = Frame::heartbeat(1, 1).to_bytes().unwrap().to_vec();
        b[6..8].copy_from_slice(&(limit as u16).to_be_bytes());
        let mut src = BytesMut::from(&b[..]);
        let mut d = Decoder::new(limit);
        let (res, peak) = peak_alloc(|| d.decode(&mut src));
        assert_eq!(res, Ok(None));
        assert_eq!(peak, HEADER_LEN + limit, "limit {limit}");
        assert!(src.is_empty() && src.capacity() >= limit);
    }
}

/// A header claiming more than `L`: refused without allocating anything.
#[test]
fn oversized_header_is_refused_without_allocating() {
    let mut b = Frame::heartbeat(1, 1).to_bytes().unwrap().to_vec();
    b[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut src = BytesMut::from(&b[..]);
    let mut d = Decoder::new(1024);
    let (res, peak) = peak_alloc(|| d.decode(&mut src));
    assert_eq!(
        res,
        Err(Error::FrameTooLarge {
            len: 65535,
            limit: 1024
        })
    );
    assert_eq!(peak, 0);
}

/// A payload that does not fit the length field is refused and nothing is written.
#[test]
fn oversized_payload_is_not_encoded() {
    let f = Frame::new(
        1,
        1,
        Body::Data(Data {
            channel: 0,
            priority: 0,
            payload: Bytes::from(vec![0; MAX_PAYLOAD_LEN - 2]),
        }),
    );
    let mut dst = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        f.encode(&mut dst),
        Err(Error::FrameTooLarge {
            len: MAX_PAYLOAD_LEN + 1,
            limit: MAX_PAYLOAD_LEN
        })
    );
    assert_eq!(&dst[..], b"keep");
}

/// A client id over 255 bytes whose 255th byte falls inside a character: the header's length
/// must count the bytes actually written, or the next frame's first bytes are read as the end
/// of this one and the stream falls out of step.
#[test]
fn long_client_id_cut_inside_a_char_keeps_the_stream_in_step() {
    let client_id = "é".repeat(200); // 400 bytes; a cut at 255 would split the 128th 'é'
    let hello = Frame::new(
        0,
        0,
        Body::Hello(Hello {
            client_id: client_id.clone(),
            credential: Bytes::new(),
            requested: None,
            mode: None,
            resume: None,
        }),
    );
    let mut buf = BytesMut::new();
    hello.encode(&mut buf).unwrap();
    assert_eq!(buf.len(), hello.encoded_len());
    Frame::heartbeat(0, 1).encode(&mut buf).unwrap();
    let mut d = Decoder::new(MAX_PAYLOAD_LEN);
    let Some(Frame {
        body: Body::Hello(h),
        ..
    }) = d.decode(&mut buf).unwrap()
    else {
        panic!("not a hello")
    };
    assert_eq!(h.client_id, "é".repeat(127));
    assert_eq!(d.decode(&mut buf).unwrap(), Some(Frame::heartbeat(0, 1)));
    assert!(buf.is_empty());
}
