//! `mcpsim client`: one MCP client, or many for load (`--connections`), with periodic stats.
//!
//! Each connection is an independent [`client::run`] task named `NAME-i`, with its own jitter
//! seed from the operating system. With `--send-rate`, a sender task per connection offers
//! DATA messages at that rate, round robin over `--channels`; a message the client cannot take
//! (its queue is full while disconnected) is counted as dropped, not retried.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::CliError;
use super::observe::{Telemetry, Webhook, init_logging, install_metrics};
use super::opts::{ObserveArgs, SecretArgs, Signals, StackArgs, duration, print_config};
use crate::config::{self, StackConfig};
use crate::net::client::{self, ClientError, ClientOptions};
use crate::net::conn::{Handler, Outgoing};
use crate::net::tls::{CertificateProblem, TlsConnector, client_config};
use crate::net::{Connector, NetEvent, Observer};
use crate::proto::session::{Event, Message, Side};
use crate::units::Dur;

/// How reconnect delays grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackoffKind {
    Fixed,
    Exponential,
}

/// How reconnect delays are randomised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JitterKind {
    None,
    Full,
    Equal,
    Decorrelated,
}

/// Arguments of `mcpsim client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7800")]
    pub connect: String,
    /// Client id sent in HELLO; with --connections N the clients are NAME-0 .. NAME-(N-1).
    #[arg(long, default_value = "client")]
    pub name: String,
    /// The stack configuration: the heartbeat to ask for, the detector watching the server,
    /// health rules, reconnect policy, timeouts and socket options.
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub secret: SecretArgs,

    /// How reconnect delays grow [reconnect.backoff, default exponential].
    #[arg(long, value_enum)]
    pub backoff: Option<BackoffKind>,
    /// Growth factor of exponential backoff [reconnect.factor, default 2].
    #[arg(long, value_name = "F")]
    pub backoff_factor: Option<f64>,
    /// First reconnect delay [reconnect.base, default 100ms].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub backoff_base: Option<Duration>,
    /// Longest reconnect delay [reconnect.cap, default 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub backoff_cap: Option<Duration>,
    /// How reconnect delays are randomised [reconnect.jitter, default full].
    #[arg(long, value_enum)]
    pub jitter: Option<JitterKind>,
    /// Failed attempts in a row before giving up; 0 retries forever
    /// [reconnect.max_attempts, default 0].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Failures in a row that open the circuit breaker [reconnect.breaker_threshold, default 5].
    #[arg(long, value_name = "N")]
    pub breaker_threshold: Option<u32>,
    /// How long an open breaker refuses attempts, at most [reconnect.breaker_cooldown,
    /// default 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub breaker_cooldown: Option<Duration>,
    /// A connection attempt that takes longer fails [reconnect.connect_timeout, default 5s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub connect_timeout: Option<Duration>,
    /// Connect with TLS, trusting the certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Name checked against the server's certificate (default: the host of --connect).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,

    /// Independent client sessions to run in this process.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// DATA messages per second per connection (0: send none).
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    pub send_rate: f64,
    /// Channels the messages are spread over.
    #[arg(long, value_name = "C", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub channels: u16,
    /// Payload bytes per message.
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub message_size: usize,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub duration: Option<Duration>,
    /// How often to print a stats line on stderr.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s")]
    pub stats_interval: Duration,
    #[command(flatten)]
    pub observe: ObserveArgs,
}

/// Socket options for outgoing TCP connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpOptions {
    pub keepalive: Option<Duration>,
    pub user_timeout: Option<Duration>,
    pub send_buffer: Option<usize>,
}

impl TcpOptions {
    /// The socket options of a stack configuration's `[tcp]` table.
    pub fn of(stack: &StackConfig) -> TcpOptions {
        TcpOptions {
            keepalive: stack.tcp.keepalive.map(|d| d.0),
            user_timeout: stack.tcp.user_timeout.map(|d| d.0),
            send_buffer: stack
                .tcp
                .send_buffer
                .map(|b| usize::try_from(b.0).unwrap_or(usize::MAX)),
        }
    }

    /// Sets TCP_NODELAY and these options on a connected socket.
    pub fn apply(&self, s: &tokio::net::TcpStream) -> io::Result<()> {
        s.set_nodelay(true)?;
        let sock = socket2::SockRef::from(s);
        if let Some(idle) = self.keepalive {
            let ka = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(idle);
            sock.set_tcp_keepalive(&ka)?;
        }
        if let Some(t) = self.user_timeout {
            sock.set_tcp_user_timeout(Some(t))?;
        }
        if let Some(b) = self.send_buffer {
            sock.set_send_buffer_size(b)?;
        }
        Ok(())
    }
}

