-- Redact secrets before a line leaves the host: bearer tokens, passwords and API keys in
-- key=value or JSON form, AWS access key IDs, JWTs, and e-mail addresses.
--
-- Each kind is one Rust regex compiled once at load; `re:replace(s, repl)` returns the line
-- with every match replaced (`$1`, `${name}` refer to groups) and how many it replaced. A line
-- with nothing to redact costs one search per regex and no copy. The syslog route still gets
-- its header from luaspout: `format` returns only the MSG part.
--
-- Try it: printf 'login alice@example.com password=hunter2\n' | luaspout try examples/redact.lua

local rules = {
  -- Authorization: Bearer <token>
  { spout.regex([[(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}]]), "$1 [REDACTED]" },
  -- password=..., api_key: ..., "token": "...", secret=...
  { spout.regex([[(?i)("?\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)"?\s*[=:]\s*"?)[^\s"&,;]+]]), "${1}[REDACTED]" },
  -- AWS access key IDs.
  { spout.regex([[\b(AKIA|ASIA)[0-9A-Z]{16}\b]]), "[REDACTED-AWS-KEY]" },
  -- JWTs: three base64url parts, the first starting with {" encoded.
  { spout.regex([[\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+]]), "[REDACTED-JWT]" },
  -- E-mail addresses: keep the domain, which is useful and rarely personal.
  { spout.regex([[\b[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b]]), "[email]@$1" },
}

local function redact(s)
  for i = 1, #rules do
    local rule = rules[i]
    s = rule[1]:replace(s, rule[2])
  end
  return s
end

route {
  name   = "redacted",
  to     = spout.env("DEST", "syslog+tcp://127.0.0.1:514"),
  format = function (msg) return redact(msg.data) end,
}

test {
  name   = "secrets never leave the host",
  route  = "redacted",
  input  = {
    "GET /api/orders Authorization: Bearer 9f8e7d6c5b4a39281706f5e4",
    "login ok user=alice@example.com password=hunter2 next=/home",
    [[{"event":"signup","email":"bob.smith+shop@mail.example.org","api_key":"sk_live_51Habc"}]],
    "using AKIAIOSFODNN7EXAMPLE for s3://bucket",
    "session eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk4 refreshed",
    "nothing to hide here: 42 orders",
  },
  expect = {
    "<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - GET /api/orders Authorization: Bearer [REDACTED]",
    "<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - login ok user=[email]@example.com password=[REDACTED] next=/home",
    [[<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - {"event":"signup","email":"[email]@mail.example.org","api_key":"[REDACTED]"}]],
    "<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - using [REDACTED-AWS-KEY] for s3://bucket",
    "<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - session [REDACTED-JWT] refreshed",
    "<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - nothing to hide here: 42 orders",
  },
}
