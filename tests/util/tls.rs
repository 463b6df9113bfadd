//! TLS test support: certificates made at test time, a TLS sink, a TLS rsyslogd, a TLS client.
//!
//! What lives here, and why it is shaped this way:
//! - **[`TestPki`]**: a throwaway CA, a server certificate and a client certificate signed by it,
//!   and an unrelated "wrong" CA with its own server certificate, generated with rcgen for every
//!   test and written as PEM files into a temp dir owned by the struct. Nothing is checked in,
//!   nothing expires under the tests, and "the right CA" versus "a CA that did not sign this"
//!   is a one-word difference in a test.
//! - **[`TlsReceiver`]**: [`TcpReceiver`](super::TcpReceiver) with rustls in front (std threads,
//!   no tokio): decrypted bytes of every connection appended to one buffer, plus counters for
//!   accepted connections, completed and failed handshakes and client certificates, so a test can
//!   assert *why* nothing arrived. Optionally requires a client certificate (mutual TLS).
//! - **[`Rsyslogd::start_tls`]**: the private rsyslogd of `super`, with `imtcp` on the GnuTLS
//!   stream driver (Debian's `rsyslog-gnutls`): the real-world TLS syslog receiver.
//! - **[`tls_client_config`] / [`tls_connect`] / [`tls_send`]**: a small rustls client, for tests
//!   of this support code and for sending to luaspout-independent TLS endpoints.
//!
//! Everything listens on 127.0.0.1, every wait is bounded, every process and thread stops on drop.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use super::{ByteReceiver, RSYSLOG_TEMPLATE, Rsyslogd, free_port, rsyslogd_bin};

/// How long a TLS handshake may take, on either side, before it counts as failed. Loopback
/// handshakes take milliseconds; this only bounds a peer that connects and then says nothing.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

const CA: &str = "ca.pem";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";
const CLIENT_CERT: &str = "client.pem";
const CLIENT_KEY: &str = "client.key";
const WRONG_CA: &str = "wrong-ca.pem";
const WRONG_SERVER_CERT: &str = "wrong-server.pem";
const WRONG_SERVER_KEY: &str = "wrong-server.key";
const CA_BUNDLE: &str = "ca-bundle.pem";

/// The DNS names and IP the server certificate (signed by the right CA) is valid for. `logs.test`
/// lets a test connect to 127.0.0.1 while verifying a name that is not `localhost`.
pub const SERVER_SANS: &[&str] = &["localhost", "127.0.0.1", "logs.test"];

/// The names the wrong CA's server certificate is valid for: the same host, so the only reason
/// to reject it is who signed it.
pub const WRONG_SERVER_SANS: &[&str] = &["localhost", "127.0.0.1"];

/// A fresh PKI for one test, as PEM files in a temp dir that is removed on drop: a CA, a server
/// certificate for [`SERVER_SANS`] and a client certificate (client-auth EKU) both signed by it,
/// and an unrelated "wrong" CA with a server certificate for [`WRONG_SERVER_SANS`]. Keys are
/// ECDSA P-256 in PKCS#8 PEM (`BEGIN PRIVATE KEY`), which rustls and GnuTLS both read.
pub struct TestPki {
    dir: tempfile::TempDir,
}

/// Certificate parameters shared by every certificate: a fixed, generous validity window
/// (2020 to 2100), so neither clock skew nor a long test run makes one expire.
fn base_params(common_name: &str, sans: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("valid subject alt names");
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2100, 1, 1);
    p
}

/// A self-signed CA certificate and its key.
fn new_ca(common_name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = base_params(common_name, &[]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("generate CA key")).expect("self-sign CA")
}

/// A leaf certificate signed by `ca`: (certificate PEM, key PEM).
fn new_leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    sans: &[&str],
    eku: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut p = base_params(common_name, sans);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("generate leaf key");
    let cert = p.signed_by(&key, ca).expect("sign leaf certificate");
    (cert.pem(), key.serialize_pem())
}

