-- luaspout's embedded default configuration, used when no routes.lua is given.
--
-- It does what logspout does with its command line: every URI given as an argument (or in
-- ROUTE_URIS) becomes one route, with its filters and options taken from the URI query.
-- Output formats follow logspout's environment variables (RAW_FORMAT, SYSLOG_*), which the
-- router applies to any route without a `format` function.
for _, uri in ipairs(spout.args) do
  route { to = uri }
end
