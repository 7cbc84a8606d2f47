//! TLS (rustls, ring provider) around any [`Listener`] or [`Connector`].
//!
//! [`TlsListener`] keeps the [`Listener`] contract (one stream per `accept`) without letting a
//! slow or hostile handshake hold up anyone else: a background task accepts TCP connections and
//! runs each handshake in its own task, under a timeout and a bound on handshakes in flight;
//! finished handshakes queue on a channel that `accept` reads. A failed handshake is logged
//! and dropped; it never reaches the server loop.
//!
//! [`TlsConnector`] runs the client handshake over whatever stream its inner connector opens,
//! so TCP options set by the inner connector apply underneath TLS.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{Connector, Listener};

/// Handshakes running at once; connections beyond this wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// Finished handshakes waiting for the server loop to take them.
const READY_QUEUE: usize = 64;

fn invalid(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("bad certificate", e))?;
    if certs.is_empty() {
        return Err(invalid("bad certificate", "no certificate in PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("bad private key", e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("certificate and key do not fit", e))?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts the certificates in `ca_pem` and no others.
pub fn client_config(ca_pem: &[u8]) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| invalid("bad CA certificate", e))?;
        roots
            .add(cert)
            .map_err(|e| invalid("bad CA certificate", e))?;
    }
    if roots.is_empty() {
        return Err(invalid("bad CA certificate", "no certificate in PEM"));
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why a client refused the server's certificate.
///
/// Permanent: the next attempt meets the same certificate, so a client stops instead of
/// retrying (a transient failure, a refused or reset connection, is retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    #[error("not signed by a trusted CA")]
    UnknownIssuer,
    /// The certificate has the CA flag set, as `openssl req -x509` makes by default.
    #[error("a CA certificate used as an end entity")]
    CaUsedAsEndEntity,
    #[error("not valid for {expected} (valid for {presented})")]
    NameMismatch { expected: String, presented: String },
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotValidYet,
    #[error("{0}")]
    Other(String),
}

/// The certificate problem behind a failed client handshake, if that is why it failed.
pub fn certificate_problem(e: &io::Error) -> Option<CertificateProblem> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e.get_ref()?.downcast_ref::<rustls::Error>()? else {
        return None;
    };
    Some(match c {
        // A bad signature is what a trusted CA of the same name as the real issuer gives (two
        // runs of `mcpsim cert`, say): either way the certificate's signer is not trusted.
        C::UnknownIssuer | C::BadSignature => CertificateProblem::UnknownIssuer,
        C::Expired | C::ExpiredContext { .. } => CertificateProblem::Expired,
        C::NotValidYet | C::NotValidYetContext { .. } => CertificateProblem::NotValidYet,
        C::NotValidForName => CertificateProblem::NameMismatch {
            expected: "the server name".into(),
            presented: "other names".into(),
        },
        C::NotValidForNameContext {
            expected,
            presented,
        } => CertificateProblem::NameMismatch {
            expected: match expected {
                ServerName::DnsName(d) => d.as_ref().to_string(),
                ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
                other => format!("{other:?}"),
            },
            presented: if presented.is_empty() {
                "no names".into()
            } else {
                presented
                    .iter()
                    .map(|n| bare_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        },
        // webpki's own error, which rustls passes on only as text.
        C::Other(o) if o.to_string() == "CaUsedAsEndEntity" => {
            CertificateProblem::CaUsedAsEndEntity
        }
        other => CertificateProblem::Other(other.to_string()),
    })
}

/// `DnsName("a.test")` and `IpAddress(10.0.0.1)`, as webpki shows them, without the wrapping.
fn bare_name(n: &str) -> &str {
    for (open, close) in [("DnsName(\"", "\")"), ("IpAddress(", ")")] {
        if let Some(inner) = n.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            return inner;
        }
    }
    n
}

type Ready<S> = io::Result<(tokio_rustls::server::TlsStream<S>, SocketAddr)>;

/// Accepts on an inner listener and hands out connections that completed a TLS handshake.
pub struct TlsListener<S> {
    ready: mpsc::Receiver<Ready<S>>,
    task: JoinHandle<()>,
}

impl<S: super::Stream> TlsListener<S> {
    /// Starts accepting on `inner` at once. Must be called within a tokio runtime.
    pub fn new<L: Listener<Stream = S>>(
        inner: L,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> TlsListener<S> {
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(accept_loop(inner, acceptor, handshake_timeout, tx));
        TlsListener { ready, task }
    }
}

impl<S> Drop for TlsListener<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop<L: Listener>(
    mut inner: L,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    tx: mpsc::Sender<Ready<L::Stream>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            biased;
            _ = tx.closed() => return,
            r = inner.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // The server loop logs it and backs off; stop if nobody listens any more.
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
            drop(permit);
            match r {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok((tls, peer))).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "tls handshake failed"),
                Err(_) => tracing::info!(%peer, "tls handshake timed out"),
            }
        });
    }
}

impl<S: super::Stream> Listener for TlsListener<S> {
    type Stream = tokio_rustls::server::TlsStream<S>;
    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr)> {
        match self.ready.recv().await {
            Some(r) => r,
            None => Err(io::Error::other("tls accept loop ended")),
        }
    }
}

/// Opens a connection with the inner connector, then runs a TLS client handshake on it.
#[derive(Clone)]
pub struct TlsConnector<C> {
    inner: C,
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl<C: Connector> TlsConnector<C> {
    /// `server_name` is checked against the server's certificate: a DNS name or an IP address.
    pub fn new(
        inner: C,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> io::Result<TlsConnector<C>> {
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| invalid(&format!("bad server name {server_name:?}"), e))?;
        Ok(TlsConnector {
            inner,
            connector: tokio_rustls::TlsConnector::from(config),
            server_name,
        })
    }
}

impl<C: Connector> Connector for TlsConnector<C> {
    type Stream = tokio_rustls::client::TlsStream<C::Stream>;
    async fn connect(&self) -> io::Result<Self::Stream> {
        let stream = self.inner.connect().await?;
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
    }