impl TestPki {
    /// Generates every certificate and key and writes them to a new temp dir.
    pub fn new() -> TestPki {
        let dir = tempfile::Builder::new().prefix("luaspout-pki-").tempdir().expect("temp dir for the PKI");
        let write = |name: &str, pem: &str| {
            fs::write(dir.path().join(name), pem).unwrap_or_else(|e| panic!("write {name}: {e}"))
        };

        let ca = new_ca("luaspout test CA");
        let (server_cert, server_key) = new_leaf(&ca, "localhost", SERVER_SANS, ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = new_leaf(&ca, "luaspout test client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        let wrong_ca = new_ca("luaspout wrong test CA");
        let (wrong_cert, wrong_key) =
            new_leaf(&wrong_ca, "localhost", WRONG_SERVER_SANS, ExtendedKeyUsagePurpose::ServerAuth);

        write(CA, &ca.pem());
        write(SERVER_CERT, &server_cert);
        write(SERVER_KEY, &server_key);
        write(CLIENT_CERT, &client_cert);
        write(CLIENT_KEY, &client_key);
        write(WRONG_CA, &wrong_ca.pem());
        write(WRONG_SERVER_CERT, &wrong_cert);
        write(WRONG_SERVER_KEY, &wrong_key);
        // The wrong CA first: a reader that only looks at the first certificate of a file fails.
        write(CA_BUNDLE, &format!("{}{}", wrong_ca.pem(), ca.pem()));
        TestPki { dir }
    }

    /// The temp dir holding every file (removed when the `TestPki` is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed the server and client certificates (PEM, one certificate).
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join(CA)
    }

    /// The server certificate for [`SERVER_SANS`], signed by [`TestPki::ca_pem`] (the leaf only).
    pub fn server_cert_pem(&self) -> PathBuf {
        self.dir.path().join(SERVER_CERT)
    }

    /// The key of [`TestPki::server_cert_pem`] (PKCS#8 PEM).
    pub fn server_key_pem(&self) -> PathBuf {
        self.dir.path().join(SERVER_KEY)
    }

    /// A client certificate (client-auth EKU, CN `luaspout test client`) signed by
    /// [`TestPki::ca_pem`], for mutual TLS.
    pub fn client_cert_pem(&self) -> PathBuf {
        self.dir.path().join(CLIENT_CERT)
    }

    /// The key of [`TestPki::client_cert_pem`] (PKCS#8 PEM).
    pub fn client_key_pem(&self) -> PathBuf {
        self.dir.path().join(CLIENT_KEY)
    }

    /// An unrelated CA: trusting only this one must make every handshake with the right server
    /// certificate fail.
    pub fn wrong_ca_pem(&self) -> PathBuf {
        self.dir.path().join(WRONG_CA)
    }

    /// A server certificate for [`WRONG_SERVER_SANS`] signed by the wrong CA: right name, wrong
    /// issuer.
    pub fn wrong_server_cert_pem(&self) -> PathBuf {
        self.dir.path().join(WRONG_SERVER_CERT)
    }

    /// The key of [`TestPki::wrong_server_cert_pem`].
    pub fn wrong_server_key_pem(&self) -> PathBuf {
        self.dir.path().join(WRONG_SERVER_KEY)
    }

    /// The wrong CA followed by the right CA in one PEM file: trusting this file must accept the
    /// right server certificate, which only works if every certificate of the file is read.
    pub fn ca_bundle_pem(&self) -> PathBuf {
        self.dir.path().join(CA_BUNDLE)
    }
}

/// Every certificate of a PEM file, in order. Panics (naming the file) if it can't be read.
pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    assert!(!certs.is_empty(), "{} holds no certificate", path.display());
    certs
}

/// The private key of a PEM file. Panics (naming the file) if it can't be read.
pub fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap_or_else(|e| panic!("read key {}: {e}", path.display()))
}

/// A root store holding every certificate of the PEM file `ca`.
pub fn root_store(ca: &Path) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca) {
        roots.add(cert).unwrap_or_else(|e| panic!("trust anchor from {}: {e}", ca.display()));
    }
    roots
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------------------------
// TLS client
// ---------------------------------------------------------------------------------------------

