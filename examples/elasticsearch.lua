-- Elasticsearch (or OpenSearch) `_bulk` API: each message becomes an action line and a
-- document line, and a batch is those lines one after the other, which is exactly what an
-- HTTP route sends when it has no `batch` function (newline-delimited, as application/x-ndjson).
-- One index per day, in the logs-docker-YYYY.MM.DD pattern ILM policies expect.
--
-- ES_URL points it at the cluster (default http://elasticsearch:9200/_bulk); ES_AUTH, if
-- set, is sent as the Authorization header (e.g. "ApiKey …" or "Basic …"). Compose project
-- and service go in a nested object, not dotted label keys, which Elasticsearch would turn into
-- conflicting objects.
--
-- Try it: printf 'hello\n' | luaspout try --start 2024-01-01T00:00:00Z examples/elasticsearch.lua

route {
  name       = "elasticsearch",
  to         = spout.env("ES_URL", "http://elasticsearch:9200/_bulk"),
  headers    = { Authorization = spout.env("ES_AUTH") },
  batch_size = 1000,
  gzip       = true,
  format = function (msg)
    local c = msg.container
    local action = spout.json { create = { _index = "logs-docker-" .. spout.strftime(msg.time_ns, "%Y.%m.%d") } }
    local doc = spout.json {
      ["@timestamp"] = spout.rfc3339(msg.time_ns, 3),
      message = msg.data,
      stream = msg.source,
      container = { name = c.name, id = c.id, image = c.image },
      compose = { project = c.labels["com.docker.compose.project"], service = c.labels["com.docker.compose.service"] },
    }
    return action .. "\n" .. doc
  end,
}

test {
  name   = "an action line and a document per message",
  input  = {
    { data = "GET / 200", time = "2024-02-03T04:05:06.789Z",
      container = { name = "shop-web-1", id = "3b6ba57db54a", image = "shop/web:1.4",
                    labels = { ["com.docker.compose.project"] = "shop", ["com.docker.compose.service"] = "web" } } },
  },
  expect = {
    [[{"create":{"_index":"logs-docker-2024.02.03"}}
{"@timestamp":"2024-02-03T04:05:06.789Z","compose":{"project":"shop","service":"web"},"container":{"id":"3b6ba57db54a","image":"shop/web:1.4","name":"shop-web-1"},"message":"GET / 200","stream":"stdout"}]],
  },
}
