-- Sampling: keep 1 in N of the noisy lines (successful access-log requests), every other
-- line in full, and mark the kept samples so dashboards can scale counts back up.
--
-- The counters live in `spout.state("sampling")`: a table that survives config reloads, so
-- editing this file does not restart every container's count (and does not send a burst of
-- "first" lines). Each router worker has its own Lua state and a container's lines always go
-- to the same worker, so counting per container ID is exact.
--
-- SAMPLE_RATE (default 10) sets N.
--
-- Try it: for i in $(seq 25); do echo "GET /items/$i HTTP/1.1\" 200"; done | luaspout try examples/sampling.lua

local RATE = math.tointeger(tonumber(spout.env("SAMPLE_RATE", "10")))
if not RATE or RATE < 1 then error("SAMPLE_RATE must be a whole number, 1 or more") end
local counts = spout.state("sampling")
-- Noisy: a request that succeeded (2xx or 3xx status after the quoted request line, or
-- logfmt status=2xx).
local noisy = spout.regex([[(" [23]\d\d |\bstatus=[23]\d\d\b)]])
local mark = " [sampled 1/" .. RATE .. "]"

route {
  name   = "sampled",
  to     = spout.env("DEST", "raw+tcp://127.0.0.1:5000"),
  filter = function (msg)
    if not noisy:is_match(msg.data) then return true end
    local id = msg.container.id
    local n = (counts[id] or 0) + 1
    counts[id] = n
    return (n - 1) % RATE == 0
  end,
  format = function (msg)
    if noisy:is_match(msg.data) then return msg.data .. mark end
    return msg.data
  end,
}

local input = {}
for i = 1, 25 do
  input[#input + 1] = '10.0.0.1 - - "GET /items/' .. i .. ' HTTP/1.1" 200 512'
end
table.insert(input, 13, { data = '10.0.0.1 - - "GET /items/x HTTP/1.1" 500 0', source = "stderr" })
table.insert(input, 5, { data = 'level=info status=204 path=/ping', container = { name = "other" } })

test {
  name   = "1 in 10 successful requests per container, every error",
  route  = "sampled",
  input  = input,
  expect = {
    '10.0.0.1 - - "GET /items/1 HTTP/1.1" 200 512 [sampled 1/10]',
    'level=info status=204 path=/ping [sampled 1/10]',
    '10.0.0.1 - - "GET /items/11 HTTP/1.1" 200 512 [sampled 1/10]',
    '10.0.0.1 - - "GET /items/x HTTP/1.1" 500 0',
    '10.0.0.1 - - "GET /items/21 HTTP/1.1" 200 512 [sampled 1/10]',
  },
}
