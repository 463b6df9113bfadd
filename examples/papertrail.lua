-- Papertrail: every container's lines as RFC 5424 syslog over TLS, one route.
--
-- Papertrail gives each log destination a host and port (logsN.papertrailapp.com:XXXXX) that
-- accepts TLS, plain TCP and UDP; TLS is what Papertrail (and logspout's README) recommend.
-- Its certificate is signed by a public CA, so the system roots verify it (the image ships
-- them); the destination comes from PAPERTRAIL_URL:
--
--   PAPERTRAIL_URL=syslog+tls://logs5.papertrailapp.com:12345
--
-- Set SYSLOG_TCP_FRAMING=octet-counted if the destination asks for RFC 6587 framing.
--
-- Papertrail shows HOST and APP-NAME: APP-NAME is the container name; HOST is the container's
-- hostname unless the host's own name is mounted at /etc/host_hostname or SYSLOG_HOSTNAME
-- is set (e.g. -e SYSLOG_HOSTNAME=my-docker-host).
--
-- Try it: printf 'hello\n' | luaspout try examples/papertrail.lua

route {
  name   = "papertrail",
  to     = spout.env("PAPERTRAIL_URL", "syslog+tls://logs.papertrailapp.com:12345"),
  -- Blank lines cost Papertrail volume and say nothing.
  filter = function (msg) return msg.data:find("%S") ~= nil end,
}

-- The header is luaspout's (logspout's) RFC 5424 layout: <PRI>1 TIME HOST APP-NAME PID - - MSG.
-- stdout is user.info (14), stderr user.err (11).
test {
  name   = "syslog lines, blank ones dropped",
  route  = "papertrail",
  input  = {
    "GET / 200",
    "   ",
    { data = "disk almost full", source = "stderr",
      container = { name = "web_1", hostname = "web", pid = 4242 } },
  },
  expect = {
    "<14>1 2024-01-01T00:00:00Z 5b6a0bef5159 try 1 - - GET / 200",
    "<11>1 2024-01-01T00:00:00Z web web_1 4242 - - disk almost full",
  },
}