/// A rustls client config (ring, TLS 1.2 and 1.3) trusting every certificate of `ca` and
/// nothing else, presenting `client_cert` = (certificate PEM, key PEM) when given.
pub fn tls_client_config(ca: &Path, client_cert: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(root_store(ca));
    let config = match client_cert {
        Some((cert, key)) => {
            builder.with_client_auth_cert(load_certs(cert), load_key(key)).expect("client certificate and key")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects to 127.0.0.1:`port`, verifying the server as `server_name` (a DNS name, or an IP
/// such as `127.0.0.1`, checked against the IP SAN), and completes the handshake (bounded by
/// [`HANDSHAKE_TIMEOUT`]). The stream keeps 5 s read and write timeouts.
///
/// With TLS 1.3 the client's handshake completes before the server has checked the client
/// certificate, so a server that refuses it shows up on the first read, not here.
pub fn tls_connect(
    port: u16,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("server name {server_name:?}: {e}")))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(StreamOwned::new(conn, sock))
}

/// Sends `data` over one TLS connection and closes it cleanly: [`tls_connect`], write, flush,
/// `close_notify`, then reads until the server closes (at most 2 s; a server that keeps the
/// connection open is fine). `Err` if the handshake fails, the server answers with an alert
/// (e.g. it refused the client certificate: then the alert's error, even when the write failed
/// first), or the connection breaks, so a test can tell "refused" from "sent".
///
/// A server that closes without `close_notify` after ours counts as delivered: rsyslogd
/// (GnuTLS) always does. It also refuses a missing client certificate that way (no alert), so
/// against rsyslogd only the missing line shows that refusal.
pub fn tls_send(port: u16, server_name: &str, config: Arc<ClientConfig>, data: &[u8]) -> io::Result<()> {
    let mut tls = tls_connect(port, server_name, config)?;
    let sent = tls.write_all(data).and_then(|()| tls.flush()).and_then(|()| {
        tls.conn.send_close_notify();
        tls.flush()
    });
    tls.sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut sink = [0u8; 4096];
    let answer = loop {
        match tls.read(&mut sink) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break Ok(()),
            // Closed without close_notify after we sent ours: the data was delivered.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // A refusal (TLS 1.3 client certificate) may reach us first as a failed write; the alert
    // that says why is then still readable, and the better error.
    match (sent, answer) {
        (_, Err(alert)) if alert.kind() == io::ErrorKind::InvalidData => Err(alert),
        (Err(e), _) => Err(e),
        (Ok(()), answer) => answer,
    }
}

// ---------------------------------------------------------------------------------------------
// TLS receiver
// ---------------------------------------------------------------------------------------------

/// What a [`TlsReceiver`] has seen so far, as one snapshot (so a test can wait on any of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// Accepted TCP connections.
    pub connections: usize,
    /// Connections whose TLS handshake completed.
    pub handshakes: usize,
    /// Connections that ended (error, alert, timeout, or close) before the handshake completed.
    pub failed_handshakes: usize,
    /// Completed handshakes in which the client presented a certificate.
    pub client_certs: usize,
}

#[derive(Default)]
struct TlsState {
    buf: Vec<u8>,
    stats: TlsStats,
    handshake_errors: Vec<String>,
    server_names: Vec<Option<String>>,
}

struct TlsShared {
    state: Mutex<TlsState>,
    cond: Condvar,
    stop: AtomicBool,
}

impl TlsShared {
    fn update(&self, f: impl FnOnce(&mut TlsState)) {
        f(&mut self.state.lock().unwrap());
        self.cond.notify_all();
    }
}

/// Which server certificate a [`TlsReceiver`] presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCert {
    /// [`TestPki::server_cert_pem`], signed by [`TestPki::ca_pem`].
    Right,
    /// [`TestPki::wrong_server_cert_pem`], signed by [`TestPki::wrong_ca_pem`].
    Wrong,
}

/// Configures a [`TlsReceiver`]: which certificate it presents, whether it requires a client
/// certificate, which TLS versions it speaks, which port it binds.
pub struct TlsReceiverBuilder {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    require_client_cert: bool,
    tls12_only: bool,
    port: Option<u16>,
}

impl TlsReceiverBuilder {
    /// Presents the right or the wrong CA's server certificate (default: right).
    pub fn server_cert(mut self, pki: &TestPki, which: ServerCert) -> Self {
        (self.cert, self.key) = match which {
            ServerCert::Right => (pki.server_cert_pem(), pki.server_key_pem()),
            ServerCert::Wrong => (pki.wrong_server_cert_pem(), pki.wrong_server_key_pem()),
        };
        self
    }

    /// Mutual TLS: the handshake fails unless the client presents a certificate signed by
    /// [`TestPki::ca_pem`].
    pub fn require_client_cert(mut self) -> Self {
        self.require_client_cert = true;
        self
    }

    /// Speaks TLS 1.2 only (default: 1.2 and 1.3), to check a client still does 1.2, and because
    /// a refused client certificate surfaces in the client's handshake there, not after it.
    pub fn tls12_only(mut self) -> Self {
        self.tls12_only = true;
        self
    }

    /// Binds a pre-chosen port (from [`free_port`]) instead of port 0: the "sink starts late" case.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Binds and starts accepting.
    pub fn start(self) -> TlsReceiver {
        let versions: &[&'static rustls::SupportedProtocolVersion] =
            if self.tls12_only { &[&rustls::version::TLS12] } else { rustls::DEFAULT_VERSIONS };
        let builder = ServerConfig::builder_with_provider(ring())
            .with_protocol_versions(versions)
            .expect("ring supports these protocol versions");
        let builder = if self.require_client_cert {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(&self.ca)), ring())
                .build()
                .expect("client certificate verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(
            builder.with_single_cert(load_certs(&self.cert), load_key(&self.key)).expect("server certificate and key"),
        );
        let port = self.port.unwrap_or(0);
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        TlsReceiver::from_listener(listener, config)
    }
}

/// A TLS server on 127.0.0.1 (rustls, ring) that appends the decrypted bytes of every
/// connection, in arrival order, to one buffer, like [`TcpReceiver`](super::TcpReceiver), and
/// counts connections, handshakes (completed and failed) and client certificates in
/// [`TlsStats`]. A failed handshake is counted and its error kept ([`TlsReceiver::handshake_errors`]);
/// it never panics a thread. Stops accepting on drop.
pub struct TlsReceiver {
    port: u16,
    shared: Arc<TlsShared>,
}

impl TlsReceiver {
    /// A builder presenting the right server certificate, without client authentication.
    pub fn builder(pki: &TestPki) -> TlsReceiverBuilder {
        TlsReceiverBuilder {
            cert: pki.server_cert_pem(),
            key: pki.server_key_pem(),
            ca: pki.ca_pem(),
            require_client_cert: false,
            tls12_only: false,
            port: None,
        }
    }

    /// Listens on `127.0.0.1:0` with the right server certificate, no client authentication.
    pub fn start(pki: &TestPki) -> TlsReceiver {
        Self::builder(pki).start()
    }

    fn from_listener(listener: TcpListener, config: Arc<ServerConfig>) -> TlsReceiver {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(TlsShared {
            state: Mutex::new(TlsState::default()),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        s.update(|st| st.stats.connections += 1);
                        let (s, config) = (s.clone(), config.clone());
                        thread::spawn(move || serve_tls(stream, config, &s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TlsReceiver { port, shared }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, for route URIs.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The counters so far.
    pub fn stats(&self) -> TlsStats {
        self.shared.state.lock().unwrap().stats.clone()
    }

    /// How many TCP connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.stats().connections
    }

    /// How many TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.stats().handshakes
    }

    /// How many connections ended before their handshake completed.
    pub fn failed_handshakes(&self) -> usize {
        self.stats().failed_handshakes
    }

    /// True if any completed handshake came with a client certificate.
    pub fn client_cert_presented(&self) -> bool {
        self.stats().client_certs > 0
    }

    /// Why each failed handshake failed (rustls error, alert received, timeout or close), in
    /// order: for assertion messages, and to tell "unknown CA" from "no client certificate".
    pub fn handshake_errors(&self) -> Vec<String> {
        self.shared.state.lock().unwrap().handshake_errors.clone()
    }

    /// The SNI name each completed handshake carried (`None`: no SNI, as rustls and most
    /// clients do when connecting to an IP address), in order.
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.shared.state.lock().unwrap().server_names.clone()
    }

    /// Waits until `done(stats)` holds or `timeout` passes; returns the counters then (so the
    /// test's `assert_eq!` shows what was counted).
    pub fn wait_stats(&self, timeout: Duration, done: impl Fn(&TlsStats) -> bool) -> TlsStats {
        self.wait_state(timeout, |st| done(&st.stats)).stats
    }

    fn wait_state(&self, timeout: Duration, done: impl Fn(&TlsState) -> bool) -> TlsStateSnapshot {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            let now = Instant::now();
            if done(&st) || now >= deadline {
                return TlsStateSnapshot { buf: st.buf.clone(), stats: st.stats.clone() };
            }
            st = self.shared.cond.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

struct TlsStateSnapshot {
    buf: Vec<u8>,
    stats: TlsStats,
}

impl ByteReceiver for TlsReceiver {
    /// Everything received so far (decrypted).
    fn contents(&self) -> Vec<u8> {
        self.shared.state.lock().unwrap().buf.clone()
    }

    /// Waits until `done(received)` holds or `timeout` passes; returns what was received.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        self.wait_state(timeout, |st| done(&st.buf)).buf
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// One connection: handshake (bounded by [`HANDSHAKE_TIMEOUT`]), then decrypted bytes into the
/// shared buffer until the peer closes, an error, or the receiver is dropped. Explicit
/// `read_tls`/`process_new_packets`/`write_tls` steps rather than `complete_io`, so a read
/// timeout (how the thread notices `stop`) is never mistaken for a TLS failure.
fn serve_tls(mut sock: TcpStream, config: Arc<ServerConfig>, s: &TlsShared) {
    let fail = |why: String| {
        s.update(|st| {
            st.stats.failed_handshakes += 1;
            st.handshake_errors.push(why);
        })
    };
    sock.set_nonblocking(false).ok();
    sock.set_read_timeout(Some(Duration::from_millis(100))).ok();
    sock.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let mut conn = match ServerConnection::new(config) {
        Ok(c) => c,
        Err(e) => return fail(format!("ServerConnection::new: {e}")),
    };
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while conn.wants_write() {
            if let Err(e) = conn.write_tls(&mut sock) {
                if conn.is_handshaking() {
                    fail(format!("write during handshake: {e}"));
                }
                return;
            }
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        if conn.is_handshaking() && Instant::now() >= deadline {
            return fail(format!("handshake not complete after {HANDSHAKE_TIMEOUT:?}"));
        }
        let eof = match conn.read_tls(&mut sock) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                if conn.is_handshaking() {
                    fail(format!("read during handshake: {e}"));
                }
                return;
            }
        };
        let was_handshaking = conn.is_handshaking();
        match conn.process_new_packets() {
            Ok(_) => {}
            Err(e) => {
                // Send the alert describing the error, if any; the peer may be gone already.
                let _ = conn.write_tls(&mut sock);
                if was_handshaking {
                    fail(e.to_string());
                }
                return close_gracefully(sock, s);
            }
        }
        if was_handshaking && !conn.is_handshaking() {
            let has_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
            let sni = conn.server_name().map(str::to_string);
            s.update(|st| {
                st.stats.handshakes += 1;
                if has_cert {
                    st.stats.client_certs += 1;
                }
                st.server_names.push(sni);
            });
        }
        let mut closed = false;
        loop {
            match conn.reader().read(&mut chunk) {
                Ok(0) => {
                    closed = true; // close_notify
                    break;
                }
                Ok(n) => s.update(|st| st.buf.extend_from_slice(&chunk[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true; // EOF without close_notify
                    break;
                }
            }
        }
        if eof || closed {
            if conn.is_handshaking() {
                fail("peer closed the connection during the handshake".to_string());
            } else {
                conn.send_close_notify();
                let _ = conn.write_tls(&mut sock);
            }
            return;
        }
    }
}

/// Closes after a TLS error without a TCP reset: shuts down our side (the alert is already
/// sent), then discards what the peer still sends until it closes (1 s at most). Closing with
/// unread data would send a RST, and the peer might then see "connection reset" or "broken
/// pipe" instead of the alert that says why (e.g. a TLS 1.3 client that wrote right after its
/// handshake, not knowing its certificate was refused).
fn close_gracefully(mut sock: TcpStream, s: &TlsShared) {
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut discard = [0u8; 4096];
    while Instant::now() < deadline && !s.stop.load(Ordering::Relaxed) {
        match sock.read(&mut discard) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rsyslogd with TLS
// ---------------------------------------------------------------------------------------------

impl Rsyslogd {
    /// A private rsyslogd whose only input is `imtcp` with GnuTLS (`rsyslog-gnutls`) on a free
    /// loopback port, presenting [`TestPki::server_cert_pem`]; it writes one [`RSYSLOG_TEMPLATE`]
    /// line per message, like [`Rsyslogd::start`] (there is no UDP input here: `port()` is the
    /// TLS port). `require_client_cert` switches `StreamDriver.AuthMode` from `anon` to
    /// `x509/certvalid`: clients must then present a certificate signed by [`TestPki::ca_pem`].
    /// imtcp accepts both `\n`-terminated and octet-counted (`LEN SP MSG`) framing.
    ///
    /// Ready when a TLS handshake with it succeeds (10 s at most); panics with rsyslogd's
    /// stderr otherwise. Killed on drop.
    pub fn start_tls(pki: &TestPki, require_client_cert: bool) -> Rsyslogd {
        Rsyslogd::start_tls_trusting(pki, require_client_cert, None)
    }

    /// As [`Rsyslogd::start_tls`], trusting the CA file `extra_ca` too (for client
    /// certificates it signed, such as the committed X.509 v1 fixture's).
    pub fn start_tls_trusting(pki: &TestPki, require_client_cert: bool, extra_ca: Option<&Path>) -> Rsyslogd {
        let bin = rsyslogd_bin();
        assert!(bin.exists(), "rsyslogd not found: install Debian's rsyslog (tests/run.sh does)");
        let dir = tempfile::Builder::new().prefix("luaspout-rsyslog-tls-").tempdir().expect("temp dir");
        let port = free_port();
        let out = dir.path().join("messages.log");
        let conf = dir.path().join("rsyslog.conf");
        let auth_mode = if require_client_cert { "x509/certvalid" } else { "anon" };
        let ca = dir.path().join("trusted-ca.pem");
        let mut trusted = fs::read_to_string(pki.ca_pem()).expect("read the test CA");
        if let Some(extra) = extra_ca {
            trusted.push_str(&fs::read_to_string(extra).expect("read the extra CA"));
        }
        fs::write(&ca, trusted).expect("write the CA bundle");
        fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}")
module(load="imtcp")
template(name="lstest" type="string" string="{RSYSLOG_TEMPLATE}")
input(type="imtcp" port="{port}" address="127.0.0.1"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth_mode}"
      streamDriver.CAFile="{ca}" streamDriver.CertFile="{cert}" streamDriver.KeyFile="{key}")
if $inputname == "imtcp" then action(type="omfile" file="{out}" template="lstest")
"#,
                d = dir.path().display(),
                ca = ca.display(),
                cert = pki.server_cert_pem().display(),
                key = pki.server_key_pem().display(),
                out = out.display()
            ),
        )
        .expect("write rsyslog.conf");
        let mut r = Rsyslogd::spawn(&bin, dir, &conf, port, out);
        let client_cert = require_client_cert.then(|| (pki.client_cert_pem(), pki.client_key_pem()));
        let config = tls_client_config(&pki.ca_pem(), client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", fs::read_to_string(&r.stderr).unwrap_or_default());
            }
            // A full handshake, not just a TCP connect: a broken setup (cert files not loaded,
            // GnuTLS driver missing) fails here, not later as "no lines arrived".
            match tls_send(port, "127.0.0.1", config.clone(), b"") {
                Ok(()) => return r,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no TLS handshake with rsyslogd on 127.0.0.1:{port} within 10 s ({e}); is \
                     rsyslog-gnutls installed? stderr:\n{}",
                    fs::read_to_string(&r.stderr).unwrap_or_default()
                ),
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}
