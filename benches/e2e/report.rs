//! The bench's output: one table of every stream case, then issue #17's targets as ratios of
//! this run, each marked met or not met, and the exit status (lost or repeated lines only).

use std::fmt::Write as _;

/// Which way luaspout was asked to read the containers (`LUASPOUT_SOURCE`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    Api,
    Files,
}

impl Source {
    pub fn env(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Files => "files",
        }
    }
}

/// How luaspout says (`GET /containers`, field `source`) it read the writer container.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Read {
    Files,
    Api,
    /// The container was listed without a `source` field: a luaspout without the json-file
    /// source, which reads everything through the API.
    Unreported,
    /// The container was not listed while it ran.
    NotListed,
}

impl Read {
    fn label(self) -> &'static str {
        match self {
            Read::Files => "files",
            Read::Api => "api",
            Read::Unreported => "api (no field)",
            Read::NotListed => "?",
        }
    }
}

/// What a stream case is, for the targets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `curl` on the Docker socket.
    Limit,
    /// The writer with no reader: dockerd's own cost of writing the log.
    Alone,
    Raw,
    Lua,
    Syslog,
    Reload,
    /// A writer with a small rotation window: losses in api mode are reported, not failed.
    Rotation,
}

/// One row of the stream table.
pub struct Row {
    pub name: String,
    pub kind: Kind,
    /// `None` for the `curl` and `alone` rows.
    pub source: Option<Source>,
    pub read: Option<Read>,
    pub lines: usize,
    /// Lines per second at the reader; NaN where nothing reads.
    pub rate: f64,
    pub reader_cpu: f64,
    pub dockerd_cpu: f64,
    pub peak_kb: Option<u64>,
    /// Last line at the listener minus the container's exit (`State.FinishedAt`), seconds.
    pub lag: Option<f64>,
    pub lost: usize,
    pub repeated: usize,
}

impl Row {
    /// A files-mode row that luaspout did read from the files.
    fn read_files(&self) -> bool {
        self.read == Some(Read::Files)
    }
}

/// The memory cases.
pub struct Memory {
    /// VmRSS 3 s after start, no bench container running; how many others ran.
    pub idle_kb: u64,
    pub idle_running: usize,
    pub source: Source,
    /// VmRSS with [`IDLE_CONTAINERS`](crate::IDLE_CONTAINERS) idle containers, then with `many`.
    pub few_containers: usize,
    pub few_kb: u64,
    pub many_containers: usize,
    pub many_kb: u64,
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// The memory line.
pub fn memory(m: &Memory) -> String {
    let mut out = format!(
        "memory (LUASPOUT_SOURCE={}): RSS {} 3 s after start with no bench container ({} others running); \
         {} with {} containers running (idle)",
        m.source.env(),
        mib(m.idle_kb),
        m.idle_running,
        mib(m.few_kb),
        m.few_containers,
    );
    if m.many_containers > m.few_containers {
        let per = (m.many_kb as f64 - m.few_kb as f64) / (m.many_containers - m.few_containers) as f64;
        let _ = write!(out, ", {} with {}: {per:.1} KiB per container", mib(m.many_kb), m.many_containers);
    }
    out
}

/// The stream table; rows of other than `lines` lines (rotation) say how many they had.
pub fn table(rows: &[Row], lines: usize) -> String {
    let curl = curl_mean(rows);
    let mut out = String::new();
    out.push_str(
        "| case | source asked / read | lines/s | of curl | reader CPU-s / M | dockerd CPU-s / M | \
         reader + dockerd | peak RSS | lag | lost | repeated |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let source = match (r.source, r.read) {
            (Some(s), Some(read)) => format!("{} / {}", s.env(), read.label()),
            _ => "-".into(),
        };
        let name = if r.lines == lines { r.name.clone() } else { format!("{} ({} lines)", r.name, r.lines) };
        let read = r.kind != Kind::Alone;
        let _ = writeln!(
            out,
            "| {name} | {source} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} |",
            if read { format!("{:.0}", r.rate) } else { "-".into() },
            curl.filter(|_| read).map_or("-".into(), |c| format!("{:.2}", r.rate / c.rate)),
            if read { format!("{:.2}", r.reader_cpu) } else { "-".into() },
            r.dockerd_cpu,
            r.reader_cpu + r.dockerd_cpu,
            r.peak_kb.map_or("-".into(), mib),
            r.lag.map_or("-".into(), |s| format!("{:.0} ms", s * 1e3)),
            r.lost,
            r.repeated,
        );
    }
    out
}

/// The mean of the `curl` rows: rate and CPU per million lines.
#[derive(Clone, Copy)]
struct Curl {
    rate: f64,
    cpu: f64,
}

fn curl_mean(rows: &[Row]) -> Option<Curl> {
    let limits: Vec<&Row> = rows.iter().filter(|r| r.kind == Kind::Limit).collect();
    if limits.is_empty() {
        return None;
    }
    let n = limits.len() as f64;
    Some(Curl {
        rate: limits.iter().map(|r| r.rate).sum::<f64>() / n,
        cpu: limits.iter().map(|r| r.reader_cpu).sum::<f64>() / n,
    })
}

