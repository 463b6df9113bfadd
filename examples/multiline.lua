-- Stack traces as one message.
--
-- Java services labelled com.example.lang=java log lines that start with a date; every other
-- line (stack frames, "Caused by") belongs to the last dated line.
--
-- For everything else, one route groups Python and Go tracebacks: indented frames, blank lines,
-- `goroutine N [...]:` headers, Go's `pkg.func(...)` frame lines and Python's final
-- `SomeError: ...` line continue the group that the first unindented line opened.

multiline {
  containers = { labels = { ["com.example.lang"] = "java" } },
  start = [[^\d{4}-\d{2}-\d{2}]],
  flush_after = 1000,
}

route {
  to = spout.env("DEST", "raw+tcp://127.0.0.1:5000"),
  multiline = { pattern = [[^(\s|$|\w+(Error|Exception):|goroutine \d+ |[\w./*()]+\(.*\)$|exit status)]] },
  format = function (msg)
    return spout.json { container = msg.container.name, stream = msg.source, log = msg.data }
  end,
}
