//! Counters of what flows through the router and what is dropped, so nothing is ever lost
//! silently: every drop increments a counter here and is logged (rate-limited).
//!
//! Writers add per batch with `Relaxed` atomics; readers (logs, `/health`, later `/metrics`)
//! sum them when asked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// All counters of one process.
#[derive(Debug)]
pub struct Stats {
    /// Lines read from Docker.
    pub lines_in: AtomicU64,
    /// Lines longer than the line cap, emitted in pieces.
    pub lines_split: AtomicU64,
    /// Lines Docker sent again (older than the last line of their stream), skipped.
    pub lines_repeated_by_docker: AtomicU64,
    /// Multiline groups cut at their line or byte cap.
    pub multiline_caps: AtomicU64,
    /// Lua states rebuilt because they outgrew their memory limit.
    pub lua_memory_resets: AtomicU64,
    /// Config reloads accepted.
    pub reloads_ok: AtomicU64,
    /// Config reloads refused (the running config stayed).
    pub reloads_failed: AtomicU64,
    /// Multiline groups emitted that joined two lines or more.
    pub multiline_groups: AtomicU64,
    /// Lines whose receipts were dropped unsettled while running (a writer that died): released
    /// so the cursor moves on, and lost for that route.
    pub lines_abandoned: AtomicU64,
    /// Lines removed routes still held at the end of their grace period, summed over every
    /// route, removed ones included (their own counters leave `/metrics` with them).
    pub lines_dropped_route_removed: Arc<AtomicU64>,
    /// Containers that started but could never be read (inspect kept failing until they were
    /// gone).
    pub containers_unread: AtomicU64,
    /// Times a json-file log being read was found rotated away: lines in files deleted
    /// before they could be opened are lost (how many, the files being gone, is unknown).
    pub log_rotation_gaps: AtomicU64,
    /// Entries of json-file logs that were not dockerd's JSON, skipped.
    pub log_entries_malformed: AtomicU64,
    /// Per route, by name; a route keeps its counters across config reloads.
    routes: Mutex<Vec<Arc<RouteStats>>>,
    /// Lines read per container name, for the first [`CONTAINER_SERIES_MAX`] names; the
    /// rest share [`OTHER_CONTAINERS`], so a host that churns containers cannot grow
    /// `/metrics` without bound.
    containers: Mutex<std::collections::BTreeMap<String, Arc<AtomicU64>>>,
}

/// Most container names with series of their own in `/metrics`.
pub const CONTAINER_SERIES_MAX: usize = 200;
/// The series of the containers past [`CONTAINER_SERIES_MAX`].
pub const OTHER_CONTAINERS: &str = "_other";

