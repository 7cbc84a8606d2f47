//! Feeds arbitrary bytes to the streaming decoder in arbitrary chunks.
//!
//! Input layout: byte 0 picks the payload limit, bytes 1..=8 are the chunk sizes (cycled; 0 is
//! an empty read), the rest is the stream. Checks what must hold for any peer: no panic, only
//! frames, "need more" or an error; nothing consumed that was not given; every decoded frame
//! re-encodes to the bytes it came from; never more than 16 + limit bytes of one frame waited on.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mcpsim::proto::Decoder;
use mcpsim::proto::frame::{HEADER_LEN, MAX_PAYLOAD_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&lim, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(rest.len().min(8));
    let limit = match lim {
        0..=63 => lim as usize,
        64..=127 => (lim as usize) << 6,
        _ => MAX_PAYLOAD_LEN,
    };
    let sizes: Vec<usize> = if sizes.iter().all(|&s| s == 0) {
        vec![1]
    } else {
        sizes.iter().map(|&s| s as usize).collect()
    };

    let mut d = Decoder::new(limit);
    let mut buf = BytesMut::new();
    let mut consumed = 0;
    let mut fed = 0;
    let mut rest = stream;
    'feed: for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => {
                    let len = f.encoded_len();
                    let again = f.to_bytes().expect("a decoded frame re-encodes");
                    assert_eq!(&again[..], &stream[consumed..consumed + len]);
                    consumed += len;
                }
                Ok(None) => {
                    assert!(fed - consumed < HEADER_LEN + limit);
                    break;
                }
                Err(_) => break 'feed,
            }
        }
    }
});
