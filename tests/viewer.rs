//! The web viewer at `/`, in a real browser: headless Chromium (Debian's `chromium`) loads the
//! page from the real binary, the page follows `/logs` over its WebSocket while real containers
//! log, and the test reads what the page renders.
//!
//! Chromium is driven over the DevTools protocol (a WebSocket, with the `tungstenite` client the
//! `/logs` tests use) rather than with `--dump-dom`: `--virtual-time-budget` does not wait for
//! frames on a live WebSocket, so a one-shot dump sees an empty page. With the protocol the test
//! polls the DOM until the lines it expects are there, changes the filter as a user would, and
//! takes a screenshot.

mod util;

use std::fs;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use util::*;

/// How long Chromium may take to start and open its DevTools port (a cold start on a slow
/// machine takes a few seconds).
const BROWSER_START: Duration = Duration::from_secs(30);

/// A headless Chromium with a fresh profile, and a DevTools session on one page. Dropping it
/// closes the browser; if the test is failing, its temp dir (screenshot, Chromium's stderr) is
/// kept and its path printed.
struct Browser {
    child: Child,
    cdp: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    dir: Option<tempfile::TempDir>,
}

impl Browser {
    /// Starts Chromium (a 1280x800 window) and opens `url` in a new page.
    fn open(url: &str) -> Browser {
        let dir = tempfile::Builder::new().prefix("luaspout-viewer-").tempdir().expect("temp dir");
        let profile = dir.path().join("profile");
        let stderr = dir.path().join("chromium.log");
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("chromium.log"))
            // Its own process group, so that a browser that will not close is killed with all
            // its renderer and helper processes.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `chromium`: {e}. The viewer test needs Debian's chromium package (tests/run.sh installs it)")
            });
        let endpoint = devtools_endpoint(&profile, &stderr);
        let (cdp, _) = tungstenite::connect(&endpoint).unwrap_or_else(|e| panic!("DevTools at {endpoint}: {e}"));
        if let MaybeTlsStream::Plain(s) = cdp.get_ref() {
            s.set_read_timeout(Some(ARRIVE)).expect("read timeout");
        }
        let mut browser = Browser { child, cdp, session: String::new(), next_id: 0, dir: Some(dir) };
        let target = browser.call("Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser.call("Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }));
        browser.session = attached["sessionId"].as_str().expect("sessionId").to_string();
        // A new target starts as about:blank and navigates to `url` after that.
        let deadline = Instant::now() + ARRIVE;
        while browser.eval(r#"document.readyState === "complete" && location.protocol.startsWith("http")"#) != true {
            assert!(Instant::now() < deadline, "{url} did not load in {ARRIVE:?}");
            thread::sleep(Duration::from_millis(100));
        }
        browser
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// Sends one DevTools command (to the page once attached) and returns its result, skipping
    /// the events that arrive meanwhile. Panics on a protocol error or after [`ARRIVE`].
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            request["sessionId"] = json!(self.session);
        }
        self.cdp.send(Message::text(request.to_string())).unwrap_or_else(|e| panic!("send {method}: {e}"));
        let deadline = Instant::now() + ARRIVE;
        loop {
            assert!(Instant::now() < deadline, "no answer to {method} within {ARRIVE:?}");
            let frame = self.cdp.read().unwrap_or_else(|e| panic!("no answer to {method}: {e}"));
            let Message::Text(text) = frame else { continue };
            let answer: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if answer["id"] != id {
                continue;
            }
            assert!(answer["error"].is_null(), "{method} failed: {}", answer["error"]);
            return answer["result"].clone();
        }
    }

    /// Evaluates `expression` in the page; its value, which must be JSON.
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }));
        assert!(result["exceptionDetails"].is_null(), "{expression} threw: {}", result["exceptionDetails"]);
        result["result"]["value"].clone()
    }

    /// What the page renders: each log line with whether it is shown, and the picker's state.
    fn rendered(&mut self) -> Rendered {
        let v = self.eval(
            r##"({
                rows: [...document.querySelectorAll("#log .line")].map((l) => ({
                    name: l.querySelector(".name").textContent,
                    data: l.querySelector(".data").textContent,
                    shown: l.checkVisibility(),
                })),
                options: [...document.querySelectorAll("#container option")].map((o) => o.value),
                picked: document.getElementById("container").value,
                filter: document.getElementById("filter").value,
            })"##,
        );
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("unexpected page state {v}: {e}"))
    }

    /// Polls [`Browser::rendered`] until `done` holds or [`ARRIVE`] passes; returns the last state.
    fn wait_rendered(&mut self, done: impl Fn(&Rendered) -> bool) -> Rendered {
        let deadline = Instant::now() + ARRIVE;
        loop {
            let r = self.rendered();
            if done(&r) || Instant::now() >= deadline {
                return r;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls a JavaScript condition until it is true or [`ARRIVE`] passes.
    fn wait_true(&mut self, condition: &str) -> bool {
        let deadline = Instant::now() + ARRIVE;
        while Instant::now() < deadline {
            if self.eval(condition) == json!(true) {
                return true;
            }
            thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// A PNG of the page, written to the temp dir.
    fn screenshot(&mut self, file: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        let path = self.dir().join(file);
        fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("viewer test: screenshot and chromium.log kept in {}", dir.keep().display());
        }
        let _ = self.cdp.send(Message::text(json!({ "id": 0, "method": "Browser.close" }).to_string()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

/// The browser's DevTools WebSocket: Chromium writes its port and path to `DevToolsActivePort`
/// in the profile once it listens (`--remote-debugging-port=0` picks a free port).
fn devtools_endpoint(profile: &Path, stderr: &Path) -> String {
    let deadline = Instant::now() + BROWSER_START;
    loop {
        if let Ok(text) = fs::read_to_string(profile.join("DevToolsActivePort"))
            && let Some((port, path)) = text.split_once('\n')
            && !path.trim().is_empty()
        {
            return format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not open its DevTools port within {BROWSER_START:?}; its stderr:\n{}",
            fs::read_to_string(stderr).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Standard base64 (what `Page.captureScreenshot` returns) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    name: String,
    data: String,
    shown: bool,
}

#[derive(Debug, serde::Deserialize)]
struct Rendered {
    rows: Vec<Row>,
    options: Vec<String>,
    picked: String,
    filter: String,
}

impl Rendered {
    /// The `N` of the shown `viewer-keep-N` lines of `name`, in page order.
    fn shown_keep(&self, name: &str) -> Vec<u32> {
        self.rows
            .iter()
            .filter(|r| r.shown && r.name == name)
            .filter_map(|r| r.data.strip_prefix("viewer-keep-")?.parse().ok())
            .collect()
    }

    fn shown(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.shown).collect()
    }
}

#[test]
fn the_page_shows_a_containers_lines_live_and_filters_them() {
    let luaspout = Luaspout::builder().start();
    let name = unique_name();
    // Lines keep coming while the browser starts and loads the page. The other container logs
    // the same text; with a container picked, the page follows that container's stream only.
    let script = "for i in $(seq 1 1000); do echo viewer-keep-$i; echo viewer-drop-$i; sleep 0.2; done";
    let picked = run_named(&name, &[], script);
    let other = run_container(&[], script);
    picked.wait_logged("viewer-keep-1");
    other.wait_logged("viewer-keep-1");

    let url = format!("http://127.0.0.1:{}/?filter=viewer-keep&container={name}", luaspout.port());
    let mut browser = Browser::open(&url);
    let page = browser.wait_rendered(|r| {
        r.shown_keep(&name).len() >= 5
            && r.rows.iter().any(|r| r.name == name && r.data.starts_with("viewer-drop-"))
            && r.options.iter().any(|o| o == other.name())
    });

    let keep = page.shown_keep(&name);
    assert!(keep.len() >= 5, "fewer than 5 viewer-keep lines of {name} shown: {page:#?}");
    assert!(
        keep.windows(2).all(|w| w[1] == w[0] + 1),
        "the shown lines are not the container's lines in order, one after the other: {keep:?}"
    );
    let stray: Vec<&Row> =
        page.shown().into_iter().filter(|r| r.name != name || !r.data.starts_with("viewer-keep-")).collect();
    assert!(stray.is_empty(), "the filter and the picker let these lines through: {stray:#?}");
    // The lines the filter hides did reach the page: it is the page that hides them. The other
    // container's lines were never sent: the page subscribed to the picked container only.
    assert!(page.rows.iter().any(|r| r.name == name && r.data.starts_with("viewer-drop-")), "{page:#?}");
    assert!(page.rows.iter().all(|r| r.name == name), "{page:#?}");
    for container in [name.as_str(), other.name()] {
        assert!(page.options.iter().any(|o| o == container), "{container} is not in the picker: {:?}", page.options);
    }
    assert_eq!((page.picked.as_str(), page.filter.as_str()), (name.as_str(), "viewer-keep"), "state from the URL");

    let png = browser.screenshot("viewer.png");
    let bytes = fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "not a screenshot: {} bytes", bytes.len());

    // Typing another filter applies it to the lines already there, not only to new ones.
    let dropped_before = page.rows.iter().filter(|r| r.name == name && r.data.starts_with("viewer-drop-")).count();
    browser.eval(
        r#"{ const f = document.getElementById("filter"); f.value = "VIEWER-DROP"; f.dispatchEvent(new Event("input")); }"#,
    );
    let page = browser.rendered();
    let shown = page.shown();
    assert!(
        shown.len() >= dropped_before,
        "{dropped_before} viewer-drop lines were there, {} shown: {page:#?}",
        shown.len()
    );
    assert!(
        shown.iter().all(|r| r.name == name && r.data.starts_with("viewer-drop-")),
        "filter `VIEWER-DROP` (any case) shows other lines: {shown:#?}"
    );
}

#[test]
fn the_page_opens_on_history_and_renders_colours_json_and_regex_matches() {
    let luaspout = Luaspout::builder().start();
    let name = unique_name();
    // Everything is logged before the page opens, and the container is quiet after: what the
    // page shows is the history it asks for.
    let c = run_named(
        &name,
        &[],
        r##"printf '\033[31mred\033[0m plain \033[1;38;5;46mgreen\033[0m\n'; echo '{"level":"warn","n":[1,2]}'; echo error42 here; echo err7; echo nothing; echo history-done; sleep 60"##,
    );
    c.wait_logged("history-done");
    let url = format!("http://127.0.0.1:{}/?container={name}", luaspout.port());
    let mut browser = Browser::open(&url);
    let page = browser.wait_rendered(|r| r.rows.iter().any(|r| r.data == "history-done"));
    let data: Vec<&str> = page.rows.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(
        data,
        ["red plain green", r##"{"level":"warn","n":[1,2]}{ }"##, "error42 here", "err7", "nothing", "history-done"],
        "the history, once, with escape codes rendered (the JSON line carries its toggle)"
    );

    // Colours: the escape codes became styled text, not characters.
    let colours = browser.eval(
        r##"[...document.querySelectorAll("#log .line .data span")].map((s) => [s.textContent, getComputedStyle(s).color, getComputedStyle(s).fontWeight])"##,
    );
    assert_eq!(colours[0][0], "red");
    assert_eq!(colours[0][1], "rgb(244, 112, 103)", "ANSI 31 is the palette's red: {colours}");
    assert_eq!(colours[1][0], "green");
    assert_eq!(colours[1][1], "rgb(0, 255, 0)", "256-colour 46 is pure green: {colours}");
    assert_eq!(colours[1][2], "700", "bold: {colours}");

    // JSON: the toggle shows the line indented, and hides it again.
    let pretty = browser.eval(
        r##"(() => { const b = document.querySelector("#log .json-toggle"); b.click();
            const p = document.querySelector("#log .pretty"); return [p.textContent, p.checkVisibility(), b.getAttribute("aria-expanded")]; })()"##,
    );
    assert_eq!(pretty, json!(["{\n  \"level\": \"warn\",\n  \"n\": [\n    1,\n    2\n  ]\n}", true, "true"]));
    let hidden = browser.eval(r##"(() => { document.querySelector("#log .json-toggle").click(); return document.querySelector("#log .pretty").checkVisibility(); })()"##);
    assert_eq!(hidden, false);

    // A regular expression filters and marks what it matched.
    browser.eval(
        r##"{ document.getElementById("regex").click(); const f = document.getElementById("filter"); f.value = "ERR(or)?\\d+"; f.dispatchEvent(new Event("input")); }"##,
    );
    let page = browser.rendered();
    let shown: Vec<&str> = page.shown().iter().map(|r| r.data.as_str()).collect();
    assert_eq!(shown, ["error42 here", "err7"]);
    let marks = browser.eval(
        r##"[...document.querySelectorAll("#log mark")].filter((m) => m.checkVisibility()).map((m) => m.textContent)"##,
    );
    assert_eq!(marks, json!(["error42", "err7"]));
    assert!(browser.eval("location.search").as_str().unwrap().contains("regex=1"), "the URL keeps the view");
    // An invalid expression is marked and filters nothing.
    browser.eval(
        r##"{ const f = document.getElementById("filter"); f.value = "err("; f.dispatchEvent(new Event("input")); }"##,
    );
    assert_eq!(browser.eval(r##"document.getElementById("filter").getAttribute("aria-invalid")"##), "true");
    assert_eq!(browser.rendered().shown().len(), 6);
}

#[test]
fn a_picked_container_keeps_its_lines_while_another_floods() {
    let luaspout = Luaspout::builder().start();
    let name = unique_name();
    let quiet = run_named(&name, &[], "for i in $(seq 1 55); do echo quiet-$i; sleep 0.1; done; sleep 60");
    let url = format!("http://127.0.0.1:{}/?container={name}", luaspout.port());
    let mut browser = Browser::open(&url);
    // Far more lines than the page keeps (5,000), at the same time as the quiet container's.
    let flood = run_container(&[], "i=0; while [ $i -lt 30000 ]; do echo flood-$i; i=$((i+1)); done; sleep 60");
    quiet.wait_logged("quiet-55");
    flood.wait_logged("flood-29999");
    let page = browser.wait_rendered(|r| r.rows.iter().any(|r| r.data == "quiet-55"));
    let quiet_lines: Vec<&str> = page.rows.iter().filter(|r| r.name == name).map(|r| r.data.as_str()).collect();
    let expected: Vec<String> = (1..=55).map(|i| format!("quiet-{i}")).collect();
    assert_eq!(quiet_lines, expected, "every line of the picked container, once, in order");
    assert!(page.rows.iter().all(|r| r.name == name), "the flood reached the page");
}

/// With `LUASPOUT_API_TOKEN` set, the page (which comes with the 401) asks for the token,
/// refuses a wrong one, and with the right one shows the lines; the token is kept for the tab,
/// so a reload does not ask again.
#[test]
fn with_a_token_the_page_asks_for_it_once_and_shows_the_lines() {
    let luaspout = Luaspout::builder().env("LUASPOUT_API_TOKEN", "viewer-s3cret").start();
    let name = unique_name();
    let c = run_named(&name, &[], "for i in $(seq 1 1000); do echo viewer-keep-$i; sleep 0.2; done");
    c.wait_logged("viewer-keep-1");
    let mut browser = Browser::open(&format!("http://127.0.0.1:{}/?container={name}", luaspout.port()));
    let asking = r#"!document.getElementById("login").hidden"#;
    assert!(browser.wait_true(asking), "the page does not ask for the token");
    let enter = |token: &str| {
        format!(
            r#"{{ document.getElementById("token").value = "{token}"; document.getElementById("login").requestSubmit(); }}"#
        )
    };
    browser.eval(&enter("wrong"));
    assert!(
        browser.wait_true(r#"document.getElementById("login-why").textContent.includes("refused")"#),
        "a wrong token is not reported"
    );
    browser.eval(&enter("viewer-s3cret"));
    let page = browser.wait_rendered(|r| r.shown_keep(&name).len() >= 3);
    assert!(page.shown_keep(&name).len() >= 3, "no lines with the token: {page:#?}");
    assert_eq!(browser.eval(r#"document.getElementById("login").hidden"#), json!(true));

    browser.eval("location.reload()");
    thread::sleep(Duration::from_secs(1));
    let page = browser.wait_rendered(|r| r.shown_keep(&name).len() >= 3);
    assert!(page.shown_keep(&name).len() >= 3, "no lines after a reload: {page:#?}");
    assert_eq!(browser.eval(r#"document.getElementById("login").hidden"#), json!(true), "asked again");
}