/// Connects over `tokio::net` with TCP_NODELAY and the given [`TcpOptions`].
#[derive(Clone, Debug)]
pub struct TunedTcpConnector {
    pub addr: String,
    pub options: TcpOptions,
}

impl Connector for TunedTcpConnector {
    type Stream = tokio::net::TcpStream;
    async fn connect(&self) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect(&self.addr).await?;
        self.options.apply(&s)?;
        Ok(s)
    }

    fn peer(&self) -> String {
        format!("server at {}", self.addr)
    }
}

impl ClientArgs {
    /// The stack configuration to run: defaults, `--config`, then flags.
    pub fn stack(&self) -> Result<StackConfig, CliError> {
        self.stack.effective(|c| {
            let r = &mut c.reconnect;
            if let Some(b) = self.backoff {
                r.backoff = match b {
                    BackoffKind::Fixed => config::BackoffKind::Fixed,
                    BackoffKind::Exponential => config::BackoffKind::Exponential,
                };
            }
            if let Some(f) = self.backoff_factor {
                r.factor = f;
            }
            if let Some(d) = self.backoff_base {
                r.base = Dur(d);
            }
            if let Some(d) = self.backoff_cap {
                r.cap = Dur(d);
            }
            if let Some(j) = self.jitter {
                r.jitter = match j {
                    JitterKind::None => config::JitterKind::None,
                    JitterKind::Full => config::JitterKind::Full,
                    JitterKind::Equal => config::JitterKind::Equal,
                    JitterKind::Decorrelated => config::JitterKind::Decorrelated,
                };
            }
            if let Some(n) = self.max_attempts {
                r.max_attempts = n;
            }
            if let Some(n) = self.breaker_threshold {
                r.breaker_threshold = n;
            }
            if let Some(d) = self.breaker_cooldown {
                r.breaker_cooldown = Dur(d);
            }
            if let Some(d) = self.connect_timeout {
                r.connect_timeout = Dur(d);
            }
        })
    }

    fn node(&self, i: u32) -> String {
        if self.connections == 1 {
            self.name.clone()
        } else {
            format!("{}-{i}", self.name)
        }
    }
}

/// Counters behind the stats line.
#[derive(Default)]
struct Stats {
    connected: Mutex<BTreeSet<String>>,
    rtts: Mutex<Vec<Duration>>,
    sent: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    suspicions: AtomicU64,
}

impl Stats {
    /// One line: connections up, RTT over the interval, totals since the start.
    fn line(&self, total: u32) -> String {
        let connected = self
            .connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let mut rtts = std::mem::take(&mut *self.rtts.lock().unwrap_or_else(|e| e.into_inner()));
        rtts.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let rtt = if rtts.is_empty() {
            "rtt_ms=none".to_string()
        } else {
            let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
            format!(
                "rtt_ms p50={:.3} p99={:.3} max={:.3} (n={})",
                ms(at(0.5)),
                ms(at(0.99)),
                ms(rtts[rtts.len() - 1]),
                rtts.len()
            )
        };
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "stats: connected={connected}/{total} {rtt} sent={} received={} dropped={} reconnects={} suspicions={}",
            n(&self.sent),
            n(&self.received),
            n(&self.dropped),
            n(&self.reconnects),
            n(&self.suspicions),
        )
    }
}

/// Feeds [`Stats`] and passes every event on.
struct StatsObserver {
    stats: Arc<Stats>,
    inner: Arc<dyn Observer>,
}

