//! The kernel-reference workload (`scripts/kernel-tcp/`) run on the simulator's TCP model, with
//! the same files, so that `scripts/kernel-tcp/analyze.py` computes the same figures for both.
//!
//! A client heartbeats 16 bytes every η on a fixed schedule; the server echoes each one the
//! moment it arrives. The link is the simulator's (`sim::fault::Direction`: a constant one-way
//! delay, independent loss, a partition timeline) and the two kernels are `sim::tcp::TcpModel`,
//! exactly what `sim::net` runs under the real drivers. The timeline follows `measure.py`:
//! connect, t0, a warm-up of max(20 heartbeats, 3 s), a seeded phase U(0, η), the fault.
//!
//! ```sh
//! cargo run --release --example tcp_probe -- all --out target/tcp-probe
//! python3 scripts/kernel-tcp/analyze.py target/tcp-probe
//! ```
//!
//! `all` runs every case of `measure.py all --reps 8 --loss-minutes 15 --long-seconds 60`; one
//! measurement alone: `partition`, `loss`, `usertimeout`, `longpartition`, `baseline`.
//! Options: `--reps N` (8), `--loss-minutes M` (15), `--delay-us D` (130: the kernel's veth
//! pair measured a smoothed RTT of 0.25–0.26 ms), `--seed S` (1), `--exact-timers` (no timer
//! wheel lateness, to see what it accounts for). Each run also gets `tcp_notes.csv`: every
//! probe, resend and timeout of either kernel, to line up with `packets.csv`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcpsim::sim::fault::{
    Direction, Latency, Loss, LossProcess, Path as LinkPath, TcpConfig, Timeline,
};
use mcpsim::sim::synthetic::{Purpose, stream};
use mcpsim::sim::tcp::{Output, TcpModel, Wire};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

