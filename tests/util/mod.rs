//! Helpers for the end-to-end tests: the real `luaspout` binary against the real dockerd.
//!
//! What lives here, and why it is shaped this way:
//! - **Docker** through its CLI (`std::process::Command`): [`require_docker`] panics when dockerd
//!   is unreachable (an e2e test must fail, never skip), [`test_image`] builds the busybox image
//!   `FROM scratch` once per test process, [`Container`] is a guard that `docker rm -f`s on drop.
//! - **Receivers** on `127.0.0.1`: [`TcpReceiver`] (every connection appended to one buffer, so a
//!   reconnect is invisible except in [`TcpReceiver::connections`]) and [`UdpReceiver`] (one entry
//!   per datagram). [`free_port`] + [`TcpReceiver::start_on`] give a sink that starts late.
//! - **luaspout** as a child process: [`Luaspout`] picks a free HTTP port, binds it on loopback,
//!   clears the environment of everything luaspout reads, keeps stderr in a file (printed when a
//!   test fails) and kills the process on drop.
//! - **rsyslogd**: a private instance ([`Rsyslogd`]) on a free loopback port that writes what it
//!   parsed, one line per message, to a file.
//!
//! Every wait is bounded: `wait_*` helpers return what they have at the deadline and let the
//! test's `assert_eq!` show the difference, so a failure prints what did arrive.

#![allow(dead_code)] // not every test uses every helper

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The image every test container runs: `FROM scratch` + Debian's static busybox.
pub const TEST_IMAGE: &str = "luaspout-test-busybox:latest";

/// How long tests wait for lines that should arrive. Generous: CI machines are slow, and a
/// passing test never waits this long.
pub const ARRIVE: Duration = Duration::from_secs(15);

/// How long tests keep listening after the expected lines arrived, to catch duplicates and
/// lines that should not have been delivered.
pub const SETTLE: Duration = Duration::from_millis(1000);

// ---------------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------------

/// Runs `docker ARGS` and returns its output (whatever the exit status).
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e} (is docker.io installed?)", args.join(" ")))
}

/// Runs `docker ARGS`, panics unless it succeeds, returns its stdout without the trailing newline.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string()
}

/// True when the `docker` CLI is installed and dockerd answers.
pub fn docker_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Panics with a clear message unless dockerd is reachable: end-to-end tests fail without
/// Docker, they do not skip. (`tests/run.sh` installs and starts it.)
pub fn require_docker() {
    assert!(
        docker_available(),
        "dockerd is not reachable (`docker info` failed). The end-to-end tests need a running \
         Docker daemon: run the suite with `bash tests/run.sh`, which installs and starts it."
    );
}

/// The test image, built once per test process (`DOCKER_BUILDKIT=0 docker build` of a
/// `FROM scratch` image holding `/bin/busybox`). Rebuilding an existing image is a cache hit, so
/// another process having built it already is fine. Also checks that Docker is available.
pub fn test_image() -> &'static str {
    static BUILT: Mutex<bool> = Mutex::new(false);
    require_docker();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "/bin/busybox is missing: install Debian's busybox-static (tests/run.sh does)");
        let dir = tempfile::tempdir().expect("temp dir for the image build");
        fs::copy(busybox, dir.path().join("busybox")).expect("copy /bin/busybox");
        fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
        )
        .expect("write Dockerfile");
        let out = Command::new("docker")
            .args(["build", "-q", "-t", TEST_IMAGE])
            .arg(dir.path())
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run docker build");
        assert!(out.status.success(), "building {TEST_IMAGE} failed: {}", String::from_utf8_lossy(&out.stderr));
        *built = true;
    }
    TEST_IMAGE
}

/// `n` random lowercase hex characters (n <= 16).
pub fn random_hex(n: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    format!("{:016x}", h.finish())[..n].to_string()
}

/// A fresh container name, `lstest-<12 hex>`: unique across parallel tests and test processes,
/// so a route can select exactly one test's containers with `filter.name`.
pub fn unique_name() -> String {
    format!("lstest-{}", random_hex(12))
}

/// A container of the test image; `docker rm -f` on drop.
pub struct Container {
    name: String,
    id: String,
}

/// `docker run -d --name lstest-<random> ARGS IMAGE sh -c CMD`.
pub fn run_container(args: &[&str], cmd: &str) -> Container {
    run_named(&unique_name(), args, cmd)
}

