//! Keeps the hex examples in `docs/protocol.md` true.
//!
//! Every example block in the spec is introduced by a marker line `<!-- mcp-example: NAME -->`
//! followed by a ```` ```text ```` fence. Each line of the block is `hex bytes | annotation`.
//! For every example this test builds the frame with the public API, checks that its encoding
//! is byte for byte the block's bytes, and decodes the block's bytes back into the same frame.
//! Examples in the doc without a frame here, and frames here without an example in the doc,
//! fail the test too.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use mcpsim::proto::ErrorCode;
use mcpsim::proto::frame::{
    Body, Close, Data, Decoder, Frame, GoAway, HEADER_LEN, HeartbeatInfo, HeartbeatMode,
    HeartbeatParams, Hello, Load, MAX_PAYLOAD_LEN, Resume, Welcome,
};

const SPEC: &str = include_str!("../docs/protocol.md");
const MARKER: &str = "<!-- mcp-example:";

const SID: u32 = 123_456;
const TOKEN: [u8; 16] = [
    0x9f, 0x1c, 0x4e, 0x27, 0xb0, 0x55, 0xd3, 0x8a, 0x61, 0x0e, 0xf4, 0xc9, 0x72, 0x3b, 0xa8, 0x16,
];
const TIMESTAMP_US: u64 = 1_234_567_890;