struct Opts {
    what: String,
    out: PathBuf,
    reps: u32,
    loss_minutes: f64,
    delay: Duration,
    seed: u64,
    exact: bool,
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        what: String::new(),
        out: PathBuf::from("target/tcp-probe"),
        reps: 8,
        loss_minutes: 15.0,
        delay: Duration::from_micros(130),
        seed: 1,
        exact: false,
    };
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--out" => o.out = PathBuf::from(val("--out")?),
            "--reps" => o.reps = val("--reps")?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--loss-minutes" => {
                o.loss_minutes = val("--loss-minutes")?
                    .parse()
                    .map_err(|e| format!("--loss-minutes: {e}"))?
            }
            "--delay-us" => {
                o.delay = Duration::from_micros(
                    val("--delay-us")?
                        .parse()
                        .map_err(|e| format!("--delay-us: {e}"))?,
                )
            }
            "--seed" => o.seed = val("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--exact-timers" => o.exact = true,
            w if !w.starts_with('-') && o.what.is_empty() => o.what = w.to_string(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.what.is_empty() {
        return Err(
            "say what to run: all, partition, loss, usertimeout, longpartition, baseline".into(),
        );
    }
    Ok(o)
}

/// One run's setting.
struct Case {
    measurement: &'static str,
    kind: &'static str,
    eta: f64,
    /// Partition or loss duration (s); the partition never heals for `usertimeout`.
    seconds: f64,
    loss_pct: f64,
    user_timeout_ms: Option<u64>,
    name: String,
}

/// The two directions of the link, with their own loss draws; loss applies only inside its
/// window (`lossy`), outside it the clean pair (with the same partition timeline) carries.
struct Link {
    dirs: [Direction; 2],
    clean: [Direction; 2],
    lossy: Option<(Duration, Duration)>,
    rngs: [ChaCha8Rng; 2],
    tcp: TcpConfig,
}

impl Wire for Link {
    fn carry(&mut self, from: usize, at: Duration, _payload: usize) -> Option<Duration> {
        let inside = self.lossy.is_some_and(|(a, b)| at >= a && at < b);
        let dirs = if inside {
            &mut self.dirs
        } else {
            &mut self.clean
        };
        let (a, b) = dirs.split_at_mut(1);
        let (fwd, rev) = if from == 0 {
            (&mut a[0], &mut b[0])
        } else {
            (&mut b[0], &mut a[0])
        };
        LinkPath::new(fwd, rev, &self.tcp).carry(at, &mut self.rngs[from])
    }
}

fn secs(x: f64) -> Duration {
    Duration::from_secs_f64(x)
}

fn run(o: &Opts, case: &Case, rep: u32) -> std::io::Result<()> {
    let seed = o.seed ^ (u64::from(rep) << 32) ^ fnv(&case.name);
    let mut rng = stream(seed, Purpose::Simulator, &[0]);
    let eta = case.eta;
    let connected = 1.0;
    let t0 = connected + 0.5;
    let warmup = (20.0 * eta).max(3.0);
    let fault_at = t0 + warmup + rng.random::<f64>() * eta;
    let (fault_end, end) = match case.kind {
        "none" => (fault_at, t0 + case.seconds),
        "partition" => {
            let heal = fault_at + case.seconds;
            let post = if case.measurement == "longpartition" {
                60.0
            } else {
                (case.seconds + 3.0).max(5.0)
            };
            (heal, heal + post)
        }
        "loss" => (fault_at + case.seconds, fault_at + case.seconds + 5.0),
        "usertimeout" => {
            let ut = case.user_timeout_ms.unwrap_or(0) as f64 / 1000.0;
            (f64::INFINITY, fault_at + ut + 6.0)
        }
        _ => unreachable!(),
    };
    let mut tcp = TcpConfig {
        user_timeout: case.user_timeout_ms.map(Duration::from_millis),
        ..TcpConfig::default()
    };
    if o.exact {
        tcp.timer_wheel = false;
    }
    let outage = match case.kind {
        "partition" | "usertimeout" => Timeline::new([secs(fault_at)..secs(fault_end.min(1e9))]),
        _ => Timeline::empty(),
    };
    let loss = |k: u64| -> LossProcess {
        let l = if case.kind == "loss" {
            Loss::Independent {
                p: case.loss_pct / 100.0,
            }
        } else {
            Loss::None
        };
        LossProcess::seeded(&l, seed, &[k]).expect("valid loss")
    };
    // The one-way delay varies a little (±40%), as a real stack's does: a perfectly periodic
    // packet would meet the timer wheel at the same phase every time.
    let latency = Latency::Uniform {
        min_ms: o.delay.as_secs_f64() * 600.0,
        max_ms: o.delay.as_secs_f64() * 1400.0,
    };
    let clean_dir =
        || Direction::new(latency, LossProcess::none(), outage.clone()).expect("valid direction");
    let dir = |k: u64| Direction::new(latency, loss(k), outage.clone()).expect("valid direction");
    let mut link = Link {
        dirs: [dir(1), dir(2)],
        clean: [clean_dir(), clean_dir()],
        lossy: (case.kind == "loss").then(|| (secs(fault_at), secs(fault_end))),
        rngs: [
            stream(seed, Purpose::Segments, &[1]),
            stream(seed, Purpose::Segments, &[2]),
        ],
        tcp,
    };

    // Both ends run on one kernel in the reference (two namespaces): one timer wheel.
    let wheel = rng.next_u64();
    let mut m = TcpModel::new(tcp, Some(o.delay * 2), [wheel, wheel]);
    m.keep_notes();
    let mut client = String::from("seq,send_time,echo_time\n");
    let mut server = String::from("seq,recv_time\n");
    let mut events = String::from("time,source,event,detail\n");
    let mut info = [String::from(INFO_HEADER), String::from(INFO_HEADER)];
    let _ = writeln!(events, "{connected:.6},client,connected,");
    let _ = writeln!(events, "{t0:.6},orch,t0,");
    let mut sent: Vec<f64> = Vec::new();
    let mut echoed: Vec<Option<f64>> = Vec::new();
    let mut next_hb = t0;
    let mut next_info = t0;
    let mut fault_logged = false;
    let mut heal_logged = false;
    let mut error = None;
    loop {
        let mut t = secs(next_hb).min(secs(next_info));
        if let Some(x) = m.poll_timeout() {
            t = t.min(x);
        }
        if !fault_logged && secs(fault_at) <= t && case.kind != "none" {
            fault_logged = true;
            let (b, e, d) = match case.kind {
                "loss" => (
                    "loss_begin",
                    "loss",
                    format!("{}", (case.loss_pct * 10.0).round()),
                ),
                _ => ("partition_begin", "partition", format!("{}", case.seconds)),
            };
            let _ = writeln!(events, "{fault_at:.6},orch,{b},");
            let _ = writeln!(events, "{fault_at:.6},orch,{e},{d}");
        }
        if fault_logged && !heal_logged && fault_end.is_finite() && secs(fault_end) <= t {
            heal_logged = true;
            let (b, e) = match case.kind {
                "loss" => ("loss_end_begin", "loss_end"),
                _ => ("heal_begin", "heal"),
            };
            let _ = writeln!(events, "{fault_end:.6},orch,{b},");
            let _ = writeln!(events, "{fault_end:.6},orch,{e},");
        }
        if t.as_secs_f64() > end || error.is_some() {
            break;
        }
        m.advance(t, &mut link);
        let outs: Vec<Output> = m.take_outputs().collect();
        for out in outs {
            match out {
                Output::Delivered {
                    from: 0, seq, at, ..
                } => {
                    let _ = writeln!(server, "{seq},{:.6}", at.as_secs_f64());
                    m.write(1, 16, at, &mut link);
                }
                Output::Delivered {
                    from: 1, seq, at, ..
                } => {
                    echoed[seq as usize] = Some(at.as_secs_f64());
                }
                Output::TimedOut { side: 0, at } => {
                    let _ = writeln!(events, "{:.6},client,error,ETIMEDOUT", at.as_secs_f64());
                    error = Some(at);
                }
                _ => {}
            }
        }
        if t == secs(next_info) {
            for (side, s) in info.iter_mut().enumerate() {
                let i = m.info(side);
                let _ = writeln!(
                    s,
                    "{:.6},1,0,0,0,{},{:.3},40.000,{:.3},0.000,{},0,0,0,10,{}",
                    next_info,
                    i.backoff,
                    i.rto.as_secs_f64() * 1000.0,
                    i.srtt.unwrap_or_default().as_secs_f64() * 1000.0,
                    i.unacked,
                    i.retransmits
                );
            }
            next_info += 0.1;
        }
        if t == secs(next_hb) && error.is_none() {
            m.write(0, 16, t, &mut link);
            sent.push(next_hb);
            echoed.push(None);
            next_hb = t0 + eta * sent.len() as f64;
        }
    }
    let _ = writeln!(events, "{end:.6},orch,t_end,");
    for (k, s) in sent.iter().enumerate() {
        match echoed[k] {
            Some(e) => {
                let _ = writeln!(client, "{k},{s:.6},{e:.6}");
            }
            None => {
                let _ = writeln!(client, "{k},{s:.6},");
            }
        }
    }
    let dir = o
        .out
        .join(case.measurement)
        .join(&case.name)
        .join(format!("rep{rep}"));
    fs::create_dir_all(&dir)?;
    let meta = format!(
        "{{\"kind\": \"{}\", \"measurement\": \"{}\", \"seconds\": {}, \"eta\": {}, \"loss_pct\": {}, \"permille\": {}, \"user_timeout_ms\": {}, \"fault_offset\": {}, \"seed\": {}, \"kernel\": \"mcpsim sim::tcp\", \"hz\": \"{}\"}}\n",
        case.kind,
        case.measurement,
        case.seconds,
        eta,
        case.loss_pct,
        (case.loss_pct * 10.0).round(),
        case.user_timeout_ms
            .map_or("null".to_string(), |u| u.to_string()),
        fault_at - t0,
        seed,
        if tcp.timer_wheel { tcp.hz } else { 0 }
    );
    fs::write(dir.join("meta.json"), meta)?;
    fs::write(dir.join("client.csv"), client)?;
    fs::write(dir.join("server.csv"), server)?;
    fs::write(dir.join("events.csv"), events)?;
    let mut notes = String::from("time,side,note\n");
    for n in m.take_notes() {
        let side = if n.side == 0 { "client" } else { "server" };
        let _ = writeln!(notes, "{:.6},{side},{}", n.at.as_secs_f64(), n.text);
    }
    fs::write(dir.join("tcp_notes.csv"), notes)?;
    fs::write(dir.join("tcpinfo_client.csv"), &info[0])?;
    fs::write(dir.join("tcpinfo_server.csv"), &info[1])?;
    Ok(())
}

const INFO_HEADER: &str = "time,state,ca_state,retransmits,probes,backoff,rto_ms,ato_ms,rtt_ms,rttvar_ms,unacked,sacked,lost,retrans,snd_cwnd,total_retrans\n";

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn cases(what: &str, loss_minutes: f64) -> Vec<Case> {
    let mut v = Vec::new();
    let eta_name = |eta: f64| if eta < 1.0 { "0.1s" } else { "1s" };
    for eta in [0.1, 1.0] {
        if what == "all" || what == "baseline" {
            v.push(Case {
                measurement: "baseline",
                kind: "none",
                eta,
                seconds: 120.0,
                loss_pct: 0.0,
                user_timeout_ms: None,
                name: format!("eta{}_nofault", eta_name(eta)),
            });
        }
        if what == "all" || what == "partition" {
            let cuts: &[f64] = if eta < 1.0 {
                &[0.5, 1.0, 3.0, 10.0]
            } else {
                &[1.0, 3.0, 10.0]
            };
            for &p in cuts {
                v.push(Case {
                    measurement: "partition",
                    kind: "partition",
                    eta,
                    seconds: p,
                    loss_pct: 0.0,
                    user_timeout_ms: None,
                    name: format!("eta{}_part{}s", eta_name(eta), p),
                });
            }
        }
        if what == "all" || what == "loss" {
            for pct in [1.0, 10.0, 20.0] {
                v.push(Case {
                    measurement: "loss",
                    kind: "loss",
                    eta,
                    seconds: loss_minutes * 60.0,
                    loss_pct: pct,
                    user_timeout_ms: None,
                    name: format!("eta{}_loss{}pct", eta_name(eta), pct),
                });
            }
        }
        if what == "all" || what == "usertimeout" {
            for ut in [3000, 5000] {
                v.push(Case {
                    measurement: "usertimeout",
                    kind: "usertimeout",
                    eta,
                    seconds: 0.0,
                    loss_pct: 0.0,
                    user_timeout_ms: Some(ut),
                    name: format!("eta{}_ut{ut}ms", eta_name(eta)),
                });
            }
        }
    }
    if what == "all" || what == "longpartition" {
        v.push(Case {
            measurement: "longpartition",
            kind: "partition",
            eta: 1.0,
            seconds: 60.0,
            loss_pct: 0.0,
            user_timeout_ms: None,
            name: "eta1s_part60s".into(),
        });
    }
    v
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tcp_probe: {e}");
            std::process::exit(2);
        }
    };
    let all = cases(&o.what, o.loss_minutes);
    if all.is_empty() {
        eprintln!("tcp_probe: nothing to run for {:?}", o.what);
        std::process::exit(2);
    }
    for case in &all {
        let reps = match case.kind {
            "loss" | "none" => 1,
            _ if case.measurement == "longpartition" => 3,
            _ => o.reps,
        };
        for rep in 0..reps {
            if let Err(e) = run(&o, case, rep) {
                eprintln!("tcp_probe: {}: {e}", case.name);
                std::process::exit(1);
            }
        }
    }
    let _ = fs::write(
        o.out.join("system.json"),
        format!(
            "{{\"kernel\": \"mcpsim sim::tcp\", \"hz\": \"{}\", \"delay_us\": {}}}\n",
            if o.exact { 0 } else { 250 },
            o.delay.as_micros()
        ),
    );
    println!("wrote {}", Path::new(&o.out).display());
}
