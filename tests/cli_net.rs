//! `mcpsim serve` and `mcpsim client` as a person runs them: the built binary, loopback only,
//! every child killed when its test ends, every wait bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mcpsim");

/// A child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }
}

/// Starts `mcpsim serve` on a free loopback port and returns it with the address it reports.
fn serve(extra: &[&str]) -> (Proc, String, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stderr.take().unwrap());
    let proc = Proc(child);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("serve did not report its address within 5 s");
        if let Some((_, addr)) = line.split_once("listening on ") {
            let addr = addr.split_whitespace().next().unwrap().to_string();
            return (proc, addr, lines);
        }
    }
}

/// Forwards a child's stderr line by line, so reads can have a deadline.
fn lines_of(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs a command that must finish within `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let mut stderr = proc.0.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let status = proc
        .wait_for(limit)
        .unwrap_or_else(|| panic!("{cmd:?} still running after {limit:?}"));
    let mut stdout = Vec::new();
    if let Some(mut out) = proc.0.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    Output {
        status,
        stdout,
        stderr: reader.join().unwrap(),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn three_load_clients_connect_and_exit_cleanly() {
    let (_server, addr, _lines) = serve(&["--echo", "--heartbeat-interval", "200ms"]);
    let out = run_bounded(
        Command::new(BIN).args([
            "client",
            "--connect",
            &addr,
            "--connections",
            "3",
            "--send-rate",
            "20",
            "--channels",
            "2",
            "--duration",
            "3s",
            "--stats-interval",
            "1s",
        ]),
        Duration::from_secs(9),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let stats: Vec<&str> = stderr.lines().filter(|l| l.starts_with("stats:")).collect();
    assert!(
        stats.iter().any(|l| l.contains("connected=3/3")),
        "no stats line with 3 connected:\n{stderr}"
    );
    let last = stats.last().unwrap();
    assert!(!last.contains(" sent=0 "), "nothing sent: {last}");
    assert!(!last.contains(" received=0 "), "nothing echoed: {last}");
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let (mut server, addr, _lines) = serve(&["--shutdown-grace", "2s"]);
    // A connected client gets a GOAWAY; the server must not wait on it past the grace.
    let mut client = Proc(
        Command::new(BIN)
            .args(["client", "--connect", &addr, "--max-attempts", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    thread::sleep(Duration::from_millis(500));
    server.signal("-TERM");
    let status = server
        .wait_for(Duration::from_secs(4))
        .expect("serve still running 4 s after SIGTERM");
    assert!(status.success(), "serve exited with {status}");
    // The client keeps retrying; SIGINT ends it cleanly too.
    client.signal("-INT");
    let status = client
        .wait_for(Duration::from_secs(4))
        .expect("client still running 4 s after SIGINT");
    assert!(status.success(), "client exited with {status}");
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let (_server, addr, _lines) = serve(&["--metrics", &metrics, "--heartbeat-interval", "100ms"]);
    // A client heartbeating every 100 ms, so traffic counters move while it is connected.
    let _client = Proc(
        Command::new(BIN)
            .args([
                "client",
                "--connect",
                &addr,
                "--heartbeat-interval",
                "100ms",
                "--duration",
                "8s",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let got = TcpStream::connect(&metrics).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
            )?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match got {
            Ok(body) if body.contains("mcp_sessions") && heartbeats_received(&body) > 0 => {
                break body;
            }
            _ if Instant::now() > end => panic!("no live metrics from {metrics}: {got:?}"),
            _ => thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("# TYPE mcp_sessions gauge"), "{body}");
}

/// The server's `mcp_heartbeats_received_total`, 0 if absent.
fn heartbeats_received(body: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with("mcp_heartbeats_received_total{side=\"server\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn a_max_frame_no_hello_fits_under_is_refused_with_the_bound() {
    let out = run_bounded(
        Command::new(BIN).args(["serve", "--max-frame", "9", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(5),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--max-frame 9 is out of range (10 to 65535)"),
        "{stderr}"
    );
}

#[test]
fn bad_heartbeat_interval_names_the_flag() {
    let out = run_bounded(
        Command::new(BIN).args(["serve", "--heartbeat-interval", "xyz"]),
        Duration::from_secs(5),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--heartbeat-interval"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unreadable_secret_file_and_busy_address_are_clear_errors() {
    let out = run_bounded(
        Command::new(BIN).args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--secret-file",
            "/nonexistent/mcpsim-secret",
        ]),
        Duration::from_secs(5),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read secret file /nonexistent/mcpsim-secret"),
        "{stderr}"
    );

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_bounded(
        Command::new(BIN).args(["serve", "--listen", &addr]),
        Duration::from_secs(5),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn wrong_secret_is_refused_and_the_client_says_so() {
    let dir = std::env::temp_dir().join(format!("mcpsim-cli-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, "s3cret\n").unwrap();
    let (_server, addr, _lines) = serve(&["--secret-file", good.to_str().unwrap()]);

    // A client presenting `secret` for `run` (it gets the run plus 3 s to finish).
    let client = |secret: &str, run: u64| {
        run_bounded(
            Command::new(BIN)
                .args(["client", "--connect", &addr])
                .args(["--secret-env", "MCPSIM_TEST_SECRET"])
                .args(["--duration", &format!("{run}s")])
                .env("MCPSIM_TEST_SECRET", secret),
            Duration::from_secs(run + 3),
        )
    };
    let ok = client("s3cret", 1);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert!(stderr.contains("connected=1/1"), "{stderr}");

    let bad = client("wrong", 5);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{stderr}");
    assert!(stderr.contains("auth"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_client_process_is_noticed_by_the_server_within_k_intervals() {
    let (_server, addr, lines) = serve(&["--heartbeat-interval", "200ms", "--miss-threshold", "3"]);
    let client = Proc(
        Command::new(BIN)
            .args([
                "client",
                "--connect",
                &addr,
                "--heartbeat-interval",
                "200ms",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wait_line = |what: &str, limit: Duration| {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return Instant::now(),
                Ok(_) => {}
                Err(_) => panic!("server never logged {what:?} within {limit:?}"),
            }
        }
    };
    wait_line("session established", Duration::from_secs(5));
    let killed = Instant::now();
    client.signal("-KILL");
    // The dead process's kernel closes the socket, so the server need not even wait for k·η.
    let ended = wait_line("connection ended", Duration::from_secs(3));
    assert!(
        ended - killed < Duration::from_millis(600),
        "{:?}",
        ended - killed
    );
}

/// A directory of its own for a test's files.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpsim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for a line containing `what`, and returns it.
fn line_with(lines: &mpsc::Receiver<String>, what: &str, limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line with {what:?} within {limit:?}"),
        }
    }
}

#[test]
fn the_configuration_tune_emits_is_the_session_serve_and_client_negotiate() {
    let dir = scratch("emit");
    let scenario = dir.join("tiny.toml");
    std::fs::write(
        &scenario,
        r#"
duration = "10s"
[topology]
sessions = 2
[stack.heartbeat]
mode = "one-way"
grace = "50ms"
[grid]
interval = ["300ms"]
miss_threshold = [2]
detector = ["phi"]
[limits]
max_detection = "60s"
max_false_per_hour = 100000
"#,
    )
    .unwrap();
    let emitted = dir.join("tuned.toml");
    let out = run_bounded(
        Command::new(BIN).args([
            "tune",
            scenario.to_str().unwrap(),
            "--seeds",
            "1",
            "--emit-config",
            emitted.to_str().unwrap(),
        ]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&emitted).unwrap();
    let config = mcpsim::config::StackConfig::parse(&text).unwrap();
    assert_eq!(config.pairing_name(), "phi:300ms/2");
    assert_eq!(config.heartbeat.mode, mcpsim::config::Mode::OneWay);
    assert_eq!(config.heartbeat.grace.0, Duration::from_millis(50));

    // `--print-config` shows what the server would run: the emitted file, unchanged.
    let printed = run_bounded(
        Command::new(BIN).args([
            "serve",
            "--config",
            emitted.to_str().unwrap(),
            "--print-config",
        ]),
        Duration::from_secs(10),
    );
    assert!(printed.status.success(), "{printed:?}");
    let printed = mcpsim::config::StackConfig::parse(&String::from_utf8_lossy(&printed.stdout));
    assert_eq!(printed.as_ref(), Ok(&config));

    // The server grants it to a client that asks for nothing, and a client run on the same
    // file asks for exactly it: both log the negotiated session.
    let (_server, addr, server_lines) = serve(&["--config", emitted.to_str().unwrap()]);
    let mut client = Command::new(BIN)
        .args([
            "client",
            "--connect",
            &addr,
            "--config",
            emitted.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client_lines = lines_of(client.stderr.take().unwrap());
    let _client = Proc(client);
    for lines in [&server_lines, &client_lines] {
        let l = line_with(lines, "session established", Duration::from_secs(5));
        for field in ["interval_ms=300", "miss_threshold=2", "mode=OneWay"] {
            assert!(l.contains(field), "{field} not in {l:?}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `mcpsim cert --out DIR NAME...`, bounded.
fn cert(dir: &std::path::Path, extra: &[&str]) -> Output {
    run_bounded(
        Command::new(BIN)
            .args(["cert", "--out", dir.to_str().unwrap()])
            .args(extra),
        Duration::from_secs(10),
    )
}

#[test]
fn what_mcpsim_cert_writes_serves_and_connects_over_tls() {
    use std::os::unix::fs::PermissionsExt;

    let dir = scratch("cert-ok");
    let out = cert(&dir, &["localhost", "127.0.0.1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("--tls-ca"), "{stdout}");
    for key in ["ca-key.pem", "server-key.pem"] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (_server, addr, lines) = serve(&[
        "--tls-cert",
        &path("server.pem"),
        "--tls-key",
        &path("server-key.pem"),
    ]);
    let client = run_bounded(
        Command::new(BIN).args([
            "client",
            "--connect",
            &addr,
            "--tls-ca",
            &path("ca.pem"),
            "--duration",
            "1s",
        ]),
        Duration::from_secs(8),
    );
    let stderr = String::from_utf8_lossy(&client.stderr);
    assert!(client.status.success(), "{stderr}");
    assert!(stderr.contains("connected=1/1"), "{stderr}");
    line_with(&lines, "session established", Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ca_certificate_as_the_server_certificate_ends_the_client_with_exit_2_and_what_to_do() {
    // What `openssl req -x509` makes: self-signed with the CA flag set, given to both sides.
    let dir = scratch("cert-ca");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (_server, addr, _lines) = serve(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let started = Instant::now();
    let client = run_bounded(
        Command::new(BIN).args([
            "client",
            "--connect",
            &addr,
            "--tls-ca",
            cert_path.to_str().unwrap(),
        ]),
        Duration::from_secs(5),
    );
    let stderr = String::from_utf8_lossy(&client.stderr);
    assert_eq!(client.status.code(), Some(2), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr.contains("a CA certificate used as an end entity"),
        "{stderr}"
    );
    assert!(stderr.contains("mcpsim cert"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mcpsim_cert_refuses_to_overwrite_without_force() {
    let dir = scratch("cert-force");
    assert!(cert(&dir, &["localhost"]).status.success());
    let before = std::fs::read(dir.join("server.pem")).unwrap();
    let again = cert(&dir, &["localhost"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(dir.join("server.pem")).unwrap(), before);
    assert!(cert(&dir, &["--force", "localhost"]).status.success());
    assert_ne!(std::fs::read(dir.join("server.pem")).unwrap(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_server_that_reports_its_load_shows_in_the_clients_json_heartbeat_log_with_its_name() {
    let dir = scratch("load");
    let config = dir.join("load.toml");
    std::fs::write(
        &config,
        "[heartbeat]\ninterval = \"200ms\"\n[throttle]\nreport_load = true\n",
    )
    .unwrap();
    let (_server, addr, _server_lines) = serve(&["--config", config.to_str().unwrap()]);
    let mut client = Command::new(BIN)
        .args([
            "client",
            "--connect",
            &addr,
            "--heartbeat-interval",
            "200ms",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(client.stderr.take().unwrap());
    let _client = Proc(client);
    let line = line_with(&lines, "\"heartbeat_rtt\"", Duration::from_secs(10));
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let fields = &v;
    let cpu = fields["peer_cpu"]
        .as_f64()
        .unwrap_or_else(|| panic!("no cpu share: {line}"));
    let mem = fields["peer_mem"]
        .as_f64()
        .expect("the server's memory share");
    assert!(
        (0.0..=1.0).contains(&cpu) && mem > 0.0 && mem <= 1.0,
        "{line}"
    );
    assert_eq!(fields["peer"], format!("server at {addr}"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}