/// The counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// The route's name when its counters were created (what its writer logs).
    pub name: String,
    /// The route's name now, if a reload renamed it: its sink and counters stayed.
    renamed: Mutex<Option<String>>,
    /// Lines whose container and stream matched the route.
    pub matched: AtomicU64,
    /// Lines the Lua filter (or a nil format) dropped on purpose.
    pub filtered: AtomicU64,
    /// Lines queued for the sink.
    pub queued: AtomicU64,
    /// Lines written to the sink's socket.
    pub sent: AtomicU64,
    /// Bytes written to the sink (before TLS or gzip).
    pub bytes_sent: AtomicU64,
    /// Connections made to the sink (a new one after each failure).
    pub connections: AtomicU64,
    /// Time spent in the route's Lua `filter` and `format`, in nanoseconds.
    pub lua_ns: AtomicU64,
    /// Lines dropped because the route's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Lines lost in a failed write (UDP send error, datagram too large, shutdown with the
    /// sink down).
    pub dropped_write: AtomicU64,
    /// Lines in HTTP batches the endpoint refused as bad (400, 413, 422; never retried).
    pub dropped_rejected: AtomicU64,
    /// `dropped_rejected` by HTTP status.
    pub rejected_by_status: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Lines a removed route still held when its grace period ended (`LUASPOUT_ROUTE_GRACE`).
    pub dropped_route_removed: AtomicU64,
    /// [`Stats::lines_dropped_route_removed`], which outlives this route's counters.
    pub dropped_route_removed_all: Arc<AtomicU64>,
    /// Why the sink failed last (`HTTP 401 Unauthorized`, `write timed out`), while it fails.
    pub last_problem: Mutex<Option<String>>,
    /// HTTP batches acknowledged with a 2xx.
    pub batches_sent: AtomicU64,
    /// HTTP requests tried again (connection error, timeout, 429, 5xx).
    pub retries: AtomicU64,
    /// TLS handshakes that failed (untrusted certificate, wrong name, no client certificate).
    pub tls_failures: AtomicU64,
    /// Lua errors (or budget overruns) in the route's `filter`/`format`.
    pub lua_errors: AtomicU64,
    /// Template execution errors in the route's `RAW_FORMAT`/`SYSLOG_*` rendering.
    pub format_errors: AtomicU64,
    /// Containers whose reads this route is pausing right now (its queue is full and it has
    /// `on_full = "block"`), by name, with how many pumps of that name wait.
    pub holding_back: Mutex<std::collections::BTreeMap<String, usize>>,
    /// Time containers spent paused by this route, summed over containers, in nanoseconds.
    pub paused_ns: AtomicU64,
    /// Whether the sink is connected right now.
    pub connected: AtomicBool,
    /// Connection attempts that failed since the last success.
    pub connect_failures: AtomicU64,
    /// Rate limiter for this route's warnings.
    pub warn_limit: RateLimit,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            lines_in: AtomicU64::new(0),
            lines_split: AtomicU64::new(0),
            lines_repeated_by_docker: AtomicU64::new(0),
            multiline_caps: AtomicU64::new(0),
            lua_memory_resets: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            multiline_groups: AtomicU64::new(0),
            lines_abandoned: AtomicU64::new(0),
            lines_dropped_route_removed: Arc::default(),
            containers_unread: AtomicU64::new(0),
            log_rotation_gaps: AtomicU64::new(0),
            log_entries_malformed: AtomicU64::new(0),
            routes: Mutex::default(),
            containers: Mutex::default(),
        }
    }

    /// The counters of the route called `name`, created on first use.
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        let mut routes = self.routes.lock().expect("stats lock");
        if let Some(r) = routes.iter().find(|r| r.label() == name) {
            return r.clone();
        }
        let r = Arc::new(RouteStats {
            name: name.to_string(),
            dropped_route_removed_all: self.lines_dropped_route_removed.clone(),
            ..Default::default()
        });
        routes.push(r.clone());
        r
    }

    /// Forgets the counters of every route not named in `names` (the config in force): a
    /// removed route leaves `/health` and `/metrics`. Its writer may still count on its own
    /// handle during its grace period; what it drops then shows in the process-wide total.
    pub fn retain_routes<'a>(&self, names: impl Iterator<Item = &'a str>) {
        let names: std::collections::HashSet<&str> = names.collect();
        self.routes.lock().expect("stats lock").retain(|r| names.contains(r.label().as_str()));
    }

    /// A reload renamed the route `old` (same sink): its counters go on under `new`, unless
    /// a route called `new` already has counters of its own.
    pub fn rename_route(&self, old: &str, new: &str) {
        let routes = self.routes.lock().expect("stats lock");
        if routes.iter().any(|r| r.label() == new) {
            return;
        }
        if let Some(r) = routes.iter().find(|r| r.label() == old) {
            *r.renamed.lock().expect("stats lock") = Some(new.to_string());
        }
    }

    /// The lines-read counter of the container called `name` (or of [`OTHER_CONTAINERS`]).
    pub fn container(&self, name: &str) -> Arc<AtomicU64> {
        let mut containers = self.containers.lock().expect("stats lock");
        if let Some(c) = containers.get(name) {
            return c.clone();
        }
        let key = if containers.len() < CONTAINER_SERIES_MAX { name } else { OTHER_CONTAINERS };
        containers.entry(key.to_string()).or_default().clone()
    }

    /// Lines read per container name.
    pub fn containers(&self) -> Vec<(String, u64)> {
        let containers = self.containers.lock().expect("stats lock");
        containers.iter().map(|(n, c)| (n.clone(), c.load(Ordering::Relaxed))).collect()
    }

    /// Every route's counters, in order of creation.
    pub fn routes(&self) -> Vec<Arc<RouteStats>> {
        self.routes.lock().expect("stats lock").clone()
    }
}

