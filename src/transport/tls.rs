//! TLS client settings for `tls://`, `syslog+tls://`, `raw+tls://` and `https://` routes.
//!
//! The trust store starts from the system roots (the platform's CA bundle; `SSL_CERT_FILE`
//! and `SSL_CERT_DIR` are honoured) unless `LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS=true`, and adds
//! every certificate of the PEM files in `LOGSPOUT_TLS_CA_CERTS` and of the route's own
//! `tls.ca`. A client certificate (`LOGSPOUT_TLS_CLIENT_CERT`/`_KEY`, or the route's
//! `tls.cert`/`tls.key`) turns on mutual TLS. Servers are always verified: there is no
//! insecure mode; a private CA is added with `tls.ca` instead.
//!
//! Files are read each time a config is built (at start and at every reload), so renewed
//! certificates take effect on the next reload without a restart; a file that cannot be read
//! or holds no usable PEM fails that build with the file's name, and a running config stays.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::options::TlsOptions;
use crate::settings::TlsEnv;

/// Reads every file the `LOGSPOUT_TLS_*` variables name, so a bad CA or client certificate
/// stops the process at start, as in logspout, even before a TLS route exists.
pub fn check_env_files(tls: &TlsEnv) -> anyhow::Result<()> {
    for file in &tls.ca_files {
        read_certs(file).context("LOGSPOUT_TLS_CA_CERTS")?;
    }
    if let Some((cert, key)) = &tls.client_cert {
        read_certs(cert).context("LOGSPOUT_TLS_CLIENT_CERT")?;
        read_key(key).context("LOGSPOUT_TLS_CLIENT_KEY")?;
    }
    Ok(())
}

/// Everything a writer needs to open a TLS session: the client config and the name to verify.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    /// A digest of the settings and of every file read, so a writer kept across a reload can
    /// tell whether its TLS setup changed and keep its connections when it did not.
    pub fingerprint: u64,
}

/// Builds the TLS target of a route sending to `address` (`host:port`), reading every file now.
pub fn target(env: &TlsEnv, route: &TlsOptions, address: &str) -> anyhow::Result<TlsTarget> {
    let host = route.server_name.clone().unwrap_or_else(|| host_of(address).to_string());
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| anyhow!("TLS server name {host:?} is neither a DNS name nor an IP address"))?;
    let config = client_config(env, route)?;
    Ok(TlsTarget { config, server_name, fingerprint: fingerprint(env, route, &host) })
}

fn fingerprint(env: &TlsEnv, route: &TlsOptions, host: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (env, route, host).hash(&mut h);
    let files = env.ca_files.iter().chain(&route.ca);
    let certs = env.client_cert.iter().chain(&route.client_cert).flat_map(|(c, k)| [c, k]);
    for file in files.chain(certs) {
        std::fs::read(file).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// The rustls client config for a route.
pub fn client_config(env: &TlsEnv, route: &TlsOptions) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let system_roots = route.system_roots.unwrap_or(!env.disable_system_roots);
    if system_roots {
        // Unreadable entries of the system bundle are skipped, as every TLS client does: one
        // bad file in /etc/ssl/certs must not make every server untrusted.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    for file in env.ca_files.iter().chain(&route.ca) {
        for (i, cert) in read_certs(file)?.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|e| anyhow!("{}: certificate {} is not a usable CA: {e}", file.display(), i + 1))?;
        }
    }
    if roots.is_empty() {
        bail!(
            "the TLS trust store is empty: system roots are {} and no CA file was given \
             (LOGSPOUT_TLS_CA_CERTS or the route's tls.ca), so no server could be trusted",
            if system_roots { "missing on this machine" } else { "disabled" }
        );
    }
    let provider = Arc::new(provider(env.hardening));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match route.client_cert.as_ref().or(env.client_cert.as_ref()) {
        Some((cert, key)) => {
            let certified = certified_key(&provider, cert, key)
                .with_context(|| format!("client certificate {} with key {}", cert.display(), key.display()))?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)))
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The client certificate chain with its signing key, built here rather than by rustls's
/// `with_client_auth_cert`, which checks the key against the certificate with webpki and so
/// refuses X.509 v1 certificates (what `openssl x509 -req` makes without extensions, and what
/// logspout, rsyslog and syslog-ng accept). The check still runs where webpki can parse the
/// certificate; where it cannot, luaspout warns and uses the pair as given (the client never
/// parses its own certificate during the handshake, and the server judges it).
fn certified_key(provider: &CryptoProvider, cert: &Path, key: &Path) -> anyhow::Result<rustls::sign::CertifiedKey> {
    let signing = provider.key_provider.load_private_key(read_key(key)?).context("unusable private key")?;
    let certified = rustls::sign::CertifiedKey::new(read_certs(cert)?, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            bail!("the private key does not belong to the certificate (its public key differs)")
        }
        Err(e) => tracing::warn!(
            cert = %cert.display(),
            key = %key.display(),
            "cannot check the client certificate against its key ({e}; an X.509 v1 certificate, most likely); using them as given"
        ),
    }
    Ok(certified)
}

