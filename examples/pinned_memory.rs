//! How much memory a client that never reads and ignores the window can make a real server hold.
//!
//! Start the server, then point this at it:
//!
//! ```text
//! cargo build --release
//! target/release/mcpsim serve --echo --listen 127.0.0.1:7811 &
//! cargo run --release --example pinned_memory -- 127.0.0.1:7811 $! 4
//! ```
//!
//! Each of the clients (4 unless given) says HELLO, then writes DATA frames of 16 KiB as fast as
//! the server takes them, numbered in order, ignoring the window it was granted and reading
//! nothing, until the server closes the connection or 20 s pass. The server's resident memory
//! (`VmRSS` of the given process id) is sampled every 50 ms; the report gives the baseline, the
//! peak, the peak per client, and what is left two seconds after the clients are gone.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mcpsim::proto::frame::{Body, Data, Decoder, Frame, Hello, MAX_PAYLOAD_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest application payload the default `max_payload` (16 KiB a DATA frame) takes.
const PAYLOAD: usize = 16 * 1024 - mcpsim::proto::frame::DATA_OVERHEAD;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// One client that never reads: HELLO, WELCOME, then DATA until the server hangs up or 20 s
/// pass. Returns the frames written.
async fn non_reader(addr: String) -> u32 {
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    let mut out = BytesMut::new();
    let hello = Frame::new(
        0,
        0,
        Body::Hello(Hello {
            client_id: "non-reader".into(),
            credential: Bytes::new(),
            requested: None,
            mode: None,
            resume: None,
        }),
    );
    hello.encode(&mut out).expect("encodes");
    s.write_all(&out).await.expect("HELLO");
    // The WELCOME is the only thing ever read.
    let mut buf = BytesMut::new();
    let mut dec = Decoder::new(MAX_PAYLOAD_LEN);
    let id = loop {
        if let Ok(Some(f)) = dec.decode(&mut buf) {
            match f.body {
                Body::Welcome(_) => break f.session_id,
                other => panic!("expected WELCOME, got {other:?}"),
            }
        }
        if s.read_buf(&mut buf).await.expect("read") == 0 {
            panic!("closed before WELCOME");
        }
    };
    let start = Instant::now();
    let mut seq = 0u32;
    while start.elapsed() < Duration::from_secs(20) {
        seq += 1;
        out.clear();
        let data = Data {
            channel: 1,
            priority: 0,
            payload: Bytes::from(vec![0u8; PAYLOAD]),
        };
        Frame::new(id, seq, Body::Data(data))
            .encode(&mut out)
            .expect("encodes");
        match tokio::time::timeout(Duration::from_secs(2), s.write_all(&out)).await {
            Ok(Ok(())) => {}
            // The server hung up, or stopped taking bytes: both end the flood.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    seq
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, pid) = match (
        args.first(),
        args.get(1).and_then(|p| p.parse::<u32>().ok()),
    ) {
        (Some(a), Some(p)) => (a.clone(), p),
        _ => {
            eprintln!("usage: pinned_memory ADDR SERVER_PID [CLIENTS]");
            std::process::exit(2);
        }
    };
    let clients: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(4);
    let base = rss_kib(pid);
    let flood: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(non_reader(addr.clone())))
        .collect();
    let mut peak = base;
    while !flood.iter().all(|t| t.is_finished()) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut frames = 0;
    for t in flood {
        frames += t.await.expect("a client task");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{clients} non-reading clients wrote {frames} DATA frames of {} bytes",
        PAYLOAD
    );
    println!(
        "server RSS: baseline {:.1} MiB, peak {:.1} MiB (+{:.1} MiB, {:.1} MiB per client), \
         2 s after the clients are gone {:.1} MiB",
        mib(base),
        mib(peak),
        mib(peak - base),
        mib(peak - base) / clients as f64,
        mib(after)
    );
}