impl RouteStats {
    /// The route's name as `/health` and `/metrics` show it: its name now.
    pub fn label(&self) -> String {
        self.renamed.lock().expect("stats lock").clone().unwrap_or_else(|| self.name.clone())
    }

    /// The route's full queue starts pausing the container called `name`.
    pub fn hold_back(&self, name: &str) {
        *self.holding_back.lock().expect("stats lock").entry(name.to_string()).or_default() += 1;
    }

    /// The route stops pausing the container called `name`, after `paused`.
    pub fn let_go(&self, name: &str, paused: std::time::Duration) {
        add(&self.paused_ns, paused.as_nanos() as u64);
        let mut held = self.holding_back.lock().expect("stats lock");
        if let Some(n) = held.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                held.remove(name);
            }
        }
    }

    /// Counts `n` lines a removed route dropped at the end of its grace period.
    pub fn dropped_as_removed(&self, n: u64) {
        add(&self.dropped_route_removed, n);
        add(&self.dropped_route_removed_all, n);
    }

    /// Counts `n` lines of a batch the endpoint refused with `status`.
    pub fn rejected(&self, status: u16, n: u64) {
        add(&self.dropped_rejected, n);
        *self.rejected_by_status.lock().expect("stats lock").entry(status).or_default() += n;
    }

    /// Records why the sink fails (`None`: it works again).
    pub fn set_problem(&self, problem: Option<String>) {
        *self.last_problem.lock().expect("stats lock") = problem;
    }

    /// Why the sink failed last, while it fails.
    pub fn problem(&self) -> Option<String> {
        self.last_problem.lock().expect("stats lock").clone()
    }

    /// The names of the containers the route is pausing right now.
    pub fn held_back(&self) -> Vec<String> {
        self.holding_back.lock().expect("stats lock").keys().cloned().collect()
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Lets a warning through at most once per interval, so a flood of identical failures (a dead
/// sink, a Lua error on every line) logs a line now and then, with the count, instead of one
/// per message.
#[derive(Debug, Default)]
pub struct RateLimit {
    last_secs: AtomicU64,
}

/// Seconds between two warnings of the same kind.
const WARN_INTERVAL_SECS: u64 = 10;

impl RateLimit {
    /// True if a warning may be logged now.
    pub fn allow(&self) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_secs.load(Ordering::Relaxed);
        (last == 0 || now >= last + WARN_INTERVAL_SECS)
            && self.last_secs.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_counters_are_shared_by_name() {
        let s = Stats::new();
        add(&s.route("a").sent, 2);
        add(&s.route("a").sent, 3);
        assert_eq!(s.route("a").sent.load(Ordering::Relaxed), 5);
        assert_eq!(s.routes().len(), 1);
    }

    #[test]
    fn a_removed_route_leaves_the_listing_and_its_drops_stay_counted() {
        let s = Stats::new();
        let (a, _b) = (s.route("a"), s.route("b"));
        s.retain_routes(["b"].into_iter());
        assert_eq!(s.routes().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["b"]);
        a.dropped_as_removed(3);
        assert_eq!(s.lines_dropped_route_removed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_renamed_route_keeps_its_counters() {
        let s = Stats::new();
        add(&s.route("old").sent, 5);
        s.rename_route("old", "new");
        assert_eq!(s.route("new").sent.load(Ordering::Relaxed), 5);
        assert_eq!(s.routes().iter().map(|r| r.label()).collect::<Vec<_>>(), ["new"]);
    }

    #[test]
    fn container_series_are_capped() {
        let s = Stats::new();
        for i in 0..CONTAINER_SERIES_MAX + 10 {
            add(&s.container(&format!("c{i}")), 1);
        }
        add(&s.container("c0"), 1);
        let series = s.containers();
        assert_eq!(series.len(), CONTAINER_SERIES_MAX + 1);
        assert!(series.contains(&(OTHER_CONTAINERS.to_string(), 10)));
        assert!(series.contains(&("c0".to_string(), 2)));
    }

    #[test]
    fn rate_limit_lets_one_through_per_interval() {
        let r = RateLimit::default();
        assert!(r.allow());
        assert!(!r.allow());
        assert!(!r.allow());
    }
}