impl Observer for StatsObserver {
    fn observe(&self, node: &str, side: Side, session_id: u32, event: &NetEvent) {
        let s = &self.stats;
        match event {
            NetEvent::Session(Event::Established { .. }) => {
                s.connected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node.to_string());
            }
            NetEvent::Disconnected { .. } => {
                s.connected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(node);
            }
            NetEvent::Session(Event::Rtt { rtt, .. }) => {
                let mut rtts = s.rtts.lock().unwrap_or_else(|e| e.into_inner());
                // Bounded: a very long interval with many connections keeps a sample.
                if rtts.len() < 1_000_000 {
                    rtts.push(*rtt);
                }
            }
            NetEvent::Session(Event::PeerSuspected { .. }) => {
                s.suspicions.fetch_add(1, Ordering::Relaxed);
            }
            NetEvent::ReconnectIn { .. } => {
                s.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.inner.observe(node, side, session_id, event);
    }
}

/// Counts received messages and drops them.
struct Count(Arc<Stats>);

impl Handler for Count {
    fn on_message(&self, _: u32, _: Message) -> Option<Outgoing> {
        self.0.received.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Offers messages at `rate` per second until `stop` or the client goes away.
async fn send_loop(
    tx: mpsc::Sender<Outgoing>,
    rate: f64,
    channels: u16,
    payload: Bytes,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let m = Outgoing {
            channel: (n % u64::from(channels)) as u16,
            priority: 0,
            payload: payload.clone(),
        };
        n += 1;
        match tx.try_send(m) {
            Ok(()) => stats.sent.fetch_add(1, Ordering::Relaxed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        };
    }
}

type Clients = JoinSet<(String, Result<(), ClientError>)>;

struct Launch {
    opts: ClientOptions,
    observer: Arc<dyn Observer>,
    stats: Arc<Stats>,
    stop: watch::Receiver<bool>,
}

fn launch<C: Connector + Clone>(connector: C, args: &ClientArgs, l: Launch) -> Clients {
    let mut set = JoinSet::new();
    let payload = Bytes::from(vec![b'm'; args.message_size]);
    for i in 0..args.connections {
        let name = args.node(i);
        let opts = ClientOptions {
            name: name.clone(),
            seed: rand::random(),
            ..l.opts.clone()
        };
        let mut cfg = opts.session.clone();
        cfg.client_id = name.clone();
        let opts = ClientOptions {
            session: cfg,
            ..opts
        };
        let outgoing = if args.send_rate > 0.0 {
            let (tx, rx) = mpsc::channel(1024);
            let sender = send_loop(
                tx,
                args.send_rate,
                args.channels,
                payload.clone(),
                l.stats.clone(),
                l.stop.clone(),
            );
            // Sender tasks end with their client; they report as unnamed successes.
            set.spawn(async move {
                sender.await;
                (String::new(), Ok(()))
            });
            Some(rx)
        } else {
            None
        };
        let fut = client::run(
            connector.clone(),
            opts,
            l.observer.clone(),
            Arc::new(Count(l.stats.clone())),
            outgoing,
            l.stop.clone(),
        );
        set.spawn(async move { (name, fut.await) });
    }
    set
}

fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

pub async fn run(args: ClientArgs) -> Result<(), CliError> {
    let stack = args.stack()?;
    if args.stack.print_config {
        print_config("client", &args.stack, &stack);
        return Ok(());
    }
    init_logging(args.observe.log_format);
    let mut signals = Signals::register()?;
    if !args.send_rate.is_finite() || args.send_rate < 0.0 || args.send_rate > 1_000_000.0 {
        return Err(CliError::Usage(format!(
            "--send-rate {} is out of range (0 to 1000000)",
            args.send_rate
        )));
    }
    if args.stats_interval.is_zero() {
        return Err(CliError::Usage(
            "--stats-interval must be above zero".into(),
        ));
    }
    let credential = args.secret.load()?;
    let mut opts = ClientOptions {
        name: args.name.clone(),
        ..stack
            .client_options()
            .map_err(|e| CliError::Usage(e.to_string()))?
    };
    opts.session.credential = credential.unwrap_or_default();
    if args.message_size > opts.session.session.max_payload {
        return Err(CliError::Usage(format!(
            "--message-size {} is over the payload limit of {}",
            args.message_size, opts.session.session.max_payload
        )));
    }
    let tcp = TunedTcpConnector {
        addr: args.connect.clone(),
        options: TcpOptions::of(&stack),
    };
    let tls = match &args.tls_ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::Run(format!("cannot read --tls-ca {}: {e}", path.display()))
            })?;
            let config = client_config(&pem).map_err(|e| {
                CliError::Run(format!("cannot use --tls-ca {}: {e}", path.display()))
            })?;
            let name = args
                .tls_server_name
                .as_deref()
                .unwrap_or_else(|| host_of(&args.connect));
            Some(
                TlsConnector::new(tcp.clone(), config, name)
                    .map_err(|e| CliError::Usage(format!("{e} (--tls-server-name)")))?,
            )
        }
        None => None,
    };
    let webhook = args
        .observe
        .alert_webhook
        .as_deref()
        .map(Webhook::new)
        .transpose()?;
    if let Some(addr) = args.observe.metrics {
        install_metrics(addr)?;
    }
    let stats = Arc::new(Stats::default());
    let observer: Arc<dyn Observer> = Arc::new(StatsObserver {
        stats: stats.clone(),
        inner: Arc::new(Telemetry::new(Side::Client, webhook)),
    });
    let (stop_tx, stop) = watch::channel(false);
    let l = Launch {
        opts,
        observer,
        stats: stats.clone(),
        stop,
    };
    let mut clients = match tls {
        Some(tls) => launch(tls, &args, l),
        None => launch(tcp, &args, l),
    };

    let total = args.connections;
    let mut failure: Option<String> = None;
    let mut refused: Option<CertificateProblem> = None;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut ticker =
        tokio::time::interval_at(Instant::now() + args.stats_interval, args.stats_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            sig = signals.recv() => {
                tracing::info!(signal = sig, "shutting down");
                break;
            }
            _ = sleep_until_opt(deadline) => break,
            _ = ticker.tick() => eprintln!("{}", stats.line(total)),
            r = clients.join_next() => match r {
                // Every connection meets the same certificate: stop them all now.
                Some(Ok((_, Err(ClientError::Certificate(problem))))) => {
                    refused = Some(problem);
                    break;
                }
                Some(Ok((name, r))) => note(&mut failure, name, r),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "client task failed");
                    failure.get_or_insert(format!("client task failed: {e}"));
                }
                None => break,
            },
        }
    }
    eprintln!("{}", stats.line(total));
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(r) = clients.join_next().await {
            if let Ok((name, r)) = r {
                note(&mut failure, name, r);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("clients still running after 5 s; leaving them");
    }
    if let Some(problem) = refused {
        return Err(CliError::Usage(certificate_advice(&problem, &args)));
    }
    match failure {
        Some(f) => Err(CliError::Run(f)),
        None => Ok(()),
    }
}