/// `docker run -d --name NAME ARGS IMAGE sh -c CMD`.
pub fn run_named(name: &str, args: &[&str], cmd: &str) -> Container {
    container_cmd("run", name, args, cmd)
}

/// `docker run -d --name NAME ARGS IMAGE COMMAND...`: another image than the busybox one.
pub fn run_image(name: &str, args: &[&str], image: &str, command: &[&str]) -> Container {
    let mut argv = vec!["run", "-d", "--name", name];
    argv.extend(args);
    argv.push(image);
    argv.extend(command);
    let id = docker_ok(&argv);
    assert_eq!(id.len(), 64, "unexpected output of docker run: {id:?}");
    Container { name: name.to_string(), id }
}

/// `docker create --name NAME ARGS IMAGE sh -c CMD`: the ID is known before the container
/// runs (for `filter.id` routes); [`Container::start`] starts it.
pub fn create_named(name: &str, args: &[&str], cmd: &str) -> Container {
    container_cmd("create", name, args, cmd)
}

fn container_cmd(verb: &str, name: &str, args: &[&str], cmd: &str) -> Container {
    let image = test_image();
    let mut argv = vec![verb];
    if verb == "run" {
        argv.push("-d");
    }
    argv.extend(["--name", name]);
    argv.extend(args);
    argv.extend([image, "sh", "-c", cmd]);
    let id = docker_ok(&argv);
    assert_eq!(id.len(), 64, "unexpected output of docker {verb}: {id:?}");
    Container { name: name.to_string(), id }
}

