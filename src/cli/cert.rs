//! `mcpsim cert`: a CA and a server certificate signed by it, ready for `serve --tls-cert` and
//! `client --tls-ca`.
//!
//! A self-signed certificate made the usual way (`openssl req -x509`) has the CA flag set, and a
//! verifying client refuses it as a server certificate (`CaUsedAsEndEntity`). So this writes two:
//! a CA that the client trusts, and a leaf (`CA:FALSE`, server auth, the names given as subject
//! alternative names) that the server presents. Keys are written readable by their owner only,
//! and nothing that exists is overwritten without `--force`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::CliError;

/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long the server certificate is valid.
const SERVER_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);
/// Valid from a little before now, so a client whose clock lags still accepts it.
const BACKDATE: Duration = Duration::from_secs(3_600);

const CA: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
const SERVER: &str = "server.pem";
const SERVER_KEY: &str = "server-key.pem";

/// Arguments of `mcpsim cert`.
#[derive(Debug, clap::Args)]
pub struct CertArgs {
    /// Directory for ca.pem, ca-key.pem, server.pem and server-key.pem (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite certificate and key files that exist.
    #[arg(long)]
    pub force: bool,
    /// DNS names and IP addresses the server certificate is valid for (what clients connect
    /// to, e.g. `localhost 127.0.0.1 mcp.example.com`).
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

pub fn run(args: CertArgs) -> Result<(), CliError> {
    let usage = |what: &str, e: rcgen::Error| CliError::Usage(format!("{what}: {e}"));
    let run = |what: &str, e: rcgen::Error| CliError::Run(format!("{what}: {e}"));
    for name in &args.names {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(CliError::Usage(format!(
                "{name:?} is not a DNS name or an IP address"
            )));
        }
    }
    let paths = [CA, CA_KEY, SERVER, SERVER_KEY].map(|f| args.out.join(f));
    if !args.force
        && let Some(p) = paths.iter().find(|p| p.symlink_metadata().is_ok())
    {
        return Err(CliError::Usage(format!(
            "{} exists: pass --force to overwrite it, or choose another --out",
            p.display()
        )));
    }

    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| CliError::Run("the system clock is before 1970".into()))?;

    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "mcpsim CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - BACKDATE;
    ca.not_after = now + CA_VALIDITY;
    let ca_key = KeyPair::generate().map_err(|e| run("cannot make the CA key", e))?;
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(|e| run("cannot make the CA certificate", e))?;

    let mut server =
        CertificateParams::new(args.names.clone()).map_err(|e| usage("bad server name", e))?;
    server.distinguished_name = DistinguishedName::new();
    server
        .distinguished_name
        .push(DnType::CommonName, args.names[0].as_str());
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = now - BACKDATE;
    server.not_after = now + SERVER_VALIDITY;
    let server_key = KeyPair::generate().map_err(|e| run("cannot make the server key", e))?;
    let issuer = Issuer::from_params(&ca, &ca_key);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .map_err(|e| run("cannot sign the server certificate", e))?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::Run(format!("cannot create {}: {e}", args.out.display())))?;
    let [ca_path, ca_key_path, server_path, server_key_path] = &paths;
    write(ca_path, &ca_cert.pem(), 0o644, args.force)?;
    write(ca_key_path, &ca_key.serialize_pem(), 0o600, args.force)?;
    write(server_path, &server_cert.pem(), 0o644, args.force)?;
    write(
        server_key_path,
        &server_key.serialize_pem(),
        0o600,
        args.force,
    )?;

    let port = 7800;
    let host = match args.names[0].parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => args.names[0].clone(),
    };
    println!(
        "wrote {} and {} (the CA: give ca.pem to clients, keep its key private)",
        ca_path.display(),
        ca_key_path.display()
    );
    println!(
        "wrote {} and {} (the server certificate for {})",
        server_path.display(),
        server_key_path.display(),
        args.names.join(", ")
    );
    println!();
    println!(
        "mcpsim serve --listen 0.0.0.0:{port} --tls-cert {} --tls-key {}",
        server_path.display(),
        server_key_path.display()
    );
    println!(
        "mcpsim client --connect {host}:{port} --tls-ca {}",
        ca_path.display()
    );
    Ok(())
}

/// Writes `text` to a file with permissions `mode`; an existing file only with `force`.
fn write(path: &Path, text: &str, mode: u32, force: bool) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::Run(format!("cannot write {}: {e}", path.display()));
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        // Refused at once if it appeared since the check: never overwritten by accident.
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(fail)?;
    // `mode` applies only to a new file; an overwritten key must not stay readable by others.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcpsim-cert-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn args(out: &Path, force: bool, names: &[&str]) -> CertArgs {
        CertArgs {
            out: out.to_path_buf(),
            force,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn keys_are_private_and_a_second_run_needs_force() {
        let dir = scratch("perm");
        run(args(&dir, false, &["localhost", "127.0.0.1"])).unwrap();
        for (file, mode) in [
            (CA, 0o644),
            (CA_KEY, 0o600),
            (SERVER, 0o644),
            (SERVER_KEY, 0o600),
        ] {
            let meta = std::fs::metadata(dir.join(file)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
        }
        let before = std::fs::read(dir.join(SERVER)).unwrap();
        let e = run(args(&dir, false, &["localhost"])).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(dir.join(SERVER)).unwrap(), before);
        run(args(&dir, true, &["localhost"])).unwrap();
        assert_ne!(std::fs::read(dir.join(SERVER)).unwrap(), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_name_that_is_neither_dns_nor_ip_is_refused() {
        let dir = scratch("bad");
        let e = run(args(&dir, false, &["two words"])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!dir.exists());
    }
}