/// A client config for plain `http://` routes, whose connector type also handles TLS but never
/// uses it: no roots, so it could verify nothing if it were used.
pub fn unused_config() -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(provider(false)))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// The crypto provider: ring's defaults, which are already what `LOGSPOUT_TLS_HARDENING` asks
/// for (TLS 1.2+, ECDHE with AES-GCM or ChaCha20-Poly1305 only). Hardening also fixes the key
/// exchange preference to X25519, P-384, P-256, logspout's order minus P-521, which ring lacks.
fn provider(hardening: bool) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if hardening {
        use rustls::crypto::ring::kx_group;
        provider.kx_groups = vec![kx_group::X25519, kx_group::SECP384R1, kx_group::SECP256R1];
    }
    provider
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(address: &str) -> &str {
    if let Some(v6) = address.strip_prefix('[') {
        return v6.split_once(']').map_or(v6, |(h, _)| h);
    }
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// Every certificate of a PEM file; a file with none is an error, since it was named to be used.
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{}: cannot read PEM certificates: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file", path.display());
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| anyhow!("{}: cannot read a PEM private key: {}", path.display(), pem_error(&e)))
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind in the file".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn pem_files() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let (ca, key_path, junk) = (dir.path().join("ca.pem"), dir.path().join("key.pem"), dir.path().join("junk.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&junk, "not a certificate\n").unwrap();
        (dir, ca, key_path, junk)
    }

    #[test]
    fn env_files_are_checked_at_start_and_errors_name_the_file() {
        use crate::settings::Env;
        let (_dir, ca, key, junk) = pem_files();
        let ok = Env::from_pairs(&[("LOGSPOUT_TLS_CA_CERTS", &format!("{},{}", ca.display(), ca.display()))]);
        let checked = |env: &Env| TlsEnv::from_env(env).and_then(|tls| check_env_files(&tls).map(|()| tls));
        assert_eq!(checked(&ok).unwrap().ca_files.len(), 2);
        let bad = Env::from_pairs(&[("LOGSPOUT_TLS_CA_CERTS", junk.to_str().unwrap())]);
        let err = format!("{:#}", checked(&bad).unwrap_err());
        assert!(err.contains("junk.pem") && err.contains("no PEM certificate"), "{err}");
        let missing = Env::from_pairs(&[("LOGSPOUT_TLS_CA_CERTS", "/nonexistent/ca.pem")]);
        let err = format!("{:#}", checked(&missing).unwrap_err());
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let half = Env::from_pairs(&[("LOGSPOUT_TLS_CLIENT_CERT", ca.to_str().unwrap())]);
        assert!(TlsEnv::from_env(&half).unwrap_err().to_string().contains("LOGSPOUT_TLS_CLIENT_KEY"));
        let both = Env::from_pairs(&[
            ("LOGSPOUT_TLS_CLIENT_CERT", ca.to_str().unwrap()),
            ("LOGSPOUT_TLS_CLIENT_KEY", key.to_str().unwrap()),
        ]);
        assert!(checked(&both).unwrap().client_cert.is_some());
    }

    #[test]
    fn a_v1_client_certificate_is_used_and_a_foreign_key_refused() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-client");
        let (_dir, ca, key, _) = pem_files();
        let env = TlsEnv { disable_system_roots: true, ca_files: vec![ca.clone()], ..Default::default() };
        let v1 = TlsOptions {
            client_cert: Some((fixture.join("client.pem"), fixture.join("client.key"))),
            ..Default::default()
        };
        assert!(client_config(&env, &v1).unwrap().client_auth_cert_resolver.has_certs());
        let foreign = TlsOptions { client_cert: Some((ca.clone(), fixture.join("client.key"))), ..Default::default() };
        let err = format!("{:#}", client_config(&env, &foreign).unwrap_err());
        assert!(err.contains("does not belong to the certificate"), "{err}");
        let own = TlsOptions { client_cert: Some((ca, key)), ..Default::default() };
        client_config(&env, &own).unwrap();
    }

    #[test]
    fn an_empty_trust_store_is_refused() {
        let env = TlsEnv { disable_system_roots: true, ..Default::default() };
        let err = client_config(&env, &TlsOptions::default()).unwrap_err().to_string();
        assert!(err.contains("trust store is empty"), "{err}");
        let (_dir, ca, _, _) = pem_files();
        let route = TlsOptions { ca: vec![ca], ..Default::default() };
        client_config(&env, &route).unwrap();
    }

    #[test]
    fn server_name_comes_from_the_host_unless_given() {
        let (_dir, ca, _, _) = pem_files();
        let env = TlsEnv { disable_system_roots: true, ca_files: vec![ca], ..Default::default() };
        let t = target(&env, &TlsOptions::default(), "logs.example.com:6514").unwrap();
        assert_eq!(t.server_name, ServerName::try_from("logs.example.com").unwrap());
        let t = target(&env, &TlsOptions::default(), "[::1]:6514").unwrap();
        assert_eq!(t.server_name, ServerName::try_from("::1").unwrap());
        let named = TlsOptions { server_name: Some("logs.test".into()), ..Default::default() };
        let t = target(&env, &named, "127.0.0.1:6514").unwrap();
        assert_eq!(t.server_name, ServerName::try_from("logs.test").unwrap());
    }
}