    fn peer(&self) -> String {
        self.inner.peer()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::watch;

    use super::*;
    use crate::net::client::{self, ClientOptions};
    use crate::net::conn::{Echo, Handler, Outgoing};
    use crate::net::server::{self, ServerOptions};
    use crate::net::{Quiet, TcpConnector};
    use crate::proto::Message;

    struct Collect(Mutex<Option<mpsc::UnboundedSender<Message>>>);

    impl Handler for Collect {
        fn on_message(&self, _: u32, m: Message) -> Option<Outgoing> {
            if let Some(tx) = &*self.0.lock().unwrap() {
                let _ = tx.send(m);
            }
            None
        }
    }

    fn self_signed() -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        (cert.pem(), signing_key.serialize_pem())
    }

    #[tokio::test]
    async fn tls_client_gets_echo_while_a_silent_peer_stalls_its_handshake() {
        let (cert, key) = self_signed();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let config = server_config(cert.as_bytes(), key.as_bytes()).unwrap();
        let listener = TlsListener::new(tcp, config, Duration::from_secs(5));
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(server::serve(
            listener,
            ServerOptions::default(),
            Arc::new(Quiet),
            Arc::new(Echo),
            stop.clone(),
        ));

        // A peer that opens TCP and never says a word must not hold up the real client.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();

        let connector = TlsConnector::new(
            TcpConnector {
                addr: addr.to_string(),
            },
            client_config(cert.as_bytes()).unwrap(),
            "localhost",
        )
        .unwrap();
        let (msg_tx, mut msgs) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(4);
        out_tx
            .send(Outgoing {
                channel: 7,
                priority: 0,
                payload: Bytes::from_static(b"over tls"),
            })
            .await
            .unwrap();
        let client = tokio::spawn(client::run(
            connector,
            ClientOptions::default(),
            Arc::new(Quiet),
            Arc::new(Collect(Mutex::new(Some(msg_tx)))),
            Some(out_rx),
            stop,
        ));

        let echoed = tokio::time::timeout(Duration::from_secs(5), msgs.recv())
            .await
            .expect("no echo within 5 s")
            .unwrap();
        assert_eq!(echoed.channel, 7);
        assert_eq!(&echoed.payload[..], b"over tls");

        stop_tx.send(true).unwrap();
        client.await.unwrap().unwrap();
        server.await.unwrap().unwrap();
        let _ = silent.shutdown().await;
    }

    #[tokio::test]
    async fn client_refuses_a_certificate_it_does_not_trust() {
        let (cert, key) = self_signed();
        let (other, _) = self_signed();
        let (mut listener, connector) = tls_pair(&cert, &key, &other, "localhost").await;
        assert!(connector.connect().await.is_err());
        // The failed handshake never reaches the server loop.
        let r = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(r.is_err());
    }

    /// A loopback TLS listener presenting `cert`, and a connector to it trusting `ca` and
    /// expecting `name`.
    async fn tls_pair(
        cert: &str,
        key: &str,
        ca: &str,
        name: &str,
    ) -> (
        TlsListener<tokio::net::TcpStream>,
        TlsConnector<TcpConnector>,
    ) {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener::new(
            tcp,
            server_config(cert.as_bytes(), key.as_bytes()).unwrap(),
            Duration::from_secs(5),
        );
        let connector = TlsConnector::new(
            TcpConnector {
                addr: addr.to_string(),
            },
            client_config(ca.as_bytes()).unwrap(),
            name,
        )
        .unwrap();
        (listener, connector)
    }

    /// The client's handshake error against a server presenting `cert`, trusting `ca`.
    async fn handshake_error(cert: &str, key: &str, ca: &str, name: &str) -> io::Error {
        let (_listener, connector) = tls_pair(cert, key, ca, name).await;
        connector.connect().await.expect_err("handshake succeeded")
    }

    #[tokio::test]
    async fn certificate_problems_are_told_apart() {
        let (cert, key) = self_signed();
        let (other, _) = self_signed();
        let e = handshake_error(&cert, &key, &other, "localhost").await;
        assert_eq!(
            certificate_problem(&e),
            Some(CertificateProblem::UnknownIssuer)
        );

        let e = handshake_error(&cert, &key, &cert, "elsewhere.test").await;
        assert_eq!(
            certificate_problem(&e),
            Some(CertificateProblem::NameMismatch {
                expected: "elsewhere.test".into(),
                presented: "localhost, 127.0.0.1".into(),
            })
        );

        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap().pem();
        let e = handshake_error(&ca, &ca_key.serialize_pem(), &ca, "localhost").await;
        assert_eq!(
            certificate_problem(&e),
            Some(CertificateProblem::CaUsedAsEndEntity)
        );

        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let old_key = rcgen::KeyPair::generate().unwrap();
        let old = params.self_signed(&old_key).unwrap().pem();
        let e = handshake_error(&old, &old_key.serialize_pem(), &old, "localhost").await;
        assert_eq!(certificate_problem(&e), Some(CertificateProblem::Expired));
    }

    #[test]
    fn a_connect_error_is_no_certificate_problem() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(certificate_problem(&e), None);
    }

    #[test]
    fn garbage_pem_is_an_error_not_a_panic() {
        assert!(server_config(b"nope", b"nope").is_err());
        assert!(client_config(b"").is_err());
    }
}
