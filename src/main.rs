//! The `luaspout` command: parse the command line, set up logging, run.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use luaspout::authoring;
use luaspout::config::{self, ConfigLocation};
use luaspout::settings::{Env, Settings};

/// Routes every Docker container's logs to syslog, TCP, UDP and more, as logspout does,
/// configured by a Lua file.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Comma-separated route URIs, e.g. `syslog+tcp://logs:514?filter.name=*_db`
    /// (default: $ROUTE_URIS).
    uris: Option<String>,
    /// The Lua config (default: $LUASPOUT_CONFIG, else /etc/luaspout/routes.lua if it exists,
    /// else the embedded default, which turns the URIs into routes).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Load and validate a config without starting, and run the `test{}` cases it declares;
    /// prints `file:line: message` on error or failure.
    Check {
        /// The config to check (default: as for running).
        path: Option<PathBuf>,
        /// Route URIs, as `spout.args` will see them.
        uris: Option<String>,
    },
    /// Run sample lines from stdin through every route of a config, with no Docker and no
    /// sockets, and print what each route would send. A line that is a JSON object is a
    /// message: `{"data": "…", "source": "stderr", "time": "2024-01-01T00:00:00Z",
    /// "container": {"name": "web", "image": "…", "labels": {…}, "env": {…}}}`, all optional;
    /// any other line is data from the container `try` on stdout.
    Try {
        /// The config to try (default: as for running).
        path: Option<PathBuf>,
        /// Route URIs, as `spout.args` will see them.
        uris: Option<String>,
        /// Read every line as plain data, even one that is a JSON object (apps that log JSON).
        #[arg(long)]
        lines: bool,
        /// The time of the first line, RFC 3339 or integer nanoseconds; each next line is 1 ms
        /// later unless it gives its own time (default: now). Fix it for repeatable output.
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
    },
    /// Ask a running luaspout on this host for `/health` (`PORT`/`HTTP_PORT`, default 80):
    /// exit 0 if it answers 200. For the image's HEALTHCHECK, which has no curl.
    Health,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    init_tracing(&env);
    match cli.command {
        Some(Command::Check { path, uris }) => check(path.or(cli.config), uris.as_deref(), env),
        Some(Command::Try { path, uris, lines, start }) => {
            match try_config(path.or(cli.config), uris.as_deref(), lines, start.as_deref(), env) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Health) => health(&env),
        None => match serve(cli, env) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Through the same writer as the log: stderr may be gone by now.
                let _ = writeln!(luaspout::logging::Stderr, "luaspout: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: Option<PathBuf>, uris: Option<&str>, env: Env) -> ExitCode {
    let location = ConfigLocation::resolve(path, &env);
    let args = config::route_args(uris, &env);
    let result = Settings::from_env(env.clone()).and_then(|settings| {
        luaspout::transport::tls::check_env_files(&settings.tls).context("error with TLSConfig")?;
        let (c, tests) = luaspout::lua::load_with_tests(&location, args, env)?;
        luaspout::route::formatters(&c, &settings)?;
        luaspout::transport::plans(&c, &settings)?;
        println!("{}: ok, {} route(s)", c.source_name, c.routes.len());
        if tests.is_empty() {
            return Ok(true);
        }
        let report = authoring::run_tests(&c, &settings, &tests)?;
        for failure in &report.failures {
            eprintln!("{failure}");
        }
        match report.failures.len() {
            0 => println!("{} test{} passed", report.passed, if report.passed == 1 { "" } else { "s" }),
            n => eprintln!("{n} of {} tests failed", tests.len()),
        }
        Ok(report.failures.is_empty())
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `luaspout try`: reads all of stdin, then runs it through the config in one go (so
/// multiline groups close as they would, and output is complete and ordered).
fn try_config(
    path: Option<PathBuf>,
    uris: Option<&str>,
    lines_only: bool,
    start: Option<&str>,
    env: Env,
) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let start_ns = match start {
        Some(t) => authoring::parse_time(t).map_err(|e| anyhow::anyhow!("--start: {e}"))?,
        None => luaspout::timefmt::now_ns(),
    };
    let location = ConfigLocation::resolve(path, &env);
    let args = config::route_args(uris, &env);
    let settings = Settings::from_env(env.clone())?;
    let config = luaspout::lua::load(&location, args, env)?;
    luaspout::route::formatters(&config, &settings)?;
    let plans = luaspout::transport::plans(&config, &settings)?;
    let mut maker = authoring::MessageMaker::new(start_ns);
    let mut messages = Vec::new();
    for (n, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let line = line.context("cannot read stdin")?;
        let message = authoring::parse_try_line(&line, lines_only)
            .and_then(|input| maker.make(&input))
            .map_err(|e| anyhow::anyhow!("stdin:{}: {e}", n + 1))?;
        messages.push(message);
    }
    let results = luaspout::router::dry_run(config, &settings, messages)?;
    let results = authoring::batch_bodies(results, &plans)?;
    let mut out = std::io::stdout().lock();
    authoring::write_listing(&results, &mut out)?;
    out.flush()?;
    Ok(())
}

/// `luaspout try | head` is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

fn health(env: &Env) -> ExitCode {
    use std::io::{Read, Write};
    let port = env.get("PORT").or_else(|| env.get("HTTP_PORT")).unwrap_or_else(|| "80".into());
    let ask = || -> std::io::Result<String> {
        let addr = format!("127.0.0.1:{port}");
        let timeout = std::time::Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect_timeout(&addr.parse().map_err(std::io::Error::other)?, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    };
    match ask() {
        Ok(answer) if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") => {
            print!("{}", answer.split("\r\n\r\n").nth(1).unwrap_or(""));
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprintln!("luaspout health: {}", answer.split("\r\n\r\n").nth(1).unwrap_or(&answer).trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("luaspout health: cannot reach 127.0.0.1:{port}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: Cli, env: Env) -> anyhow::Result<()> {
    let location = ConfigLocation::resolve(cli.config, &env);
    let args = config::route_args(cli.uris.as_deref(), &env);
    let config = luaspout::lua::load(&location, args.clone(), env.clone())?;
    let settings = Settings::from_env(env)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        luaspout::run(settings, location, args, config, shutdown).await
    });
    // A config load stuck in a C function (see reload) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// Cancels `token` on SIGINT or SIGTERM (what `docker stop` sends). SIGHUP is taken over here
/// too, first thing, so it never ends the process; the reloader reloads the config on it.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut hangup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = async { while hangup.recv().await.is_some() {} } => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}

/// Quiet by default (the startup banner, warnings and errors); `DEBUG` (any value, as in
/// logspout) for more; `RUST_LOG` overrides both.
fn init_tracing(env: &Env) {
    let default = if env.get("DEBUG").is_some() { "luaspout=debug,warn" } else { "luaspout=info,warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A stderr whose reader went away must never fail the router (see logging).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| luaspout::logging::Stderr)
        .log_internal_errors(false)
        .init();
}
