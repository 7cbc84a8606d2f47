//! Frame codec throughput: empty HEARTBEAT frames (per-frame overhead) and DATA frames with a
//! 1 KiB payload (bytes per second).
//!
//! Decoding runs over a buffer holding many frames back to back, built outside the timed part,
//! so the figure is the decoder's per-frame cost and not the cost of filling the buffer.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mcpsim::proto::frame::{Data, MAX_PAYLOAD_LEN};
use mcpsim::proto::{Body, Decoder, Frame};

/// Frames per iteration.
const FRAMES: usize = 1024;

fn data_frame(seq: u32) -> Frame {
    Frame::new(
        7,
        seq,
        Body::Data(Data {
            channel: 1,
            priority: 0,
            payload: Bytes::from(vec![0x5A; 1024]),
        }),
    )
}

fn stream(frames: &[Frame]) -> Bytes {
    let mut b = BytesMut::new();
    for f in frames {
        f.encode(&mut b).unwrap();
    }
    b.freeze()
}

fn bench_encode(c: &mut Criterion, name: &str, frames: &[Frame], throughput: Throughput) {
    let mut g = c.benchmark_group(name);
    g.throughput(throughput);
    let mut dst = BytesMut::with_capacity(frames.iter().map(Frame::encoded_len).sum());
    g.bench_function("encode", |b| {
        b.iter(|| {
            dst.clear();
            for f in frames {
                f.encode(&mut dst).unwrap();
            }
            black_box(dst.len());
        })
    });
    g.finish();
}

fn bench_decode(c: &mut Criterion, name: &str, frames: &[Frame], throughput: Throughput) {
    let wire = stream(frames);
    let mut g = c.benchmark_group(name);
    g.throughput(throughput);
    g.bench_function("decode", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut src| {
                let mut d = Decoder::new(MAX_PAYLOAD_LEN);
                while let Some(f) = d.decode(&mut src).unwrap() {
                    black_box(f);
                }
                src
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn heartbeat(c: &mut Criterion) {
    let frames: Vec<Frame> = (0..FRAMES as u32).map(|q| Frame::heartbeat(7, q)).collect();
    bench_encode(c, "heartbeat", &frames, Throughput::Elements(FRAMES as u64));
    bench_decode(c, "heartbeat", &frames, Throughput::Elements(FRAMES as u64));
}

fn data_1k(c: &mut Criterion) {
    let frames: Vec<Frame> = (0..FRAMES as u32).map(data_frame).collect();
    let bytes = frames.iter().map(Frame::encoded_len).sum::<usize>() as u64;
    bench_encode(c, "data_1k", &frames, Throughput::Bytes(bytes));
    bench_decode(c, "data_1k", &frames, Throughput::Bytes(bytes));
}

criterion_group!(benches, heartbeat, data_1k);
criterion_main!(benches);
