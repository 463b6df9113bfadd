-- Drop health checks and debug lines before they cost anything downstream.
--
-- Health checks: access-log lines for the usual probe paths (/health, /healthz, /ready,
-- /live, /ping, /status), and lines from probe user agents (kube-probe, ELB-HealthChecker,
-- Docker's own curl/wget HEALTHCHECKs show up as plain requests to those paths).
-- Debug lines: logfmt `level=debug`, JSON `"level":"debug"`, and upper-case `DEBUG`/`TRACE` as a
-- word in the first three words of the line (after a timestamp, in brackets).
--
-- Each pattern is one Rust regex compiled once at load (spout.regex): far cheaper per line
-- than a chain of Lua patterns. A container can opt back in to its debug lines with the label
-- luaspout.debug=true.
--
-- Try it: printf 'GET /healthz 200\nGET /cart 200\n' | luaspout try examples/drop-noise.lua

local health = spout.regex([[(?i)"?(GET|HEAD) /(health|healthz|ready|readyz|live|livez|ping|status)([/?" ]|$)|kube-probe/|ELB-HealthChecker/]])
local debug = spout.regex([[(?i)(\blevel=debug\b|"level" *: *"(debug|trace)"|^(\S+ ){0,2}\[?(?-i:DEBUG|TRACE)\b)]])

route {
  name   = "quiet",
  to     = spout.env("DEST", "raw+tcp://127.0.0.1:5000"),
  filter = function (msg)
    if health:is_match(msg.data) then return false end
    if msg.container.labels["luaspout.debug"] == "true" then return true end
    return not debug:is_match(msg.data)
  end,
}

test {
  name   = "health checks are dropped, real requests kept",
  route  = "quiet",
  input  = {
    [[10.0.0.7 - - [01/Jan/2024:00:00:00 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29"]],
    [[10.0.0.9 - - [01/Jan/2024:00:00:01 +0000] "GET /cart HTTP/1.1" 200 512 "-" "Mozilla/5.0"]],
    [[10.0.0.8 - - [01/Jan/2024:00:00:02 +0000] "GET /health?full=1 HTTP/1.1" 200 2 "-" "curl/8.5"]],
    [[10.0.0.9 - - [01/Jan/2024:00:00:03 +0000] "GET /healthy-recipes HTTP/1.1" 200 99 "-" "Mozilla/5.0"]],
    [[10.0.0.5 - - [01/Jan/2024:00:00:04 +0000] "GET / HTTP/1.1" 200 0 "-" "ELB-HealthChecker/2.0"]],
  },
  expect = {
    [[10.0.0.9 - - [01/Jan/2024:00:00:01 +0000] "GET /cart HTTP/1.1" 200 512 "-" "Mozilla/5.0"]],
    [[10.0.0.9 - - [01/Jan/2024:00:00:03 +0000] "GET /healthy-recipes HTTP/1.1" 200 99 "-" "Mozilla/5.0"]],
  },
}

test {
  name   = "debug lines are dropped unless the container opts in",
  route  = "quiet",
  input  = {
    "time=2024-01-01T00:00:00Z level=debug msg=\"cache miss\"",
    "time=2024-01-01T00:00:00Z level=info msg=\"order placed\"",
    [[{"level":"debug","msg":"sql","query":"SELECT 1"}]],
    "2024-01-01 00:00:00 DEBUG pool: 3 idle",
    "[TRACE] entering handler",
    "WARN debugger attached",
    "Starting debug server on :6060",
    { data = "level=debug msg=\"kept here\"", container = { name = "wip", labels = { ["luaspout.debug"] = "true" } } },
  },
  expect = {
    "time=2024-01-01T00:00:00Z level=info msg=\"order placed\"",
    "WARN debugger attached",
    "Starting debug server on :6060",
    "level=debug msg=\"kept here\"",
  },
}
