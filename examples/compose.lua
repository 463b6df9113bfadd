-- Per-service routing for Docker Compose projects, by the labels Compose puts on every
-- container (com.docker.compose.project, com.docker.compose.service).
--
-- - the "shop" project's database goes to the DBA team's syslog;
-- - every other service of "shop" goes to the app collector, one JSON object per line,
--   tagged with project and service (stable across `docker compose up --scale`, unlike
--   container names such as shop-web-3);
-- - containers outside any Compose project are left alone here.
--
-- Try it:
--   echo '{"data":"ready","container":{"name":"shop-db-1","labels":{"com.docker.compose.project":"shop","com.docker.compose.service":"db"}}}' \
--     | luaspout try examples/compose.lua

local PROJECT = "com.docker.compose.project"
local SERVICE = "com.docker.compose.service"

route {
  name  = "shop-db",
  to    = spout.env("DBA_SYSLOG", "syslog+tcp://127.0.0.1:514?append_tag=.db"),
  match = { labels = { [PROJECT] = "shop", [SERVICE] = "db" } },
}

route {
  name   = "shop-apps",
  to     = spout.env("APP_COLLECTOR", "raw+tcp://127.0.0.1:5000"),
  match  = { labels = { [PROJECT] = "shop" } },
  filter = function (msg) return msg.container.labels[SERVICE] ~= "db" end,
  format = function (msg)
    local labels = msg.container.labels
    return {
      project = labels[PROJECT],
      service = labels[SERVICE],
      -- Compose numbers replicas in this label; one JSON field rather than a parsed name.
      replica = tonumber(labels["com.docker.compose.container-number"]),
      stream  = msg.source,
      log     = msg.data,
    }
  end,
}

local function shop(service, n)
  return {
    name = "shop-" .. service .. "-" .. n,
    labels = { [PROJECT] = "shop", [SERVICE] = service, ["com.docker.compose.container-number"] = tostring(n) },
  }
end

local inputs = {
  { data = "database system is ready to accept connections", container = shop("db", 1) },
  { data = "GET /cart 200", container = shop("web", 1) },
  { data = "GET /checkout 500", source = "stderr", container = shop("web", 2) },
  { data = "sent 3 mails", container = shop("mailer", 1) },
  { data = "not in a compose project", container = { name = "adhoc" } },
  { data = "other project", container = { name = "blog-web-1", labels = { [PROJECT] = "blog", [SERVICE] = "web" } } },
}

test {
  name   = "the database goes to the DBA syslog, tagged .db",
  route  = "shop-db",
  input  = inputs,
  expect = { "<14>1 2024-01-01T00:00:00Z 12fd71bdbc5b shop-db-1.db 1 - - database system is ready to accept connections" },
}

test {
  name   = "the other services go to the collector as JSON",
  route  = "shop-apps",
  input  = inputs,
  expect = {
    [[{"log":"GET /cart 200","project":"shop","replica":1,"service":"web","stream":"stdout"}]],
    [[{"log":"GET /checkout 500","project":"shop","replica":2,"service":"web","stream":"stderr"}]],
    [[{"log":"sent 3 mails","project":"shop","replica":1,"service":"mailer","stream":"stdout"}]],
  },
}