impl Container {
    /// The current name (no leading `/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full 64-character ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The 12-character short ID.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// `docker inspect -f FORMAT`.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, &self.id])
    }

    /// The main process's PID on the host (`State.Pid`); panics if the container is not running.
    pub fn pid(&self) -> u32 {
        let pid: u32 = self.inspect("{{.State.Pid}}").parse().expect("State.Pid is a number");
        assert_ne!(pid, 0, "container {} is not running", self.name);
        pid
    }

    /// `docker start`.
    pub fn start(&self) {
        docker_ok(&["start", &self.id]);
    }

    /// `docker restart -t 0` (the `sh` running as PID 1 ignores SIGTERM, so don't wait for it).
    pub fn restart(&self) {
        docker_ok(&["restart", "-t", "0", &self.id]);
    }

    /// `docker rename`.
    pub fn rename(&mut self, new_name: &str) {
        docker_ok(&["rename", &self.id, new_name]);
        self.name = new_name.to_string();
    }

    /// Makes the running container log `text` on its stdout, now: `docker exec` writes it to
    /// PID 1's stdout (`/proc/1/fd/1`), which is the container's log stream. Lets a test decide
    /// exactly when a line is logged instead of guessing with `sleep` inside the container.
    pub fn log_stdout(&self, text: &str) {
        docker_ok(&["exec", &self.id, "/bin/busybox", "sh", "-c", "printf '%s' \"$1\" > /proc/1/fd/1", "sh", text]);
    }

    /// Like [`Container::log_stdout`], on stderr.
    pub fn log_stderr(&self, text: &str) {
        docker_ok(&["exec", &self.id, "/bin/busybox", "sh", "-c", "printf '%s' \"$1\" > /proc/1/fd/2", "sh", text]);
    }

    /// What Docker itself stored: (`docker logs` stdout, stderr).
    pub fn logs(&self) -> (Vec<u8>, Vec<u8>) {
        let out = docker(&["logs", &self.id]);
        assert!(out.status.success(), "docker logs {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        (out.stdout, out.stderr)
    }

    /// Waits until the container's own log (stdout or stderr, as Docker stored it) contains
    /// `needle`: proof that the container has logged it. Panics after [`ARRIVE`].
    pub fn wait_logged(&self, needle: &str) {
        let deadline = Instant::now() + ARRIVE;
        loop {
            let (out, err) = self.logs();
            if contains(&out, needle.as_bytes()) || contains(&err, needle.as_bytes()) {
                return;
            }
            assert!(Instant::now() < deadline, "container {} never logged {needle:?}", self.name);
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the container has stopped running. Panics after [`ARRIVE`].
    pub fn wait_exited(&self) {
        let deadline = Instant::now() + ARRIVE;
        while self.inspect("{{.State.Running}}") == "true" {
            assert!(Instant::now() < deadline, "container {} is still running", self.name);
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Receivers
// ---------------------------------------------------------------------------------------------

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

struct TcpShared {
    buf: Mutex<Vec<u8>>,
    cond: Condvar,
    connections: AtomicUsize,
    stop: AtomicBool,
    /// While set, the port is closed and open connections are half-closed (see
    /// [`TcpReceiver::go_down`]).
    down: AtomicBool,
    /// While set, connections are not read (the sender's socket buffers fill up).
    stalled: AtomicBool,
    /// Whether the port is open.
    listening: AtomicBool,
    /// The open connections, to half-close them.
    open: Mutex<Vec<TcpStream>>,
}

/// A TCP server on 127.0.0.1 that appends everything it receives, from any number of
/// connections, to one buffer. It can go down and come back on the same port, and stall.
pub struct TcpReceiver {
    port: u16,
    shared: Arc<TcpShared>,
}

impl TcpReceiver {
    /// Listens on `127.0.0.1:0`.
    pub fn start() -> TcpReceiver {
        Self::from_listener(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
    }

    /// Listens on a pre-chosen port (from [`free_port`]): the "sink starts late" case.
    pub fn start_on(port: u16) -> TcpReceiver {
        Self::from_listener(bind_port(port))
    }

    fn from_listener(listener: TcpListener) -> TcpReceiver {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(TcpShared {
            buf: Mutex::new(Vec::new()),
            cond: Condvar::new(),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            down: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            listening: AtomicBool::new(true),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        thread::spawn(move || {
            let mut listener = Some(listener);
            while !s.stop.load(Ordering::Relaxed) {
                let down = s.down.load(Ordering::SeqCst);
                if !down && listener.is_none() {
                    let l = bind_port(port);
                    l.set_nonblocking(true).unwrap();
                    listener = Some(l);
                    s.listening.store(true, Ordering::SeqCst);
                }
                let Some(l) = &listener else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                match l.accept() {
                    Ok((stream, _)) => {
                        s.connections.fetch_add(1, Ordering::SeqCst);
                        s.open.lock().unwrap().push(stream.try_clone().unwrap());
                        let s = s.clone();
                        thread::spawn(move || read_connection(stream, &s));
                    }
                    // Going down with nothing left in the backlog: a connection the kernel
                    // had completed but nobody accepted would be reset with its data.
                    Err(_) if down => {
                        listener = None;
                        s.listening.store(false, Ordering::SeqCst);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TcpReceiver { port, shared }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, for route URIs.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Goes down as a well-behaved server does: the port is closed (connections are refused)
    /// and each open connection is half-closed, then still read until the sender closes it,
    /// so every byte the sender wrote is received.
    pub fn go_down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        while self.shared.listening.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Listens on the same port again.
    pub fn come_back(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
        while !self.shared.listening.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops (or resumes) reading: a stalled sink whose socket buffers fill up.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }
}

/// Binds 127.0.0.1:`port`, waiting a little for a previous listener of the port to close.
fn bind_port(port: u16) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(l) => return l,
            Err(e) if Instant::now() >= deadline => panic!("bind 127.0.0.1:{port}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The waits of a receiver that appends every byte it gets, from every connection, to one
/// buffer ([`TcpReceiver`], [`tls::TlsReceiver`]): what arrived, as bytes or lines.
pub trait ByteReceiver {
    /// Everything received so far.
    fn contents(&self) -> Vec<u8>;

    /// Waits until `done(received)` holds or `timeout` passes; returns what was received.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8>;

    /// Waits until at least `n` complete (`\n`-terminated) lines arrived or `timeout` passes;
    /// returns the complete lines received, without their `\n`, as raw bytes.
    fn wait_for_line_bytes(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        split_lines(&self.wait_until(timeout, |b| count_newlines(b) >= n))
    }

    /// [`ByteReceiver::wait_for_line_bytes`] as (lossy) UTF-8 strings.
    fn wait_for_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_for_line_bytes(n, timeout).into_iter().map(lossy).collect()
    }

    /// Waits until at least `n` bytes arrived or `timeout` passes.
    fn wait_for_bytes(&self, n: usize, timeout: Duration) -> Vec<u8> {
        self.wait_until(timeout, |b| b.len() >= n)
    }

    /// The complete lines received so far.
    fn lines(&self) -> Vec<String> {
        split_lines(&self.contents()).into_iter().map(lossy).collect()
    }
}

impl ByteReceiver for TcpReceiver {
    /// Everything received so far.
    fn contents(&self) -> Vec<u8> {
        self.shared.buf.lock().unwrap().clone()
    }

    /// Waits until `done(received)` holds or `timeout` passes; returns what was received.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut buf = self.shared.buf.lock().unwrap();
        loop {
            let now = Instant::now();
            if done(&buf) || now >= deadline {
                return buf.clone();
            }
            buf = self.shared.cond.wait_timeout(buf, deadline - now).unwrap().0;
        }
    }
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn read_connection(mut stream: TcpStream, s: &TcpShared) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut chunk = vec![0u8; 64 * 1024];
    while !s.stop.load(Ordering::Relaxed) {
        if s.stalled.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                s.buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                s.cond.notify_all();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

struct UdpShared {
    datagrams: Mutex<Vec<Vec<u8>>>,
    cond: Condvar,
    stop: AtomicBool,
}

/// A UDP socket on 127.0.0.1:0 that keeps every datagram it receives, in order.
pub struct UdpReceiver {
    port: u16,
    shared: Arc<UdpShared>,
}

impl UdpReceiver {
    /// Binds `127.0.0.1:0`.
    pub fn start() -> UdpReceiver {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind udp 127.0.0.1:0");
        let port = socket.local_addr().unwrap().port();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let shared = Arc::new(UdpShared {
            datagrams: Mutex::new(Vec::new()),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    s.datagrams.lock().unwrap().push(buf[..n].to_vec());
                    s.cond.notify_all();
                }
            }
        });
        UdpReceiver { port, shared }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, for route URIs.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until at least `n` datagrams arrived or `timeout` passes; returns all received.
    pub fn wait_for_datagrams(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut d = self.shared.datagrams.lock().unwrap();
        loop {
            let now = Instant::now();
            if d.len() >= n || now >= deadline {
                return d.clone();
            }
            d = self.shared.cond.wait_timeout(d, deadline - now).unwrap().0;
        }
    }

    /// Every datagram received so far.
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        self.shared.datagrams.lock().unwrap().clone()
    }
}

impl Drop for UdpReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The number of `\n` bytes.
pub fn count_newlines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// The complete (`\n`-terminated) lines of `b`, without the `\n`; an unterminated tail is left out.
pub fn split_lines(b: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
    lines.pop(); // the part after the last `\n` (empty when `b` ends with one)
    lines
}

/// Bytes as a String, invalid UTF-8 replaced.
pub fn lossy(b: impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(b.as_ref()).into_owned()
}

/// Bytes shown with escapes, for assertion messages about binary data.
pub fn escaped(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// luaspout
// ---------------------------------------------------------------------------------------------

/// Environment variables passed through from the test process to luaspout; everything else is
/// cleared, so a stray `ROUTE_URIS` or `LUASPOUT_CONFIG` in the developer's shell can't leak in.
/// `LUASPOUT_SOURCE` passes through so that `tests/run.sh` can run the end-to-end tests once
/// reading json-file logs from their files and once through the Docker API.
const PASSED_ENV: &[&str] = &[
    "PATH",
    // glibc's settings, so that the bench can run luaspout as the image does (Dockerfile).
    "GLIBC_TUNABLES",
    "HOME",
    "TZ",
    "DOCKER_HOST",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "RUST_BACKTRACE",
    "LUASPOUT_SOURCE",
];

/// The binary [`LuaspoutBuilder`] starts, once chosen (see [`luaspout_bin`]).
static LUASPOUT_BIN: OnceLock<String> = OnceLock::new();

/// The path of the binary under test: cargo's build of this tree, unless
/// [`use_luaspout_bin`] named another before the first luaspout started.
pub fn luaspout_bin() -> &'static str {
    LUASPOUT_BIN.get_or_init(|| env!("CARGO_BIN_EXE_luaspout").to_string())
}

/// Makes every luaspout started from now on the binary at `path` instead of cargo's build (the
/// e2e bench measures a shipped binary this way). Panics if one was already chosen or started.
pub fn use_luaspout_bin(path: String) {
    if let Err(path) = LUASPOUT_BIN.set(path) {
        panic!("use_luaspout_bin({path}): {} is already the binary under test", luaspout_bin());
    }
}

/// Builds a [`Luaspout`] process: arguments, environment, an optional config file.
pub struct LuaspoutBuilder {
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    config: Option<String>,
}

impl LuaspoutBuilder {
    /// Adds a command-line argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable for luaspout.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes `lua` to `routes.lua` in the process's temp dir and passes `--config` to it.
    pub fn config(mut self, lua: &str) -> Self {
        self.config = Some(lua.to_string());
        self
    }

    /// Spawns the process without waiting for it to be ready.
    pub fn spawn(self) -> Luaspout {
        require_docker();
        let dir = tempfile::Builder::new().prefix("luaspout-e2e-").tempdir().expect("temp dir");
        let port = free_port();
        let stderr_path = dir.path().join("stderr.log");
        let stdout_path = dir.path().join("stdout.log");
        let mut cmd = Command::new(luaspout_bin());
        cmd.env_clear();
        for key in PASSED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        if std::env::var_os("LUASPOUT_TEST_DEBUG").is_some() {
            cmd.env("DEBUG", "1");
        }
        cmd.env("PORT", port.to_string())
            .env("HTTP_BIND_ADDRESS", "127.0.0.1")
            // A directory that does not exist: no route persistence between tests.
            .env("ROUTESPATH", dir.path().join("no-routes-dir"))
            // Each process its own cursors, unless a test shares a file between two runs.
            .env("LUASPOUT_STATE", dir.path().join("state.json"));
        let mut config_path = None;
        if let Some(lua) = &self.config {
            let path = dir.path().join("routes.lua");
            fs::write(&path, lua).expect("write routes.lua");
            cmd.arg("--config").arg(&path);
            config_path = Some(path);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("stderr file"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", luaspout_bin()));
        Luaspout { child, port, stderr_path, stdout_path, config_path, _dir: dir }
    }

    /// Spawns the process and waits until `GET /health` answers 200.
    pub fn start(self) -> Luaspout {
        let mut l = self.spawn();
        l.wait_ready();
        l
    }
}

/// A running luaspout; killed on drop (its stderr is printed if the test is failing).
pub struct Luaspout {
    child: Child,
    port: u16,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    config_path: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Luaspout {
    /// A builder with no arguments and a clean environment.
    pub fn builder() -> LuaspoutBuilder {
        LuaspoutBuilder { args: Vec::new(), env: Vec::new(), config: None }
    }

    /// `luaspout URIS` with a clean environment, ready.
    pub fn start(uris: &str) -> Luaspout {
        Self::builder().arg(uris).start()
    }

    /// The HTTP port (bound on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process ID, for reading its CPU time and memory in `/proc` (benches/e2e/).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file written by [`LuaspoutBuilder::config`], if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// What the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGKILL and reaps the process: a crash, with no chance to save anything.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (what `docker stop` sends) and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success(), "kill -TERM {pid}");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "luaspout did not exit within {timeout:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics (with stderr) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("luaspout exited ({status}); stderr:\n{}", self.stderr());
        }
    }

    /// Polls `GET /health` until it answers 200; panics (with stderr) if the process exits or
    /// 15 s pass.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.assert_running();
            if let Some((200, _)) = http_get(self.port, "/health") {
                return;
            }
            assert!(Instant::now() < deadline, "luaspout never answered 200 on /health; stderr:\n{}", self.stderr());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until the HTTP server answers at all (any status): for tests where `/health` may
    /// rightly say 503 (a sink that is down). Panics (with stderr) if the process exits or 15 s
    /// pass.
    pub fn wait_http(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.assert_running();
            if http_get(self.port, "/health").is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "luaspout never answered HTTP; stderr:\n{}", self.stderr());
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on luaspout's HTTP port: `Some((status, body))`, `None` if it can't connect.
    pub fn get(&self, path: &str) -> Option<(u16, Vec<u8>)> {
        http_get(self.port, path)
    }
}

impl Drop for Luaspout {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- luaspout stderr ----\n{}---- end of luaspout stderr ----", self.stderr());
        }
    }
}

/// Writes `text` over `path` the way an editor saves: a new file renamed over the old one.
pub fn save_by_rename(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("lua.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Runs `luaspout ARGS` to completion (for `check`, `--version`) with a clean environment.
pub fn luaspout_output(args: &[&str]) -> Output {
    let mut cmd = Command::new(luaspout_bin());
    cmd.env_clear();
    for key in PASSED_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn luaspout");
    // Bounded: `check` must not start the router.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("`luaspout {}` did not exit within 20 s", args.join(" "));
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("luaspout output")
}

/// A minimal HTTP/1.0 `GET` on 127.0.0.1:`port`: `Some((status, body))`, or `None` if the
/// connection or the response fails (5 s timeouts).
pub fn http_get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status_line = std::str::from_utf8(&resp[..head_end]).ok()?.lines().next()?.to_string();
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, resp[head_end + 4..].to_vec()))
}

// ---------------------------------------------------------------------------------------------
// rsyslogd
// ---------------------------------------------------------------------------------------------

/// What the private rsyslogd writes per message: the properties it parsed.
pub const RSYSLOG_TEMPLATE: &str = "HOST=%hostname% TAG=%syslogtag% APP=%app-name% PROCID=%procid% MSG=%msg%\\n";

/// A private rsyslogd (Debian's `rsyslog`) listening with `imtcp` and `imudp` on the same free
/// loopback port, writing one [`RSYSLOG_TEMPLATE`] line per received message to a file.
/// Killed on drop.
pub struct Rsyslogd {
    child: Child,
    port: u16,
    out: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

fn rsyslogd_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/rsyslogd"))
}

impl Rsyslogd {
    /// Starts it and waits until its TCP port accepts connections (10 s at most).
    pub fn start() -> Rsyslogd {
        let bin = rsyslogd_bin();
        assert!(bin.exists(), "rsyslogd not found: install Debian's rsyslog (tests/run.sh does)");
        let dir = tempfile::Builder::new().prefix("luaspout-rsyslog-").tempdir().expect("temp dir");
        let port = free_port();
        let out = dir.path().join("messages.log");
        let conf = dir.path().join("rsyslog.conf");
        let d = dir.path().display();
        fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}")
module(load="imtcp")
module(load="imudp")
template(name="lstest" type="string" string="{RSYSLOG_TEMPLATE}")
input(type="imtcp" port="{port}" address="127.0.0.1")
input(type="imudp" port="{port}" address="127.0.0.1")
*.* action(type="omfile" file="{out}" template="lstest")
"#,
                out = out.display()
            ),
        )
        .expect("write rsyslog.conf");
        let mut r = Rsyslogd::spawn(&bin, dir, &conf, port, out);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", fs::read_to_string(&r.stderr).unwrap_or_default());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return r;
            }
            assert!(Instant::now() < deadline, "rsyslogd never listened on 127.0.0.1:{port}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `bin -n -f conf` with its pid, stdout and stderr files in `dir`, which the returned
    /// guard owns (so it lives as long as the daemon).
    pub(crate) fn spawn(bin: &Path, dir: tempfile::TempDir, conf: &Path, port: u16, out: PathBuf) -> Rsyslogd {
        let stderr = dir.path().join("rsyslogd.stderr");
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("rsyslogd.stdout")).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Rsyslogd { child, port, out, stderr, _dir: dir }
    }

    /// The port of both its TCP and UDP inputs.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        fs::read(&self.out).map(|b| split_lines(&b).into_iter().map(lossy).collect()).unwrap_or_default()
    }

    /// Waits until at least `n` lines were written or `timeout` passes; returns them.
    pub fn wait_for_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- rsyslogd stderr ----\n{}", fs::read_to_string(&self.stderr).unwrap_or_default());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Syslog lines
// ---------------------------------------------------------------------------------------------

/// Replaces the timestamp of a syslog line with `TS` after checking it is RFC 3339
/// (`2021-12-06T15:27:06Z`, optionally with fractional seconds or an offset): the one field a
/// test cannot predict. Works on RFC 5424 (`<PRI>1 TS …`) and RFC 3164-with-RFC-3339-stamp
/// (`<PRI>TS …`) lines. A line that doesn't have that shape is returned unchanged, so the
/// test's `assert_eq!` shows it.
pub fn mask_syslog_timestamp(line: &str) -> String {
    static RFC3339: OnceLock<regex::Regex> = OnceLock::new();
    let re = RFC3339.get_or_init(|| {
        regex::Regex::new(
            r"^(<\d{1,3}>(?:1 )?)(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})) ",
        )
        .unwrap()
    });
    match re.captures(line) {
        Some(c) => format!("{}TS {}", &c[1], &line[c[0].len()..]),
        None => line.to_string(),
    }
}

pub mod numbered;
/// TLS: certificates made at test time, a TLS receiver, rsyslogd with TLS, a rustls client.
pub mod tls;
