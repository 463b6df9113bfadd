//! Measures the Rust-implemented `spout` helpers against the pure-Lua code a config would
//! otherwise write for the same job, in the Lua state a config runs in.
//!
//! The helpers exist because they are cheaper per message than Lua (src/lua/spout.rs says
//! so); this bench is the evidence, re-measurable on any machine. Each case is timed as a loop
//! inside Lua (one Rust->Lua call per measurement, so the call into Lua is not what is
//! measured), after a warm-up that also picks the iteration count, as the best of 5 runs with
//! the two sides interleaved. Before timing, both sides of a case must give the same output for
//! the sample input, so a comparison of unequal work cannot pass silently.
//!
//! It prints ns per operation and the ratio; nothing is asserted about speed, since timings
//! depend on the machine. Run: `cargo bench --bench spout_helpers`.

use std::time::{Duration, Instant};

use luaspout::config::ConfigLocation;
use luaspout::lua::load::LoadedConfig;
use luaspout::lua::sandbox::LoadMode;
use luaspout::settings::Env;
use mlua::{Function, Lua, Value};

/// The log line the regex cases work on (120 bytes): a URL with a token, an e-mail
/// address, a status code.
const LINE: &str = "2021-12-06T15:27:06Z INFO [web-7] GET /api/v1/orders?id=12345&token=9f8e7d6c5b4a user=alice.smith@example.com status=503";
/// 2021-12-06T15:27:06.123456789Z, as `msg.time_ns`; `msg.time` is this divided by 1e9.
const TIME_NS: i64 = 1_638_804_426_123_456_789;
/// Wall time of one timed run; the iteration count is chosen during the warm-up to fill it.
const RUN_TARGET: Duration = Duration::from_millis(100);
/// A warm-up run at least this long is long enough to derive the iteration count from.
const WARM_UP_MIN: Duration = Duration::from_millis(20);
/// Timed runs per side; the best one counts.
const RUNS: usize = 5;

/// The sample data and the pure-Lua implementations, run once in the config's state with
/// `LINE` and `TIME_NS`. It returns `compile(body, name)`, which makes `function(n)` that runs
/// `body` (Lua statements assigning `out`) `n` times and returns the last `out`. Every field of
/// `fixtures` is a local of the compiled chunk, so the loop body reads locals and upvalues only,
/// as the fast idioms of docs/lua.md advise.
const FIXTURES: &str = r#"
local line, time_ns = ...
local format, gsub, find, concat, math_type = string.format, string.gsub, string.find, table.concat, math.type
local null = spout.null

