-- routes.lua for the ELK example (docker-compose.yml mounts it at /etc/luaspout/routes.lua).
--
-- Every URI given to luaspout (its command, or ROUTE_URIS) becomes a route, as with the
-- embedded default, with two things the default cannot do: blank lines and health-check
-- requests never reach Logstash. Check it with
-- `luaspout check examples/elk/routes.lua syslog+tcp://logstash:5000`.

if #spout.args == 0 then
  spout.log("warn", "no route URI given: nothing is sent to Logstash (only /logs streams)")
end

for _, uri in ipairs(spout.args) do
  route {
    to     = uri,
    filter = function (msg)
      return msg.data ~= "" and not msg.data:find("GET /health", 1, true)
    end,
  }
end