/// The frames the spec shows, by example name.
fn expected_frames() -> Vec<(&'static str, Frame)> {
    let params = HeartbeatParams {
        interval_ms: 1000,
        miss_threshold: 3,
    };
    vec![
        ("heartbeat-empty", Frame::heartbeat(SID, 1)),
        (
            "heartbeat-timestamp",
            Frame::new(
                SID,
                2,
                Body::Heartbeat(HeartbeatInfo {
                    timestamp_us: Some(TIMESTAMP_US),
                    load: None,
                }),
            ),
        ),
        (
            "heartbeat-ack",
            Frame::new(
                SID,
                2,
                Body::HeartbeatAck(HeartbeatInfo {
                    timestamp_us: Some(TIMESTAMP_US),
                    load: Some(Load {
                        cpu_permille: 250,
                        mem_permille: 500,
                    }),
                }),
            ),
        ),
        (
            "hello-new",
            Frame::new(
                0,
                0,
                Body::Hello(Hello {
                    client_id: "edge-7".into(),
                    credential: Bytes::from_static(b"s3cret"),
                    requested: Some(params),
                    mode: Some(HeartbeatMode::OneWay),
                    resume: None,
                }),
            ),
        ),
        (
            "hello-resume",
            Frame::new(
                SID,
                0,
                Body::Hello(Hello {
                    client_id: "edge-7".into(),
                    credential: Bytes::from_static(b"s3cret"),
                    requested: None,
                    mode: None,
                    resume: Some(Resume {
                        token: TOKEN,
                        last_received: 41,
                    }),
                }),
            ),
        ),
        (
            "welcome",
            Frame::new(
                SID,
                0,
                Body::Welcome(Welcome {
                    token: TOKEN,
                    params,
                    mode: HeartbeatMode::OneWay,
                    resumed: false,
                    last_received: 0,
                    window: 256,
                    max_payload: 16_384,
                }),
            ),
        ),
        (
            "welcome-resumed",
            Frame::new(
                SID,
                0,
                Body::Welcome(Welcome {
                    token: TOKEN,
                    params,
                    mode: HeartbeatMode::OneWay,
                    resumed: true,
                    last_received: 17,
                    window: 256,
                    max_payload: 16_384,
                }),
            ),
        ),
        (
            "reject",
            Frame::new(
                0,
                0,
                Body::Reject(Close {
                    code: ErrorCode::AuthFailed,
                    reason: "bad credential".into(),
                }),
            ),
        ),
        (
            "data",
            Frame::new(
                SID,
                1,
                Body::Data(Data {
                    channel: 2,
                    priority: 0,
                    payload: Bytes::from_static(br#"{"temp":21.5}"#),
                }),
            ),
        ),
        ("ack", Frame::new(SID, 1, Body::Ack { window: 256 })),
        (
            "close",
            Frame::new(
                SID,
                0,
                Body::Close(Close {
                    code: ErrorCode::Normal,
                    reason: "bye".into(),
                }),
            ),
        ),
        (
            "goaway",
            Frame::new(
                SID,
                0,
                Body::GoAway(GoAway {
                    code: ErrorCode::ShuttingDown,
                    retry_after_ms: 2000,
                    reason: "restart".into(),
                }),
            ),
        ),
        (
            "config",
            Frame::new(
                SID,
                0,
                Body::Config(HeartbeatParams {
                    interval_ms: 2000,
                    miss_threshold: 4,
                }),
            ),
        ),
    ]
}

/// Every example block in the spec: name → bytes.
fn doc_examples() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut lines = SPEC.lines().enumerate();
    while let Some((no, line)) = lines.next() {
        let Some(rest) = line.trim().strip_prefix(MARKER) else {
            continue;
        };
        let name = rest
            .strip_suffix("-->")
            .unwrap_or_else(|| panic!("line {}: marker not closed with -->", no + 1))
            .trim()
            .to_string();
        let (fence_no, fence) = lines.next().expect("marker at end of file");
        assert_eq!(
            fence.trim(),
            "```text",
            "line {}: marker must be followed by ```text",
            fence_no + 1
        );
        let mut bytes = Vec::new();
        loop {
            let (no, line) = lines
                .next()
                .unwrap_or_else(|| panic!("example {name}: fence never closed"));
            if line.trim() == "```" {
                break;
            }
            let (hex, _annotation) = line
                .split_once('|')
                .unwrap_or_else(|| panic!("line {}: expected `hex bytes | annotation`", no + 1));
            for tok in hex.split_whitespace() {
                assert!(
                    tok.len() == 2 && tok.bytes().all(|b| b.is_ascii_hexdigit()),
                    "line {}: {tok:?} is not a two-digit hex byte",
                    no + 1
                );
                bytes.push(u8::from_str_radix(tok, 16).unwrap());
            }
        }
        assert!(!bytes.is_empty(), "example {name} is empty");
        assert!(
            out.insert(name.clone(), bytes).is_none(),
            "example {name} appears twice"
        );
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn doc_examples_match_the_encoder() {
    let doc = doc_examples();
    let frames = expected_frames();
    let mut failures = Vec::new();
    for (name, frame) in &frames {
        let Some(doc_bytes) = doc.get(*name) else {
            failures.push(format!(
                "{name}: no `{MARKER} {name} -->` block in docs/protocol.md"
            ));
            continue;
        };
        let encoded = frame.to_bytes().expect("example frame encodes");
        if encoded[..] != doc_bytes[..] {
            failures.push(format!(
                "{name}: doc and encoder differ\n  doc:     {}\n  encoder: {}",
                hex(doc_bytes),
                hex(&encoded)
            ));
        }
    }
    for name in doc.keys() {
        if !frames.iter().any(|(n, _)| n == name) {
            failures.push(format!(
                "{name}: example in the doc is not checked by this test"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn doc_examples_decode_to_the_same_frames() {
    let doc = doc_examples();
    for (name, frame) in expected_frames() {
        let bytes = &doc[name];
        let declared = u16::from_be_bytes([bytes[6], bytes[7]]) as usize;
        assert_eq!(
            HEADER_LEN + declared,
            bytes.len(),
            "{name}: length field vs bytes shown"
        );

        let mut buf = BytesMut::from(&bytes[..]);
        let got = Decoder::new(MAX_PAYLOAD_LEN)
            .decode_eof(&mut buf)
            .unwrap_or_else(|e| panic!("{name}: decode failed: {e}"))
            .unwrap_or_else(|| panic!("{name}: decoder wants more bytes"));
        assert_eq!(got, frame, "{name}: decoded frame");
        assert!(buf.is_empty(), "{name}: bytes left after the frame");

        // The default server limit from the spec accepts every example too.
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(
            Decoder::new(16_384).decode(&mut buf).unwrap(),
            Some(frame),
            "{name}"
        );
    }
}

#[test]
fn empty_heartbeat_is_sixteen_bytes() {
    assert_eq!(doc_examples()["heartbeat-empty"].len(), HEADER_LEN);
}
