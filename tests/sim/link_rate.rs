//! Bulk data through the simulated sockets over a link with a rate: the send buffer blocks the
//! writer until acknowledgements free room, and the reader gets every byte in order at the
//! pace of the link.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcpsim::net::{Connector, Listener};
use mcpsim::sim::fault::LinkRate;
use mcpsim::sim::links::{FaultLinks, NetworkSpec};
use mcpsim::sim::net::SimNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::endpoint_faults::secs;

const BULK: usize = 1_000_000;

/// When the client's `write_all` of 1 MB returned, and when the server had read the last byte
/// (having checked every byte), over 5 ms each way at 10 Mbit/s with a send buffer of
/// `send_buffer` bytes.
fn bulk(send_buffer: usize) -> (Duration, Duration) {
    let mut spec = NetworkSpec::constant(secs(0.005));
    spec.default.rate = Some(LinkRate {
        bits_per_s: 10_000_000,
        queue: 1000,
    });
    spec.tcp.send_buffer = send_buffer;
    let links = FaultLinks::new(spec, 1, secs(60.0)).unwrap();
    let net = SimNet::new(Box::new(links));
    net.add_host("server");
    net.add_host("clients");
    let mut sim = turmoil::Builder::new()
        .tick_duration(secs(0.001))
        .simulation_duration(secs(60.0))
        .build();
    let written = Arc::new(Mutex::new(None));
    let read = Arc::new(Mutex::new(None));
    let server_net = net.clone();
    let read_at = read.clone();
    sim.host("server", move || {
        let net = server_net.clone();
        let read_at = read_at.clone();
        async move {
            let mut listener = net.listen("server", 7800)?;
            let (mut stream, _) = listener.accept().await?;
            let mut got = 0usize;
            let mut buf = vec![0u8; 65536];
            while got < BULK {
                let n = stream.read(&mut buf).await?;
                assert!(n > 0, "end of stream after {got} bytes");
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, ((got + i) % 251) as u8, "byte {}", got + i);
                }
                got += n;
            }
            *read_at.lock().unwrap() = turmoil::sim_elapsed();
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let connector = net.connector("clients", "client-0", "server", 7800);
    let written_at = written.clone();
    sim.host("clients", move || {
        let connector = connector.clone();
        let written_at = written_at.clone();
        async move {
            tokio::time::sleep(secs(0.1)).await;
            let mut stream = connector.connect().await?;
            let start = turmoil::sim_elapsed().unwrap();
            let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
            stream.write_all(&data).await?;
            *written_at.lock().unwrap() = turmoil::sim_elapsed().map(|t| t - start);
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    while sim.elapsed() < secs(5.0) {
        net.set_time(sim.elapsed());
        sim.step().unwrap();
    }
    let written = written.lock().unwrap().expect("the write finished");
    let read = read.lock().unwrap().expect("the server read everything");
    // Connected at 0.1 s plus the handshake's round trip (10 ms).
    (written, read - secs(0.11))
}

#[test]
fn a_send_buffer_that_fills_blocks_the_writer_until_acknowledgements_free_room() {
    // 1 MB is 691 packets, 8.29 Mbit with headers: 0.829 s at 10 Mbit/s, plus the 5 ms delay
    // and slow start's first round trips. With a 64 KiB buffer the write returns only when the
    // last 64 KiB fit in it: at least (1 MB − 64 KiB) of wire time, about 0.77 s, after it began.
    let (written, read) = bulk(64 << 10);
    let serialization = 0.8287;
    let rest = (BULK - (64 << 10)) as f64 * 8.0 * 1500.0 / 1448.0 / 10e6;
    assert!(
        written.as_secs_f64() >= rest,
        "write returned after {written:?}"
    );
    assert!(written < read, "{written:?} {read:?}");
    let read = read.as_secs_f64();
    assert!(
        read >= serialization + 0.005 && read < serialization + 0.1,
        "read the megabyte in {read} s"
    );
    // With the default 4 MiB the whole megabyte fits: the write returns at once, and the
    // transfer takes as long.
    let (written, read4) = bulk(4 << 20);
    assert!(written < secs(0.002), "write returned after {written:?}");
    assert!(
        (read4.as_secs_f64() - read).abs() < 0.01,
        "{read4:?} vs {read} s"
    );
}

/// A 2 MB download from t = 10 s for session 0 over 10 ms each way, 1 s heartbeats (k = 3) on
/// both sessions, on a link of `rate` (none: infinitely fast) with `extra` TOML appended.
fn download(rate: Option<&str>, extra: &str) -> mcpsim::sim::runner::Scenario {
    let text = download_text(rate, extra);
    let plan = mcpsim::scenario::parse("download.toml", "download", &text).unwrap();
    plan.scenario(0)
}

/// The scenario text of [`download`].
fn download_text(rate: Option<&str>, extra: &str) -> String {
    let rate = rate.map_or(String::new(), |r| format!("rate = \"{r}\""));
    format!(
        "duration = \"40s\"\nseeds = 1\n[topology]\nsessions = 2\n\
         [grid]\ninterval = [\"1s\"]\nmiss_threshold = [3]\n\
         [network]\nlatency = \"10ms\"\n{rate}\n\
         [traffic]\n[[traffic.flow]]\nsessions = [0, 0]\ndirection = \"down\"\n\
         bulk = 2000000\nsize = 16000\nstart = \"10s\"\n{extra}"
    )
}

#[test]
fn a_bulk_download_on_a_slow_link_delays_the_heartbeats_behind_it_and_only_with_a_rate() {
    use mcpsim::sim::runner::run;
    // On an infinitely fast link every heartbeat round trip is the 20 ms of latency.
    let fast = run(&download(None, ""), 1).unwrap();
    assert_eq!(fast.client_heartbeats.rtt.max(), Some(20_000));
    // At 2 Mbit/s the 2 MB take at least 8.3 s of wire time, and the server's heartbeat replies
    // wait behind what is queued before them: round trips of a second and more.
    let slow = download(Some("2mbit"), "[network.tcp]\nsend_buffer = \"64KiB\"\n");
    let out = run(&slow, 1).unwrap();
    let rtt_max = out.client_heartbeats.rtt.max().unwrap();
    assert!(rtt_max > 1_000_000, "longest round trip {rtt_max} µs");
    let p50 = out.client_heartbeats.rtt.quantile(0.5).unwrap();
    assert!(p50 < 25_000, "most round trips stay near 20 ms: {p50} µs");
    let delivery = out.delivery.as_ref().expect("traffic");
    assert_eq!(delivery.fates.violations(), 0);
    assert_eq!(delivery.fates.delivered, delivery.fates.sent);
    // Same seed, same trace, byte for byte; and the tick only changes the cost.
    let again = run(&slow, 1).unwrap();
    assert_eq!(out.trace_text(), again.trace_text());
    let coarse = mcpsim::sim::runner::Scenario {
        tick: secs(0.01),
        ..slow
    };
    assert_eq!(out.trace_text(), run(&coarse, 1).unwrap().trace_text());
}

#[test]
fn an_upload_that_keeps_the_write_buffer_busy_longer_than_the_write_timeout_is_not_a_stalled_peer()
{
    use mcpsim::sim::runner::run;
    // 5 MB up at 2 Mbit/s is 21 s of wire time: the client's write buffer is never empty for
    // that long, but the socket takes bytes all the while. Only writes that make no progress
    // for the write timeout (10 s) are a peer that stopped reading.
    let text = "duration = \"60s\"\nseeds = 1\n[topology]\nsessions = 1\n\
         [grid]\ninterval = [\"1s\"]\nmiss_threshold = [30]\n\
         [network]\nlatency = \"10ms\"\nrate = \"2mbit\"\n\
         [network.tcp]\nsend_buffer = \"64KiB\"\n\
         [traffic]\n[[traffic.flow]]\ndirection = \"up\"\n\
         bulk = 5000000\nsize = 16000\nstart = \"5s\"\n";
    let plan = mcpsim::scenario::parse("upload.toml", "upload", text).unwrap();
    let out = run(&plan.scenario(0), 1).unwrap();
    let trace = out.trace_text();
    assert!(!trace.contains("peer stopped reading"), "{trace}");
    let d = out.delivery.expect("traffic");
    assert_eq!((d.fates.delivered, d.fates.violations()), (d.fates.sent, 0));
    assert!(d.fates.sent >= 312, "{} messages of 16 kB", d.fates.sent);
}

#[test]
fn a_short_link_queue_drops_packets_which_the_run_counts_and_tcp_resends() {
    use mcpsim::sim::runner::run;
    let roomy = run(&download(Some("2mbit"), ""), 1).unwrap();
    assert_eq!(roomy.queue_drops, 0);
    // Eight packets of queue cannot hold a congestion window's worth: tail drops.
    let text =
        download_text(Some("2mbit"), "").replace("rate = \"2mbit\"", "rate = \"2mbit\"\nqueue = 8");
    let plan = mcpsim::scenario::parse("download.toml", "download", &text).unwrap();
    let out = run(&plan.scenario(0), 1).unwrap();
    assert!(out.queue_drops > 0, "no drop with 8 packets of queue");
    let d = out.delivery.expect("traffic");
    assert_eq!((d.fates.delivered, d.fates.violations()), (d.fates.sent, 0));
}