-- A straightforward JSON encoder in Lua: escapes `"`, `\` and control characters, keeps
-- integers and floats apart (math.type), writes the shortest float text that reads back
-- exactly, and tells arrays (keys 1..n) from objects. Keys come out in `pairs` order
-- (spout.json also sorts them, which this encoder is spared).
local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
for byte = 0, 31 do
  local c = string.char(byte)
  escapes[c] = escapes[c] or format("\\u%04x", byte)
end
local float_formats = { "%.15g", "%.16g", "%.17g" }

local function encode_string(s)
  return '"' .. gsub(s, '[%c"\\]', escapes) .. '"'
end

local function encode_float(x)
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  local text
  for _, f in ipairs(float_formats) do
    text = format(f, x)
    if tonumber(text) == x then break end
  end
  if not find(text, "[.eE]") then text = text .. ".0" end
  return text
end

local encode
function encode(v)
  local kind = type(v)
  if kind == "string" then
    return encode_string(v)
  elseif kind == "number" then
    if math_type(v) == "integer" then return tostring(v) end
    return encode_float(v)
  elseif kind == "boolean" then
    return tostring(v)
  elseif v == nil or v == null then
    return "null"
  elseif kind ~= "table" then
    error("cannot encode a " .. kind .. " as JSON")
  end
  local count = 0
  for _ in pairs(v) do count = count + 1 end
  local parts = {}
  if count > 0 and count == #v then
    for i = 1, count do parts[i] = encode(v[i]) end
    return "[" .. concat(parts, ",") .. "]"
  end
  local i = 0
  for k, item in pairs(v) do
    i = i + 1
    parts[i] = encode_string(tostring(k)) .. ":" .. encode(item)
  end
  return "{" .. concat(parts, ",") .. "}"
end

local fixtures = {
  line = line,
  time_ns = time_ns,
  time = time_ns / 1e9,
  record = {
    time = time_ns / 1e9,
    time_ns = time_ns,
    stream = "stderr",
    log = 'GET /cart "quoted" failed:\n\tat Checkout.pay(Checkout.java:42) \\ ümlaut ✓ 日本',
    status = 503,
    duration = 0.0125,
    tags = { "http", "error" },
    container = {
      id = "5b6a0bef5159e8a7d5c0f6b3c2a1908172635445362718190a1b2c3d4e5f6a7b",
      name = "shop_web_1",
      image = "myorg/web:1.27",
      labels = {
        ["com.docker.compose.project"] = "shop",
        ["com.docker.compose.service"] = "web",
        tier = "front",
        team = "payments",
        version = "1.27.3",
      },
    },
  },
  json = spout.json,
  encode = encode,
  rfc3339 = spout.rfc3339,
  strftime = spout.strftime,
  date = os.date,
  format = format,
  floor = math.floor,
  gsub = gsub,
  find = find,
  match = string.match,
  sub = string.sub,
  email_re = spout.regex([[[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]+]]),
  token_re = spout.regex([[token=[^&\s]+]]),
  status_5xx_re = spout.regex([[status=5\d\d]]),
  status_re = spout.regex([[status=(\d+)]]),
  request_re = spout.regex([[(?P<method>[A-Z]+) (?P<path>/\S*)]]),
}

local names = {}
for name in pairs(fixtures) do names[#names + 1] = name end
table.sort(names)
local header = "local F = ...\nlocal " .. concat(names, ", ") .. " = F." .. concat(names, ", F.") .. "\n"

return function(body, name)
  local src = header .. "return function(n)\n  local out\n  for _ = 1, n do\n    " .. body
    .. "\n  end\n  return out\nend\n"
  return assert(load(src, "=" .. name, "t"))(fixtures)
end
"#;

/// What both sides of a case must return for the sample input.
enum Check {
    /// Exactly these bytes (or `true`/`false` for a boolean).
    Equal(String),
    /// The same JSON value once decoded (key order and float spelling may differ).
    SameJson,
}

/// One helper and its pure-Lua equivalent, each a loop body that assigns `out`.
struct Case {
    name: &'static str,
    rust: &'static str,
    lua: &'static str,
    check: Check,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "spout.json(record)",
            rust: "out = json(record)",
            lua: "out = encode(record)",
            check: Check::SameJson,
        },
        Case {
            name: "spout.rfc3339(time_ns)",
            rust: "out = rfc3339(time_ns)",
            lua: r#"out = date("!%Y-%m-%dT%H:%M:%S", time_ns // 1000000000) .. format(".%09dZ", time_ns % 1000000000)"#,
            check: Check::Equal("2021-12-06T15:27:06.123456789Z".into()),
        },
        Case {
            name: "spout.rfc3339(time, 3)",
            rust: "out = rfc3339(time, 3)",
            lua: r#"local secs = floor(time)
    out = date("!%Y-%m-%dT%H:%M:%S", secs) .. format(".%03dZ", floor((time - secs) * 1000))"#,
            check: Check::Equal("2021-12-06T15:27:06.123Z".into()),
        },
        Case {
            name: "spout.strftime(time, fmt)",
            rust: r#"out = strftime(time, "%b %e %H:%M:%S")"#,
            lua: r#"out = date("!%b %e %H:%M:%S", floor(time))"#,
            check: Check::Equal("Dec  6 15:27:06".into()),
        },
        Case {
            name: "re:replace (e-mail)",
            rust: r#"out = email_re:replace(line, "[email]")"#,
            lua: r#"out = gsub(line, "[A-Za-z0-9._%%+-]+@[A-Za-z0-9.-]+%.[A-Za-z]+", "[email]")"#,
            check: Check::Equal(LINE.replace("alice.smith@example.com", "[email]")),
        },
        Case {
            name: "re:replace (token=)",
            rust: r#"out = token_re:replace(line, "token=***")"#,
            lua: r#"out = gsub(line, "token=[^&%s]+", "token=***")"#,
            check: Check::Equal(LINE.replace("token=9f8e7d6c5b4a", "token=***")),
        },
        Case {
            name: "re:is_match (status=5xx)",
            rust: "out = status_5xx_re:is_match(line)",
            lua: r#"out = find(line, "status=5%d%d") ~= nil"#,
            check: Check::Equal("true".into()),
        },
        Case {
            name: "re:match (status=(n))",
            rust: "out = status_re:match(line)",
            lua: r#"out = match(line, "status=(%d+)")"#,
            check: Check::Equal("503".into()),
        },
        Case {
            name: "re:match (method, path)",
            rust: r#"local method, path = request_re:match(line)
    out = method .. " " .. path"#,
            lua: r#"local method, path = match(line, "(%u+) (/%S*)")
    out = method .. " " .. path"#,
            check: Check::Equal("GET /api/v1/orders?id=12345&token=9f8e7d6c5b4a".into()),
        },
        Case {
            name: "re:captures (method, path)",
            rust: r#"local c = request_re:captures(line)
    out = c.method .. " " .. c.path"#,
            lua: r#"local from, to, method, path = find(line, "(%u+) (/%S*)")
    local c = { [0] = sub(line, from, to), method, path, method = method, path = path }
    out = c.method .. " " .. c.path"#,
            check: Check::Equal("GET /api/v1/orders?id=12345&token=9f8e7d6c5b4a".into()),
        },
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lua = config_state()?;
    let compile: Function = lua.load(FIXTURES).set_name("=fixtures").call((LINE, TIME_NS))?;
    let compile_loop = |body: &str, name: String| -> mlua::Result<Function> { compile.call((body, name)) };

    println!("spout helpers vs pure Lua, Lua 5.4, {}-byte line; ns per operation, best of {RUNS}", LINE.len());
    println!("{:<28} {:>10} {:>14} {:>9}", "helper", "Rust ns/op", "pure-Lua ns/op", "speed-up");
    for case in cases() {
        let rust = compile_loop(case.rust, format!("{} (Rust)", case.name))?;
        let pure_lua = compile_loop(case.lua, format!("{} (pure Lua)", case.name))?;
        check_same_output(&case, &rust.call::<Value>(1)?, &pure_lua.call::<Value>(1)?);
        let (rust_ns, lua_ns) = measure_pair(&lua, &rust, &pure_lua)?;
        println!("{:<28} {:>10.0} {:>14.0} {:>8.1}x", case.name, rust_ns, lua_ns, lua_ns / rust_ns);
    }
    let empty = compile_loop("out = line", "empty loop".into())?;
    let iterations = warm_up(&lua, &empty)?;
    let loop_ns = best_of_runs(&lua, &empty, iterations)?;
    println!("(both columns include the Lua loop itself: {loop_ns:.0} ns per iteration)");
    Ok(())
}

/// A Lua state built as the router builds one for a worker (the sandboxed libraries, `os.date`
/// and the `spout` module), but without the guard: each timed loop runs millions of
/// iterations in one call, far past a line's instruction budget, and the guard's cost is the
/// pipeline bench's to show. The embedded default config without URIs declares no route.
fn config_state() -> anyhow::Result<Lua> {
    let config = luaspout::lua::load(&ConfigLocation::Embedded, Vec::new(), Env::default())?;
    Ok(LoadedConfig::load(&config, LoadMode::Unguarded)?.lua)
}

/// Panics unless both sides returned the output `case` expects.
fn check_same_output(case: &Case, rust: &Value, pure_lua: &Value) {
    let (rust, pure_lua) = (output_bytes(case.name, rust), output_bytes(case.name, pure_lua));
    match &case.check {
        Check::Equal(expected) => {
            for (side, out) in [("Rust", &rust), ("pure Lua", &pure_lua)] {
                assert_eq!(
                    String::from_utf8_lossy(out),
                    *expected,
                    "{}: the {side} side gives the wrong output",
                    case.name
                );
            }
        }
        Check::SameJson => {
            let decode = |side: &str, out: &[u8]| -> serde_json::Value {
                serde_json::from_slice(out).unwrap_or_else(|e| panic!("{}: {side} output is not JSON: {e}", case.name))
            };
            assert_eq!(
                decode("Rust", &rust),
                decode("pure Lua", &pure_lua),
                "{}: the two sides encode different JSON\n  Rust:     {}\n  pure Lua: {}",
                case.name,
                String::from_utf8_lossy(&rust),
                String::from_utf8_lossy(&pure_lua)
            );
        }
    }
}

/// A case's output as bytes: a string as it is, a boolean as `true`/`false`.
fn output_bytes(case: &str, out: &Value) -> Vec<u8> {
    match out {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Boolean(b) => b.to_string().into_bytes(),
        other => panic!("{case}: expected a string or a boolean, got {}", other.type_name()),
    }
}

/// ns per iteration of each loop, the best of [`RUNS`] runs, the two loops' runs alternating so
/// that a slow spell of a shared host hits both.
fn measure_pair(lua: &Lua, first: &Function, second: &Function) -> mlua::Result<(f64, f64)> {
    let (n1, n2) = (warm_up(lua, first)?, warm_up(lua, second)?);
    let (mut best1, mut best2) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..RUNS {
        best1 = best1.min(ns_per_iteration(lua, first, n1)?);
        best2 = best2.min(ns_per_iteration(lua, second, n2)?);
    }
    Ok((best1, best2))
}

/// ns per iteration of `run`, the best of [`RUNS`] runs of `iterations`.
fn best_of_runs(lua: &Lua, run: &Function, iterations: u64) -> mlua::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        best = best.min(ns_per_iteration(lua, run, iterations)?);
    }
    Ok(best)
}

/// Runs `run` with growing iteration counts until a run lasts [`WARM_UP_MIN`], and returns the
/// count that makes a run last about [`RUN_TARGET`].
fn warm_up(lua: &Lua, run: &Function) -> mlua::Result<u64> {
    let mut iterations = 64u64;
    loop {
        let elapsed = timed(lua, run, iterations)?;
        if elapsed >= WARM_UP_MIN {
            let scaled = iterations as f64 * RUN_TARGET.as_secs_f64() / elapsed.as_secs_f64();
            return Ok(scaled.max(1.0) as u64);
        }
        iterations *= 4;
    }
}

fn ns_per_iteration(lua: &Lua, run: &Function, iterations: u64) -> mlua::Result<f64> {
    Ok(timed(lua, run, iterations)?.as_nanos() as f64 / iterations as f64)
}

/// Wall time of one call of `run(iterations)`, started from a collected heap so that no run
/// pays for the garbage of the one before.
fn timed(lua: &Lua, run: &Function, iterations: u64) -> mlua::Result<Duration> {
    lua.gc_collect()?;
    let start = Instant::now();
    run.call::<Value>(iterations)?;
    Ok(start.elapsed())
}
