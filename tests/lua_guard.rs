//! The Lua guard end to end, against the real binary and the real dockerd: hostile Lua (in a
//! route's functions or in the config itself) costs its own line or its own reload, and never
//! stalls another route, startup, reloads or shutdown.

mod util;

use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// Waits until `rx` holds `n` lines (or [`ARRIVE`] passes) and returns them.
fn lines_after(rx: &TcpReceiver, n: usize, within: Duration) -> Vec<String> {
    rx.wait_until(within, |b| count_newlines(b) >= n);
    rx.lines()
}

/// `/health` as JSON.
fn health(ls: &Luaspout) -> serde_json::Value {
    let (_, body) = ls.get("/health").expect("GET /health");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("/health is not JSON ({e}): {}", lossy(&body)))
}

/// Polls `/health` until `done` holds for it; panics with the last body after `within`.
fn wait_health(ls: &Luaspout, within: Duration, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let h = health(ls);
        if done(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "/health never got there: {h}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_looping_sibling_route_does_not_hold_back_an_innocent_one() {
    let (looping, innocent) = (TcpReceiver::start(), TcpReceiver::start());
    let name = unique_name();
    let config = format!(
        r#"
route {{ name = "looping", to = "raw+tcp://{a}", match = {{ name = "{name}" }},
        filter = function(m) if m.data:find("LOOP", 1, true) then while true do end end return true end }}
route {{ name = "innocent", to = "raw+tcp://{b}", match = {{ name = "{name}" }} }}
"#,
        a = looping.addr(),
        b = innocent.addr()
    );
    let mut ls = Luaspout::builder().config(&config).start();
    let started = Instant::now();
    let _c = run_named(
        &name,
        &[],
        "i=0; while [ $i -lt 300 ]; do echo LOOP $i; i=$((i+1)); done; \
         i=0; while [ $i -lt 100 ]; do echo plain $i; i=$((i+1)); done; sleep 60",
    );
    let got = lines_after(&innocent, 400, Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(got.len(), 400, "the innocent route got {} of 400 lines in {took:?}", got.len());
    let expected: Vec<String> =
        (0..300).map(|i| format!("LOOP {i}")).chain((0..100).map(|i| format!("plain {i}"))).collect();
    assert_eq!(got, expected);
    // Each looping line costs its own budget (about a million instructions), nothing more.
    assert!(took < Duration::from_secs(20), "400 lines took {took:?}");
    // The looping route's lines go out too, by its on_error (pass): nothing is lost there either.
    assert_eq!(lines_after(&looping, 400, ARRIVE), expected);
    ls.assert_running();
    let (_, metrics) = ls.get("/metrics").unwrap();
    let metrics = lossy(&metrics);
    assert!(
        metrics.lines().any(|l| l == r#"luaspout_route_lua_errors_total{route="looping"} 300"#),
        "300 budget errors counted:\n{metrics}"
    );
}

#[test]
fn an_allocation_driven_by_a_line_costs_only_that_line() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let config = format!(
        r#"
route {{ name = "rep", to = "raw+tcp://{addr}", match = {{ name = "{name}" }},
        format = function(m)
          local n = tonumber(m.data:match("^rep (%d+)$"))
          if n then return #string.rep("x", n) .. " bytes" end
          return m.data
        end }}
"#,
        addr = rx.addr()
    );
    let mut ls = Luaspout::builder().config(&config).env("LUASPOUT_LUA_MEMORY_MB", "16").start();
    let _c = run_named(&name, &[], "echo rep 1000; echo rep 1000000000; echo rep 100000000; echo after; sleep 60");
    // The two lines whose strings would pass the 16 MiB cap go out unformatted (on_error =
    // "pass"); the process lives on and so does the route.
    assert_eq!(lines_after(&rx, 4, ARRIVE), ["1000 bytes", "rep 1000000000", "rep 100000000", "after"]);
    ls.assert_running();
    let (_, metrics) = ls.get("/metrics").unwrap();
    let metrics = lossy(&metrics);
    assert!(metrics.lines().any(|l| l == r#"luaspout_route_lua_errors_total{route="rep"} 2"#), "{metrics}");
    assert!(ls.stderr().contains("not enough memory"), "{}", ls.stderr());
}

#[test]
fn a_config_that_loops_is_refused_at_start_and_at_reload() {
    // At start: refused with file:line, in bounded time.
    let mut ls = Luaspout::builder().config("route { to = 'raw+tcp://127.0.0.1:9' }\nwhile true do end\n").spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ls.is_running() {
        assert!(Instant::now() < deadline, "a looping config hung startup");
        thread::sleep(Duration::from_millis(50));
    }
    let path = ls.config_path().unwrap().display().to_string();
    assert!(ls.stderr().contains(&format!("{path}:2: the config ran past its instruction budget")), "{}", ls.stderr());

    // At reload: refused, the running config stays, and the next good config applies.
    let rx = TcpReceiver::start();
    let name = unique_name();
    let config = |tag: &str| {
        format!(
            r#"route {{ to = "raw+tcp://{}", match = {{ name = "{name}" }}, format = function(m) return "{tag} " .. m.data end }}"#,
            rx.addr()
        )
    };
    let ls = Luaspout::builder().config(&config("v1")).start();
    let path = ls.config_path().unwrap().to_path_buf();
    save_by_rename(&path, "local n = 0\nwhile true do n = n + 1 end\n");
    let h = wait_health(&ls, ARRIVE, |h| h["config_error"].is_string());
    let error = h["config_error"].as_str().unwrap();
    assert!(error.contains(&format!("{}:2: the config ran past its instruction budget", path.display())), "{h}");
    let c = run_named(&name, &[], "echo one; sleep 60");
    assert_eq!(lines_after(&rx, 1, ARRIVE), ["v1 one"], "the old config still routes");
    save_by_rename(&path, &config("v2"));
    wait_health(&ls, ARRIVE, |h| h["config_error"].is_null() && h["generation"] == 2);
    c.log_stdout("two\n");
    assert_eq!(lines_after(&rx, 2, ARRIVE), ["v1 one", "v2 two"]);
}

#[test]
fn check_refuses_bytecode_and_the_host_environment() {
    let dir = tempfile::tempdir().unwrap();
    let bytecode = mlua::Lua::new().load("route { to = 'raw+tcp://127.0.0.1:9' }").into_function().unwrap().dump(true);
    let check = |file: &str, text: &[u8]| {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let out = luaspout_output(&["check", path.to_str().unwrap()]);
        (out.status.success(), lossy(&out.stderr))
    };
    let (ok, err) = check("compiled.lua", &bytecode);
    assert!(!ok && err.contains("compiled.lua: is a binary (precompiled) Lua chunk"), "a precompiled config: {err}");

    let mut loader = b"local code = \"".to_vec();
    for b in &bytecode {
        loader.extend(format!("\\{b}").as_bytes());
    }
    loader.extend(b"\"\nlocal f = assert(load(code))\nf()\n");
    let (ok, err) = check("loader.lua", &loader);
    assert!(!ok && err.contains("loader.lua:2:") && err.contains("binary chunk"), "load() of bytecode: {err}");

    let (ok, err) = check("dump.lua", b"local f = load(string.dump(function() end))\n");
    assert!(!ok && err.contains("dump.lua:1:"), "string.dump: {err}");

    let (ok, err) = check("getenv.lua", b"route { to = os.getenv('DEST') }\n");
    assert!(!ok && err.contains("getenv.lua:1:") && err.contains("getenv"), "os.getenv: {err}");
}

/// A filter that, on a `STUCK` line, backtracks inside one Lua pattern call (C code the count
/// hook cannot interrupt): about 5 s at a length of 360, and hours at 2000 (it grows as the
/// fourth power of the length).
fn stuck_config(rx: &TcpReceiver, name: &str, length: usize) -> String {
    format!(
        r#"
route {{ name = "slow-pattern", to = "raw+tcp://{addr}", match = {{ name = "{name}" }},
        filter = function(m)
          if m.data == "STUCK" then string.rep("a", {length}):find(".-.-.-b") end
          return true
        end }}
"#,
        addr = rx.addr()
    )
}

#[test]
fn the_watchdog_shows_a_worker_stuck_in_one_call() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let ls = Luaspout::builder()
        .config(&stuck_config(&rx, &name, 360))
        .env("LUASPOUT_LUA_WATCHDOG", "500ms")
        .env("LUASPOUT_WORKERS", "1")
        .start();
    assert_eq!(health(&ls)["status"], "healthy");
    let _c = run_named(&name, &[], "echo STUCK; echo after; sleep 60");
    let h = wait_health(&ls, ARRIVE, |h| h["status"] == "degraded");
    let stuck = &h["lua_stuck"][0];
    assert_eq!(stuck["route"], "slow-pattern", "{h}");
    assert_eq!(stuck["thread"], "router-0", "{h}");
    assert!(stuck["busy_seconds"].as_f64().unwrap() >= 0.5, "{h}");
    let (_, metrics) = ls.get("/metrics").unwrap();
    let busy = lossy(&metrics)
        .lines()
        .find_map(|l| l.strip_prefix(r#"luaspout_lua_busy_seconds{thread="router-0"} "#).map(str::to_string))
        .expect("a busy gauge for router-0");
    assert!(busy.parse::<f64>().unwrap() > 0.0, "{busy}");
    // When the call returns, the lines go on and the status clears.
    assert_eq!(lines_after(&rx, 2, Duration::from_secs(120)), ["STUCK", "after"]);
    wait_health(&ls, ARRIVE, |h| h["status"] == "healthy");
}

#[test]
fn sigterm_ends_luaspout_while_lua_is_stuck() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let mut ls =
        Luaspout::builder().config(&stuck_config(&rx, &name, 2000)).env("LUASPOUT_LUA_WATCHDOG", "200ms").start();
    let _c = run_named(&name, &[], "echo STUCK; sleep 60");
    wait_health(&ls, ARRIVE, |h| h["status"] == "degraded");
    let asked = Instant::now();
    let status = ls.terminate(Duration::from_secs(15));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    assert!(status.code().is_some(), "luaspout exited by itself, not by a signal: {status}");
}
