-- Errors to a chat webhook (Slack, Mattermost, Rocket.Chat incoming webhooks all take
-- {"text": "…"}): stderr lines that say ERROR, from every container, gathered for up to two
-- seconds and posted as one message, so a burst of errors is one notification, not fifty.
--
-- WEBHOOK_URL is the hook's address. A hook that answers 429 (rate limited) is retried after
-- its Retry-After; a 404 (a deleted hook) is logged with the answer and not retried.
--
-- Try it: printf '{"data":"ERROR boom","source":"stderr"}\n' | luaspout try examples/webhook.lua

route {
  name           = "alerts",
  to             = spout.env("WEBHOOK_URL", "https://hooks.example.com/services/T000/B000/XXXX"),
  match          = { sources = { "stderr" } },
  flush_interval = "2s",
  batch_size     = 20,
  filter = function (msg) return msg.data:find("ERROR", 1, true) ~= nil end,
  format = function (msg) return msg.container.name .. ": " .. msg.data end,
  batch  = function (list)
    return { text = #list .. (#list == 1 and " error" or " errors") .. "\n" .. table.concat(list, "\n") }
  end,
}

test {
  name   = "stderr errors, several in one message",
  input  = {
    { data = "ERROR payment declined", source = "stderr", container = { name = "shop-api-1" } },
    { data = "INFO all good", source = "stderr", container = { name = "shop-api-1" } },
    { data = "ERROR in stdout is not an alert", container = { name = "shop-api-1" } },
    { data = "ERROR disk full", source = "stderr", container = { name = "db" } },
  },
  expect = { [[{"text":"2 errors\nshop-api-1: ERROR payment declined\ndb: ERROR disk full"}]] },
}