/// What is wrong with the server's certificate, and what to do about it.
fn certificate_advice(problem: &CertificateProblem, args: &ClientArgs) -> String {
    let ca = args
        .tls_ca
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string());
    let make = "make a server certificate signed by a CA, e.g. with `mcpsim cert --out DIR NAME`, \
                and pass the CA to --tls-ca";
    let what = match problem {
        CertificateProblem::UnknownIssuer => format!(
            "the server's certificate is not signed by a CA in --tls-ca {ca}: pass the CA that \
             signed it (ca.pem from `mcpsim cert`), or {make}"
        ),
        CertificateProblem::CaUsedAsEndEntity => format!(
            "the server's certificate is a CA certificate used as an end entity \
             (`openssl req -x509` makes one by default): {make}"
        ),
        CertificateProblem::NameMismatch {
            expected,
            presented,
        } => format!(
            "the server's certificate is not valid for {expected}, only for {presented}: \
             connect by one of those names, set --tls-server-name, or make a certificate for \
             {expected} (`mcpsim cert --out DIR {expected}`)"
        ),
        CertificateProblem::Expired => {
            format!("the server's certificate has expired: {make}")
        }
        CertificateProblem::NotValidYet => format!(
            "the server's certificate is not valid yet: check this machine's clock, or {make}"
        ),
        CertificateProblem::Other(e) => {
            format!("the server's certificate cannot be verified ({e}): {make}")
        }
    };
    format!("tls: {what}")
}

/// Remembers the first client that ended with an error.
fn note(failure: &mut Option<String>, name: String, r: Result<(), ClientError>) {
    if let Err(e) = r {
        tracing::error!(node = name.as_str(), error = %e, "client stopped");
        failure.get_or_insert(format!("{name}: {e}"));
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_taken_from_the_address() {
        assert_eq!(host_of("127.0.0.1:7800"), "127.0.0.1");
        assert_eq!(host_of("example.test:1"), "example.test");
        assert_eq!(host_of("[::1]:7800"), "::1");
    }

    #[test]
    fn stats_line_reports_percentiles_and_counts() {
        let s = Stats::default();
        s.connected.lock().unwrap().insert("c-0".into());
        s.rtts
            .lock()
            .unwrap()
            .extend((1..=100).map(Duration::from_millis));
        s.sent.store(7, Ordering::Relaxed);
        let line = s.line(3);
        assert!(
            line.starts_with("stats: connected=1/3 rtt_ms p50="),
            "{line}"
        );
        assert!(line.contains("max=100.000 (n=100)"), "{line}");
        assert!(line.contains("sent=7 "), "{line}");
        // The RTT window restarts after each line.
        assert!(s.line(3).contains("rtt_ms=none"));
    }
}
