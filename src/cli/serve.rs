//! `mcpsim serve`: an MCP server on TCP (optionally TLS) until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::CliError;
use super::client::TcpOptions;
use super::observe::{Telemetry, Webhook, init_logging, install_metrics};
use super::opts::{ObserveArgs, SecretArgs, Signals, StackArgs, duration, print_config};
use crate::config::StackConfig;
use crate::net::Listener;
use crate::net::conn::{Discard, Echo, Handler};
use crate::net::server::{Server, ServerOptions};
use crate::net::tls::{TlsListener, server_config};
use crate::proto::frame::MAX_PAYLOAD_LEN;
use crate::proto::session::Side;
use crate::units::Dur;

/// Arguments of `mcpsim serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7800")]
    pub listen: String,
    /// The stack configuration: what is granted to clients that do not ask for a heartbeat,
    /// the detector watching each client, health rules, timeouts, socket options.
    #[command(flatten)]
    pub stack: StackArgs,
    /// Connections served at once; more are refused with SERVER_BUSY (default: the
    /// configuration's `server.max_connections`, 50,000).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Sessions kept (attached or awaiting resume); more are refused with SERVER_BUSY
    /// (default: the configuration's `server.max_sessions`, 100,000).
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Largest DATA payload accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub max_frame: usize,
    /// Received messages a session may hold unread (the advertised window).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    /// How long a disconnected session is kept for its client to resume
    /// [session.resume_window, default 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub resume_window: Option<Duration>,
    /// On shutdown, how long connections get to flush their GOAWAY.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s")]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Send every DATA message back on its channel (default: discard).
    #[arg(long)]
    pub echo: bool,
    #[command(flatten)]
    pub observe: ObserveArgs,
    /// Serve TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The smallest HELLO payload there is (`docs/protocol.md` §13): a server whose max payload is
/// below it refuses every client.
const MIN_HELLO_PAYLOAD: usize = 10;

fn read_file(path: &PathBuf, flag: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::Run(format!("cannot read {flag} {}: {e}", path.display())))
}

impl ServeArgs {
    /// The stack configuration to run: defaults, `--config`, then flags.
    pub fn stack(&self) -> Result<StackConfig, CliError> {
        self.stack.effective(|c| {
            if let Some(w) = self.resume_window {
                c.session.resume_window = Dur(w);
            }
        })
    }

    fn options(&self, stack: &StackConfig) -> Result<ServerOptions, CliError> {
        if !(MIN_HELLO_PAYLOAD..=MAX_PAYLOAD_LEN).contains(&self.max_frame) {
            return Err(CliError::Usage(format!(
                "--max-frame {} is out of range ({MIN_HELLO_PAYLOAD} to {MAX_PAYLOAD_LEN}): \
                 below {MIN_HELLO_PAYLOAD} bytes no HELLO fits, and every client would be \
                 refused (docs/protocol.md §13)",
                self.max_frame
            )));
        }
        let base = stack.server_options();
        let mut opts = ServerOptions {
            name: "server".into(),
            max_connections: self.max_connections.unwrap_or(base.max_connections),
            shutdown_grace: self.shutdown_grace,
            ..base
        };
        let c = &mut opts.config;
        c.credential = self.secret.load()?;
        if let Some(n) = self.max_sessions {
            c.max_sessions = n;
        }
        c.session.max_payload = self.max_frame;
        c.session.window = self.window;
        Ok(opts)
    }
}

/// Accepts over `tokio::net` with TCP_NODELAY and the configuration's socket options, so
/// that both ends of a connection run the same `[tcp]` settings.
struct TunedListener {
    inner: tokio::net::TcpListener,
    options: TcpOptions,
}

impl Listener for TunedListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Stream, std::net::SocketAddr)> {
        let (s, addr) = Listener::accept(&mut self.inner).await?;
        self.options.apply(&s)?;
        Ok((s, addr))
    }
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let stack = args.stack()?;
    if args.stack.print_config {
        print_config("serve", &args.stack, &stack);
        return Ok(());
    }
    init_logging(args.observe.log_format);
    let mut signals = Signals::register()?;
    let opts = args.options(&stack)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_file(cert, "--tls-cert")?;
            let key_pem = read_file(key, "--tls-key")?;
            Some(server_config(&cert_pem, &key_pem).map_err(|e| {
                CliError::Run(format!(
                    "cannot use --tls-cert {} with --tls-key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?)
        }
        _ => None,
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
    let observer = Arc::new(Telemetry::new(Side::Server, webhook));
    let handler: Arc<dyn Handler> = if args.echo {
        Arc::new(Echo)
    } else {
        Arc::new(Discard)
    };
    let listener = crate::net::listen(&args.listen, opts.backlog)
        .await
        .map_err(|e| CliError::Run(format!("cannot listen on {} (--listen): {e}", args.listen)))?;
    let local = listener.local_addr()?;
    let listener = TunedListener {
        inner: listener,
        options: TcpOptions::of(&stack),
    };
    tracing::info!(
        addr = %local,
        tls = tls.is_some(),
        pairing = stack.pairing_name(),
        mode = ?stack.heartbeat.mode,
        grace_ms = stack.heartbeat.grace.0.as_millis() as u64,
        auth = opts.config.credential.is_some(),
        "listening on {local}"
    );

    let (stop_tx, stop) = watch::channel(false);
    let handshake_timeout = opts.handshake_timeout;
    let server = Server::new(opts, observer, handler);
    let serving = async {
        match tls {
            Some(config) => {
                let listener = TlsListener::new(listener, config, handshake_timeout);
                server.serve(listener, stop).await
            }
            None => server.serve(listener, stop).await,
        }
    };
    tokio::pin!(serving);
    tokio::select! {
        biased;
        r = &mut serving => return r.map_err(|e| CliError::Run(format!("server failed: {e}"))),
        sig = signals.recv() => {
            tracing::info!(signal = sig, "shutting down");
            let _ = stop_tx.send(true);
        }
    }
    serving
        .await
        .map_err(|e| CliError::Run(format!("server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}