/// Issue #17's targets, as a table: what this run measured and whether it meets them.
pub fn targets(rows: &[Row], memory: Option<&Memory>, lines: usize) -> String {
    let find = |kind: Kind, source: Source| rows.iter().find(|r| r.kind == kind && r.source == Some(source));
    let curl = curl_mean(rows);
    let mut out = String::from("| target (issue #17) | measured | |\n|---|---|---|\n");
    let mut line = |target: &str, measured: String, met: Option<bool>| {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {target} | {measured} | {verdict} |");
    };
    // A files row read through the API measures the API: its verdict waits for a real one.
    let files = |kind: Kind| find(kind, Source::Files);
    let files_verdict = |r: &Row, ok: bool| r.read_files().then_some(ok);
    let files_note = |r: &Row| if r.read_files() { String::new() } else { " (read through the API)".into() };

    match files(Kind::Raw) {
        Some(r) => {
            line(
                "files, raw: luaspout ≤ 1.0 CPU-s / M lines",
                format!("{:.2}{}", r.reader_cpu, files_note(r)),
                files_verdict(r, r.reader_cpu <= 1.0),
            );
            let both = r.reader_cpu + r.dockerd_cpu;
            let floor = rows
                .iter()
                .find(|a| a.kind == Kind::Alone)
                .map_or(String::new(), |a| format!(" (dockerd alone, writing with no reader: {:.2})", a.dockerd_cpu));
            line(
                "files, raw: luaspout + dockerd ≤ 4.0 CPU-s / M lines",
                format!("{both:.2}{floor}{}", files_note(r)),
                files_verdict(r, both <= 4.0),
            );
        }
        None => line("files, raw", "case not run".into(), None),
    }
    match files(Kind::Lua) {
        Some(r) => line(
            "files, Lua filter + format: luaspout ≤ 1.5 CPU-s / M lines",
            format!("{:.2}{}", r.reader_cpu, files_note(r)),
            files_verdict(r, r.reader_cpu <= 1.5),
        ),
        None => line("files, Lua filter + format", "case not run".into(), None),
    }
    let lagged: Vec<&Row> = [Kind::Raw, Kind::Lua].into_iter().filter_map(files).collect();
    if let Some(worst) = lagged.iter().filter_map(|r| r.lag).reduce(f64::max) {
        let all_files = lagged.iter().all(|r| r.read_files());
        line(
            "files: last line out ≤ 0.5 s after the container's last line",
            format!(
                "{:.0} ms (worst of raw and Lua){}",
                worst * 1e3,
                if all_files { "" } else { " (read through the API)" }
            ),
            all_files.then_some(worst <= 0.5),
        );
    }
    match files(Kind::Rotation) {
        Some(r) => line(
            "files, rotation (max-size=2m, max-file=5): 0 lost, 0 duplicated",
            format!("{} lost, {} duplicated of {}{}", r.lost, r.repeated, r.lines, files_note(r)),
            files_verdict(r, r.lost + r.repeated == 0),
        ),
        None => line("files, rotation", "case not run".into(), None),
    }
    if let Some(r) = find(Kind::Rotation, Source::Api) {
        line(
            "api, rotation (reported only)",
            format!("{} lost, {} duplicated of {}", r.lost, r.repeated, r.lines),
            None,
        );
    }
    match (find(Kind::Raw, Source::Api), &curl) {
        (Some(r), Some(c)) => {
            let cpu = r.reader_cpu / c.cpu;
            line(
                "api, raw: luaspout CPU ≤ 1.1 × curl's",
                format!("{cpu:.2} × ({:.2} / {:.2})", r.reader_cpu, c.cpu),
                Some(cpu <= 1.1),
            );
            let rate = r.rate / c.rate;
            line(
                "api, raw: rate ≥ 0.95 × curl's",
                format!("{rate:.2} × ({:.0} / {:.0} lines/s)", r.rate, c.rate),
                Some(rate >= 0.95),
            );
        }
        _ => line("api, raw against curl", "api raw or limit case not run".into(), None),
    }
    match memory {
        Some(m) => line(
            "idle RSS ≤ 8 MB (7.63 MiB)",
            format!("{} ({} other containers running)", mib(m.idle_kb), m.idle_running),
            Some(m.idle_kb * 1024 <= 8_000_000),
        ),
        None => line("idle RSS", "memory case not run".into(), None),
    }
    let peaks: Vec<u64> = rows
        .iter()
        .filter(|r| matches!(r.kind, Kind::Raw | Kind::Lua) && r.lines == lines)
        .filter_map(|r| r.peak_kb)
        .collect();
    if let Some(&peak) = peaks.iter().max() {
        let at = if lines == 1_000_000 { String::new() } else { format!(" (at {lines} lines, not 1M)") };
        line(
            "peak RSS (VmHWM) ≤ 12 MB (11.44 MiB) at 1M lines",
            format!("{} (worst of the raw and Lua rows){at}", mib(peak)),
            Some(peak * 1024 <= 12_000_000),
        );
    }
    out
}

/// Whether the run failed, with the reasons on stderr: lines lost or repeated (except by the
/// API under rotation, or a files case that read through the API), or a luaspout that reports
/// its source and read a files case through the API.
pub fn failures(rows: &[Row]) -> bool {
    let mut failed = false;
    for r in rows {
        let read_files = r.read_files();
        if r.source == Some(Source::Files) && !read_files {
            match r.read {
                Some(Read::Api) => {
                    eprintln!("bench: {}: luaspout read it through the API, not the file", r.name);
                    failed = true;
                }
                Some(Read::NotListed) => eprintln!(
                    "bench: warning: {}: asked for files, but the writer was not in /containers while it ran",
                    r.name
                ),
                _ => eprintln!(
                    "bench: warning: {}: asked for files but luaspout does not report reading files \
                     (no `source` in /containers: this build has no json-file source)",
                    r.name
                ),
            }
        }
        if r.lost + r.repeated == 0 {
            continue;
        }
        if r.kind == Kind::Rotation && !read_files {
            eprintln!(
                "bench: note: {}: {} lost, {} repeated through the API (reported only)",
                r.name, r.lost, r.repeated
            );
        } else {
            eprintln!("bench: {}: {} lines lost, {} repeated", r.name, r.lost, r.repeated);
            failed = true;
        }
    }
    failed
}
