//! Multiline grouping: joins the lines of one container stream into one message, so a stack
//! trace reaches the sink as one event instead of fifty.
//!
//! This module owns the decision "does this line start, extend or end a group", the per-stream
//! buffers and the flush rules. It is pure, after Vector's `line_agg::Logic`: no clock, no I/O, no
//! task. A router worker feeds it lines with [`Aggregator::push`], sleeps until
//! [`Aggregator::next_deadline_ns`] and then calls [`Aggregator::flush_expired`], and calls
//! [`Aggregator::flush_container`] and [`Aggregator::flush_all`] when a container stops or the
//! config goes away, so nothing buffered is lost.
//!
//! The modes are logspout's (`first`, `last`, `nonfirst`, `nonlast`, see [`Mode`]) plus a
//! start/continue pair for users coming from Vector or Fluent Bit. Where logspout's adapter
//! misbehaves, this one deliberately differs:
//!
//! * A group is flushed once its first line is `flush_after` old. logspout's timer compares the
//!   wrong way round and flushes groups that are *younger* than that, which splits slow traces.
//! * Age is measured in Docker time (`Message::time_ns`), both between lines and by the timer, so
//!   a backlog replay groups the same way as live traffic.
//! * A merged group is a new [`Message`]; the lines it was made of, which other routes may hold
//!   too, are never changed. A group of one line is passed on as the very same message.
//! * Groups are kept per container *and* stream: logspout shares one buffer between stdout and
//!   stderr, so a stderr line could land inside a stdout trace.
//! * A group is cut at a line or byte cap, so a container printing an endless run of
//!   continuation lines cannot grow a buffer without bound.

#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use regex::bytes::{Regex, RegexSet};

use crate::message::{Message, Source};

/// The option keys [`Spec::from_options`] reads, so a caller building options from a Lua table
/// can reject a misspelt key instead of silently ignoring it.
pub const OPTION_KEYS: [&str; 8] =
    ["match", "pattern", "start", "continue", "flush_after", "separator", "max_lines", "max_bytes"];

/// logspout's default: a line starting with whitespace continues the previous one.
const DEFAULT_PATTERN: &str = r"^\s";
/// logspout's default `MULTILINE_FLUSH_AFTER`; long enough for a trace written in one burst,
/// short enough that a lone last line is not held noticeably.
const DEFAULT_FLUSH_AFTER_MS: i64 = 500;
/// Bounds one message to what every sink accepts and stops a runaway run of continuation lines.
const DEFAULT_MAX_LINES: usize = 1000;
/// Bounds the memory one stream can pin; 1 MiB holds any real stack trace.
const DEFAULT_MAX_BYTES: usize = 1 << 20;
const NS_PER_MS: i64 = 1_000_000;

/// How lines are classified into groups.
///
/// A line that continues a group but finds none open starts one of its own, as in logspout: the
/// tail of a trace whose head was already flushed still comes out as one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A line matching `pattern` starts a group; other lines are appended to it. For logs whose
    /// records begin with a recognisable header, such as a timestamp.
    First,
    /// Lines accumulate until one matching `pattern`, which ends the group. For records with a
    /// terminator, such as a `;` at the end of a statement.
    Last,
    /// A line *not* matching `pattern` starts a group; matching lines are appended. The default,
    /// with `^\s`: indented lines (Java's `\tat ...`, Python's frames) belong to the line above.
    NonFirst,
    /// Lines matching `pattern` accumulate; the first line not matching it ends the group. For
    /// continuation markers at the end of a line, such as a trailing `\`.
    NonLast,
    /// Vector's and Fluent Bit's pair: a line matching `start` begins a group and a line matching
    /// `continue` is appended. With only `start` this is [`Mode::First`], with only `continue` it
    /// is [`Mode::NonFirst`]; with both, a line matching neither closes the open group and passes
    /// on alone, and a line matching both begins a group.
    StartContinue,
}

impl Mode {
    /// Parses the `match` option: logspout's names, case-insensitive as logspout compares them,
    /// and `start_continue`.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.to_ascii_lowercase().as_str() {
            "first" => Ok(Mode::First),
            "last" => Ok(Mode::Last),
            "nonfirst" => Ok(Mode::NonFirst),
            "nonlast" => Ok(Mode::NonLast),
            "start_continue" => Ok(Mode::StartContinue),
            _ => Err(format!("multiline match {s:?}: expected first, last, nonfirst, nonlast or start_continue")),
        }
    }

    /// The name `parse` accepts, for messages about the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::First => "first",
            Mode::Last => "last",
            Mode::NonFirst => "nonfirst",
            Mode::NonLast => "nonlast",
            Mode::StartContinue => "start_continue",
        }
    }
}

/// One validated multiline rule, compiled once per config and shared by the workers' aggregators.
///
/// Build it with [`Spec::from_options`]; the fields are public for reading. The regexes are
/// compiled with Go's ASCII meaning of `\d`, `\s`, `\w` and `\b` (see [`Spec::from_options`]), so
/// their `as_str()` shows the rewritten pattern, not the user's.
#[derive(Debug, Clone)]
pub struct Spec {
    /// How lines are classified.
    pub mode: Mode,
    /// The classifier of the logspout modes; `None` in [`Mode::StartContinue`].
    pub pattern: Option<Regex>,
    /// The start pattern of [`Mode::StartContinue`].
    pub start: Option<Regex>,
    /// The continue pattern of [`Mode::StartContinue`].
    pub cont: Option<Regex>,
    /// A group is emitted once its first line is this old, in Docker time.
    pub flush_after_ns: i64,
    /// Put between the lines of a group; logspout's `MULTILINE_SEPARATOR`.
    pub separator: Vec<u8>,
    /// A group is emitted when it holds this many lines.
    pub max_lines: usize,
    /// A group is emitted before it would grow past this many bytes, or when it reaches it.
    pub max_bytes: usize,
    /// `start` and `cont` together, when both are set, so a line is still classified in one
    /// search.
    both: Option<RegexSet>,
}

impl Spec {
    /// Builds a rule from named options, so env `MULTILINE_*` values, route URI options and a Lua
    /// table all go through one validation. The keys are [`OPTION_KEYS`]:
    ///
    /// * `match`: a [`Mode`] name; default `nonfirst`, or `start_continue` when `start` or
    ///   `continue` is given.
    /// * `pattern`: default `^\s`; only for the logspout modes.
    /// * `start`, `continue`: only for `start_continue`, which needs at least one of them.
    /// * `flush_after`: whole milliseconds, more than 0; default 500.
    /// * `separator`: taken literally, no unescaping; default `\n`.
    /// * `max_lines`, `max_bytes`: more than 0; default 1000 and 1 MiB.
    ///
    /// An empty value counts as absent, as logspout treats an empty environment variable.
    ///
    /// Patterns are searched, not anchored, with Rust's syntax, which is RE2's. Go's RE2 makes
    /// `\d`, `\s`, `\w` and `\b` ASCII-only, while Rust's are Unicode-aware; so that a pattern
    /// written for logspout matches the same lines here (`^\s` must not take a no-break space for
    /// indentation), these escapes are compiled as ASCII. Everything else stays Unicode-aware as
    /// in Go: `.` matches one character, and `\pL` and non-ASCII literals work.
    pub fn from_options(get: &dyn Fn(&str) -> Option<String>) -> Result<Spec, String> {
        let opt = |key: &str| get(key).filter(|v| !v.is_empty());
        let start = opt("start").map(|p| compile("start", &p)).transpose()?;
        let cont = opt("continue").map(|p| compile("continue", &p)).transpose()?;
        let mode = match opt("match") {
            Some(m) => Mode::parse(&m)?,
            None if start.is_some() || cont.is_some() => Mode::StartContinue,
            None => Mode::NonFirst,
        };
        let pattern = match (mode, opt("pattern")) {
            (Mode::StartContinue, Some(p)) => {
                return Err(format!(
                    "multiline pattern {p:?}: not used with match \"start_continue\"; give start or continue"
                ));
            }
            (Mode::StartContinue, None) => {
                if start.is_none() && cont.is_none() {
                    return Err("multiline match \"start_continue\": needs start or continue (or both)".into());
                }
                None
            }
            (_, p) => {
                if start.is_some() || cont.is_some() {
                    return Err(format!(
                        "multiline start/continue: only used with match \"start_continue\", not {:?}",
                        mode.as_str()
                    ));
                }
                Some(compile("pattern", p.as_deref().unwrap_or(DEFAULT_PATTERN))?)
            }
        };
        let both = match (&start, &cont) {
            (Some(s), Some(c)) => {
                Some(RegexSet::new([s.as_str(), c.as_str()]).map_err(|e| format!("multiline start/continue: {e}"))?)
            }
            _ => None,
        };
        let flush_after_ns = match opt("flush_after") {
            Some(v) => i64::try_from(positive("flush_after", &v)?)
                .ok()
                .and_then(|ms| ms.checked_mul(NS_PER_MS))
                .ok_or_else(|| format!("multiline flush_after {v:?}: too large"))?,
            None => DEFAULT_FLUSH_AFTER_MS * NS_PER_MS,
        };
        Ok(Spec {
            mode,
            pattern,
            start,
            cont,
            flush_after_ns,
            separator: opt("separator").map_or_else(|| b"\n".to_vec(), String::into_bytes),
            max_lines: opt("max_lines").map_or(Ok(DEFAULT_MAX_LINES), |v| positive("max_lines", &v))?,
            max_bytes: opt("max_bytes").map_or(Ok(DEFAULT_MAX_BYTES), |v| positive("max_bytes", &v))?,
            both,
        })
    }

    /// What `line` does to its stream's group: one regex search.
    fn decide(&self, line: &[u8]) -> Decision {
        let (re, on_match, otherwise) = match self.mode {
            Mode::First => (&self.pattern, Decision::Start, Decision::Join),
            Mode::NonFirst => (&self.pattern, Decision::Join, Decision::Start),
            Mode::Last => (&self.pattern, Decision::End, Decision::Join),
            Mode::NonLast => (&self.pattern, Decision::Join, Decision::End),
            Mode::StartContinue => match &self.both {
                Some(set) => {
                    let hits = set.matches(line);
                    return if hits.matched(0) {
                        Decision::Start
                    } else if hits.matched(1) {
                        Decision::Join
                    } else {
                        Decision::Alone
                    };
                }
                None if self.start.is_some() => (&self.start, Decision::Start, Decision::Join),
                None => (&self.cont, Decision::Join, Decision::Start),
            },
        };
        if re.as_ref().is_some_and(|re| re.is_match(line)) { on_match } else { otherwise }
    }
}

/// What one line does to the open group of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Emit the open group; the line opens the next one.
    Start,
    /// Append the line to the open group, or open one with it.
    Join,
    /// Append the line to the open group, or open one with it, and emit the group.
    End,
    /// Emit the open group, then the line on its own.
    Alone,
}

/// Compiles a user pattern for `key`, naming the key and the pattern as the user wrote them on
/// failure.
fn compile(key: &str, pattern: &str) -> Result<Regex, String> {
    Regex::new(&go_ascii_classes(pattern)).map_err(|rewritten_err| {
        // Report the error against what the user wrote when that is already wrong; otherwise
        // the rewrite produced it and its own message is the useful one.
        let err = Regex::new(pattern).err().unwrap_or(rewritten_err);
        format!("multiline {key} {pattern:?}: {err}")
    })
}

/// Parses a count or duration option that must be a whole number above zero.
fn positive(key: &str, value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err(format!("multiline {key} {value:?}: must be more than 0")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("multiline {key} {value:?}: not a whole number")),
    }
}

/// Rewrites `\d \D \s \S \w \W` to the ASCII sets Go's RE2 gives them and `\b \B` to ASCII word
/// boundaries, leaving the rest of the pattern alone.
///
/// The sets are written as bracket classes, which Rust also accepts nested inside a class, so
/// `[\s,]` becomes `[[\t\n\f\r ],]`. Only the positions of `\`, `[` and `]` are tracked: they are
/// ASCII, so slicing there never splits a character.
fn go_ascii_classes(pattern: &str) -> String {
    let b = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut copied = 0;
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let set = match b.get(i + 1) {
                    Some(b'd') => Some("[0-9]"),
                    Some(b'D') => Some("[^0-9]"),
                    Some(b's') => Some("[\\t\\n\\f\\r ]"),
                    Some(b'S') => Some("[^\\t\\n\\f\\r ]"),
                    Some(b'w') => Some("[0-9A-Za-z_]"),
                    Some(b'W') => Some("[^0-9A-Za-z_]"),
                    // `\b{start}` and friends are Rust-only and have no Go meaning to keep.
                    Some(b'b') if depth == 0 && b.get(i + 2) != Some(&b'{') => Some("(?-u:\\b)"),
                    Some(b'B') if depth == 0 => Some("(?-u:\\B)"),
                    _ => None,
                };
                if let Some(set) = set {
                    out.push_str(&pattern[copied..i]);
                    out.push_str(set);
                    copied = i + 2;
                }
                i += 2;
            }
            b'[' => {
                if depth > 0
                    && let Some(len) = posix_class_len(&b[i..])
                {
                    i += len;
                    continue;
                }
                depth += 1;
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                // A `]` right after the opening bracket is a literal.
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.push_str(&pattern[copied..]);
    out
}

/// The length of a POSIX class such as `[:alpha:]` or `[:^digit:]` at the start of `b`, if any.
fn posix_class_len(b: &[u8]) -> Option<usize> {
    let rest = b.strip_prefix(b"[:")?;
    let rest = rest.strip_prefix(b"^").unwrap_or(rest);
    let name = rest.iter().take_while(|c| c.is_ascii_lowercase()).count();
    (name > 0 && rest[name..].starts_with(b":]")).then(|| b.len() - rest.len() + name + 2)
}

/// One open group: its first line, kept whole, and the joined text once a second line arrives.
#[derive(Debug)]
struct Group {
    first: Message,
    /// The lines so far joined by the separator; `None` while the group is one line, so that
    /// line can be passed on without a copy.
    joined: Option<BytesMut>,
    lines: usize,
}

impl Group {
    fn new(first: Message) -> Group {
        Group { first, joined: None, lines: 1 }
    }

    fn len(&self) -> usize {
        self.joined.as_ref().map_or(self.first.data.len(), BytesMut::len)
    }

    fn deadline(&self, spec: &Spec) -> i64 {
        self.first.time_ns.saturating_add(spec.flush_after_ns)
    }

    /// Whether a line of `line_len` bytes can join without growing the group past `max_bytes`.
    fn fits(&self, spec: &Spec, line_len: usize) -> bool {
        self.len().saturating_add(spec.separator.len()).saturating_add(line_len) <= spec.max_bytes
    }

    fn full(&self, spec: &Spec) -> bool {
        self.lines >= spec.max_lines || self.len() >= spec.max_bytes
    }

    fn append(&mut self, separator: &[u8], line: &[u8]) {
        let first = &self.first.data;
        let joined = self.joined.get_or_insert_with(|| {
            let mut buf = BytesMut::with_capacity(2 * (first.len() + separator.len() + line.len()));
            buf.extend_from_slice(first);
            buf
        });
        joined.extend_from_slice(separator);
        joined.extend_from_slice(line);
        self.lines += 1;
    }

    /// The message for the group: the first line itself, or a new message with the first line's
    /// container, source and time and the joined text.
    /// Counts it in `joined_groups` when it holds more than one line.
    fn finish(self, joined_groups: &mut u64) -> Message {
        match self.joined {
            None => self.first,
            Some(joined) => {
                *joined_groups += 1;
                Message { data: joined.freeze(), ..self.first }
            }
        }
    }
}

/// The open groups of one container: stdout's and stderr's, never mixed.
type Streams = [Option<Group>; 2];

fn stream_index(source: Source) -> usize {
    match source {
        Source::Stdout => 0,
        Source::Stderr => 1,
    }
}

/// Emits `groups` oldest first, so a stream's flushed group never overtakes an older one.
fn emit_oldest_first(mut groups: Vec<Group>, joined_groups: &mut u64, emit: &mut impl FnMut(Message)) {
    groups.sort_by_key(|g| g.first.time_ns);
    for g in groups {
        emit(g.finish(joined_groups));
    }
}

/// The open groups of one router worker under one [`Spec`].
///
/// A worker sees every line of a container (the router shards by container), so its aggregator
/// can key groups by container and stream alone. Messages are emitted through the `emit`
/// callback, in order per stream.
#[derive(Debug)]
pub struct Aggregator {
    spec: Arc<Spec>,
    /// Keyed by container ID. An entry stays while its container runs, so a line costs one
    /// lookup and no allocation; a sweep of [`Aggregator::flush_expired`] drops the entries
    /// left with no open group, so a missed stop does not leak one.
    groups: HashMap<String, Streams>,
    /// Never later than the earliest deadline of an open group: kept up to date when a group
    /// opens, and made exact again by `flush_expired`.
    next_deadline: Option<i64>,
    caps_hit: u64,
    /// Messages emitted that joined two lines or more.
    joined_groups: u64,
}

impl Aggregator {
    /// An aggregator with no open group. Build a new one when the config changes, after
    /// [`Aggregator::flush_all`] on the old one.
    pub fn new(spec: Arc<Spec>) -> Aggregator {
        Aggregator { spec, groups: HashMap::new(), next_deadline: None, caps_hit: 0, joined_groups: 0 }
    }

    /// Takes one line and emits, in order, whatever it completes: the group it closes, and the
    /// line's own group when the line ends it or a cap is reached.
    ///
    /// A pending group whose first line is `flush_after` old by this line's Docker time is
    /// emitted first, so a replayed backlog splits where the live stream would have.
    pub fn push(&mut self, msg: Message, emit: &mut impl FnMut(Message)) {
        let spec = &*self.spec;
        let streams = match self.groups.get_mut(msg.container.id.as_str()) {
            Some(streams) => streams,
            None => self.groups.entry(msg.container.id.clone()).or_default(),
        };
        let slot = &mut streams[stream_index(msg.source)];
        if let Some(g) = slot.take_if(|g| msg.time_ns >= g.deadline(spec)) {
            emit(g.finish(&mut self.joined_groups));
        }
        let decision = spec.decide(&msg.data);
        match decision {
            Decision::Start | Decision::Alone => {
                if let Some(g) = slot.take() {
                    emit(g.finish(&mut self.joined_groups));
                }
            }
            Decision::Join | Decision::End => {
                if let Some(g) = slot.take_if(|g| !g.fits(spec, msg.data.len())) {
                    self.caps_hit += 1;
                    emit(g.finish(&mut self.joined_groups));
                }
            }
        }
        if decision == Decision::Alone {
            emit(msg);
            return;
        }
        let group = match slot {
            Some(g) => {
                g.append(&spec.separator, &msg.data);
                g
            }
            None => {
                let g = slot.insert(Group::new(msg));
                let deadline = g.deadline(spec);
                self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
                g
            }
        };
        let done = match decision {
            Decision::End => true,
            _ if group.full(spec) => {
                self.caps_hit += 1;
                true
            }
            _ => false,
        };
        if done && let Some(g) = slot.take() {
            emit(g.finish(&mut self.joined_groups));
        }
    }

    /// Emits, oldest first, every group whose first line is at least `flush_after` older than
    /// `now_ns`; for a live stream the caller passes the wall clock.
    ///
    /// During a backlog replay every open group is old by the wall clock, so a caller should
    /// sweep only when its inbox is idle; otherwise a trace split across two batches is cut.
    pub fn flush_expired(&mut self, now_ns: i64, emit: &mut impl FnMut(Message)) {
        if self.next_deadline.is_none_or(|d| now_ns < d) {
            return;
        }
        let spec = &*self.spec;
        let mut expired = Vec::new();
        let mut next: Option<i64> = None;
        self.groups.retain(|_, streams| {
            for slot in streams.iter_mut() {
                if let Some(g) = slot.take_if(|g| now_ns >= g.deadline(spec)) {
                    expired.push(g);
                } else if let Some(g) = slot {
                    let d = g.deadline(spec);
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
            streams.iter().any(Option::is_some)
        });
        self.next_deadline = next;
        emit_oldest_first(expired, &mut self.joined_groups, emit);
    }

    /// When the next call to [`Aggregator::flush_expired`] can emit something, so the caller
    /// sleeps exactly until then; `None` when no group is open.
    ///
    /// It is never later than the true deadline, but may be earlier after groups were emitted by
    /// other calls: waking then costs one `flush_expired` that emits nothing and makes it exact.
    pub fn next_deadline_ns(&self) -> Option<i64> {
        self.next_deadline
    }

    /// Emits the open groups of a container that stopped: no more lines will complete them.
    pub fn flush_container(&mut self, container_id: &str, emit: &mut impl FnMut(Message)) {
        if let Some(streams) = self.groups.remove(container_id) {
            emit_oldest_first(streams.into_iter().flatten().collect(), &mut self.joined_groups, emit);
        }
    }

    /// Emits every open group, oldest first: at shutdown and before a config reload drops this
    /// aggregator, so no buffered line is lost.
    pub fn flush_all(&mut self, emit: &mut impl FnMut(Message)) {
        let groups = self.groups.drain().flat_map(|(_, streams)| streams).flatten().collect();
        self.next_deadline = None;
        emit_oldest_first(groups, &mut self.joined_groups, emit);
    }

    /// How many groups were emitted because they reached `max_lines` or `max_bytes`, for the
    /// stats: a non-zero count means messages were split, and the caps or the pattern may need
    /// a look.
    pub fn caps_hit(&self) -> u64 {
        self.caps_hit
    }

    /// Messages emitted so far that joined two lines or more (stack traces), for the stats.
    pub fn joined_groups(&self) -> u64 {
        self.joined_groups
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use bytes::Bytes;

    use super::*;
    use crate::message::Container;

    const MS: i64 = 1_000_000;
    /// 2023-11-14T22:13:20Z: tests run on made-up Docker times, never the wall clock.
    const T0: i64 = 1_700_000_000_000 * MS;

    fn try_spec(opts: &[(&str, &str)]) -> Result<Spec, String> {
        Spec::from_options(&|key| opts.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
    }

    fn spec(opts: &[(&str, &str)]) -> Arc<Spec> {
        Arc::new(try_spec(opts).unwrap_or_else(|e| panic!("{opts:?}: {e}")))
    }

    fn container(id: &str) -> Arc<Container> {
        Arc::new(Container { id: id.into(), name: format!("{id}_name"), ..Default::default() })
    }

    fn line(c: &Arc<Container>, source: Source, at_ms: i64, data: &str) -> Message {
        Message {
            container: c.clone(),
            source,
            time_ns: T0 + at_ms * MS,
            data: Bytes::copy_from_slice(data.as_bytes()),
            ack: None,
        }
    }

    fn text(m: &Message) -> String {
        String::from_utf8_lossy(&m.data).into_owned()
    }

    /// "id/stream:data", to compare emissions of several streams at once.
    fn tagged(m: &Message) -> String {
        format!("{}/{}:{}", m.container.id, m.source.as_str(), text(m))
    }

    /// Pushes `lines` on one container's stdout, 1 ms apart, then flushes: every emitted text.
    fn group(opts: &[(&str, &str)], lines: &[&str]) -> Vec<String> {
        let c = container("a");
        let mut agg = Aggregator::new(spec(opts));
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            agg.push(line(&c, Source::Stdout, i as i64, l), &mut |m| out.push(text(&m)));
        }
        agg.flush_all(&mut |m| out.push(text(&m)));
        out
    }

    /// logspout's multiline test vectors, both tables (docs/logspout-compat.md, "Test vectors"; one
    /// container, order only).
    #[test]
    fn logspout_vectors() {
        type Row<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);
        let rows: &[Row] = &[
            (
                &[("match", "nonfirst"), ("pattern", r"^\s")],
                &["some", "  multi", "  line", "other", "  multiline"],
                &["some\n  multi\n  line", "other\n  multiline"],
            ),
            (
                &[("match", "first"), ("pattern", ":$")],
                &["some:", "multi", "line", "other:", "multiline"],
                &["some:\nmulti\nline", "other:\nmultiline"],
            ),
            (
                &[("match", "nonlast"), ("pattern", r"\$$")],
                &["some$", "multi$", "line", "other$", "multiline"],
                &["some$\nmulti$\nline", "other$\nmultiline"],
            ),
            (
                &[("match", "last"), ("pattern", "!$")],
                &["some", "multi", "line!", "other", "multiline!"],
                &["some\nmulti\nline!", "other\nmultiline!"],
            ),
            (
                &[("match", "nonlast"), ("pattern", r"^(DETAIL:|STATEMENT:|Traceback|\s)")],
                &[
                    "not yet",
                    "Traceback",
                    " tb1",
                    " tb2!",
                    "Error123",
                    "no more traceback",
                    "STATEMENT:",
                    " still statement",
                    "end of statement",
                    "no more statement",
                ],
                &[
                    "not yet",
                    "Traceback\n tb1\n tb2!\nError123",
                    "no more traceback",
                    "STATEMENT:\n still statement\nend of statement",
                    "no more statement",
                ],
            ),
            (&[("match", "nonfirst"), ("pattern", r"^\s")], &["  orphan", "a", " b"], &["  orphan", "a\n b"]),
            (&[("match", "nonfirst"), ("pattern", r"^\s")], &["a", "b", "c"], &["a", "b", "c"]),
            (&[("match", "first"), ("pattern", r"^\[")], &["x", "[1] a", "b", "[2] c"], &["x", "[1] a\nb", "[2] c"]),
            (
                &[("match", "first"), ("pattern", r"^\d{4}-\d{2}-\d{2}")],
                &["2020-01-01 start", "java.lang.Exception: boom", "\tat Foo.bar(Foo.java:1)", "2020-01-01 next"],
                &["2020-01-01 start\njava.lang.Exception: boom\n\tat Foo.bar(Foo.java:1)", "2020-01-01 next"],
            ),
            (&[("match", "last"), ("pattern", ";$")], &["a", "b;", "c;"], &["a\nb;", "c;"]),
            (&[("match", "nonlast"), ("pattern", r"\\$")], &["a \\", "b \\", "c", "d"], &["a \\\nb \\\nc", "d"]),
            (&[("separator", " | ")], &["a", "  b", "c"], &["a |   b", "c"]),
            // The defaults are logspout's: nonfirst with `^\s`.
            (&[], &["a", " b", "c"], &["a\n b", "c"]),
        ];
        for (opts, input, want) in rows {
            assert_eq!(group(opts, input), *want, "{opts:?} {input:?}");
        }
    }

    #[test]
    fn two_interleaved_containers_group_apart() {
        let (a, b) = (container("A"), container("B"));
        let mut agg = Aggregator::new(spec(&[]));
        let mut out = Vec::new();
        for (i, (c, l)) in [(&a, "a1"), (&b, "b1"), (&a, "  a2"), (&b, "  b2"), (&a, "a3")].into_iter().enumerate() {
            agg.push(line(c, Source::Stdout, i as i64, l), &mut |m| out.push(tagged(&m)));
        }
        assert_eq!(out, ["A/stdout:a1\n  a2"]);
        out.clear();
        agg.flush_all(&mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["B/stdout:b1\n  b2", "A/stdout:a3"]);
    }

    #[test]
    fn stdout_and_stderr_never_mix() {
        let c = container("A");
        let mut agg = Aggregator::new(spec(&[]));
        let mut out = Vec::new();
        let input = [
            (Source::Stdout, "Exception"),
            (Source::Stderr, "warning"),
            (Source::Stdout, "  at x"),
            (Source::Stderr, "  detail"),
            (Source::Stdout, "next"),
        ];
        for (i, (s, l)) in input.into_iter().enumerate() {
            agg.push(line(&c, s, i as i64, l), &mut |m| out.push(tagged(&m)));
        }
        assert_eq!(out, ["A/stdout:Exception\n  at x"]);
        out.clear();
        agg.flush_all(&mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["A/stderr:warning\n  detail", "A/stdout:next"]);
    }

    #[test]
    fn merged_message_keeps_first_line_metadata_and_leaves_lines_alone() {
        let c = container("A");
        let mut agg = Aggregator::new(spec(&[]));
        let first = line(&c, Source::Stderr, 10, "boom");
        let second = line(&c, Source::Stderr, 20, "  at x");
        let kept = (first.data.clone(), second.data.clone());
        let mut out = Vec::new();
        agg.push(first, &mut |m| out.push(m));
        agg.push(second, &mut |m| out.push(m));
        agg.flush_all(&mut |m| out.push(m));
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!((text(m).as_str(), m.source, m.time_ns), ("boom\n  at x", Source::Stderr, T0 + 10 * MS));
        assert!(Arc::ptr_eq(&m.container, &c));
        assert_eq!((&kept.0[..], &kept.1[..]), (&b"boom"[..], &b"  at x"[..]));
    }

    #[test]
    fn single_line_passes_through_without_copy() {
        let c = container("A");
        let both = spec(&[("start", "^S"), ("continue", "^C")]);
        // (spec, lines): the first line comes out alone, through each path that can emit it.
        let cases: [(Arc<Spec>, &[&str]); 4] = [
            (spec(&[]), &["a", "b"]),                                 // closed by the next start
            (spec(&[]), &["a"]),                                      // flush_all
            (spec(&[("match", "last"), ("pattern", ";$")]), &["a;"]), // ends itself
            (both, &["X"]),                                           // passes alone
        ];
        for (spec, lines) in cases {
            let mut agg = Aggregator::new(spec);
            let msgs: Vec<Message> =
                lines.iter().enumerate().map(|(i, l)| line(&c, Source::Stdout, i as i64, l)).collect();
            let original = msgs[0].data.clone();
            let mut out = Vec::new();
            for m in msgs {
                agg.push(m, &mut |m| out.push(m));
            }
            agg.flush_all(&mut |m| out.push(m));
            assert_eq!(out[0].data.as_ptr(), original.as_ptr(), "{lines:?}");
            assert_eq!(out[0].data.len(), original.len(), "{lines:?}");
        }
    }

    #[test]
    fn flush_after_is_measured_in_docker_time() {
        // (ms after the first line, does the continuation join it)
        let rows = [(0, true), (300, true), (499, true), (500, false), (600, false)];
        // A backlog from 2001 groups like live traffic: no wall clock is involved.
        for base_ms in [0, -700_000_000_000_i64] {
            for (after, joins) in rows {
                let c = container("A");
                let mut agg = Aggregator::new(spec(&[("flush_after", "500")]));
                let mut out = Vec::new();
                agg.push(line(&c, Source::Stdout, base_ms, "a"), &mut |m| out.push(text(&m)));
                agg.push(line(&c, Source::Stdout, base_ms + after, "  b"), &mut |m| out.push(text(&m)));
                agg.flush_all(&mut |m| out.push(text(&m)));
                let want: &[&str] = if joins { &["a\n  b"] } else { &["a", "  b"] };
                assert_eq!(out, want, "{after} ms later");
            }
        }
    }

    #[test]
    fn flush_expired_and_next_deadline() {
        let (a, b, c) = (container("A"), container("B"), container("C"));
        let mut agg = Aggregator::new(spec(&[("flush_after", "500")]));
        let mut out = Vec::new();
        let at = |ms: i64| T0 + ms * MS;
        assert_eq!(agg.next_deadline_ns(), None);
        agg.flush_expired(at(10_000), &mut |m| out.push(tagged(&m)));
        assert!(out.is_empty());

        agg.push(line(&a, Source::Stdout, 1000, "a"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&b, Source::Stdout, 1200, "b"), &mut |m| out.push(tagged(&m)));
        assert_eq!(agg.next_deadline_ns(), Some(at(1500)));
        agg.flush_expired(at(1499), &mut |m| out.push(tagged(&m)));
        assert!(out.is_empty());
        agg.flush_expired(at(1500), &mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["A/stdout:a"]);
        assert_eq!(agg.next_deadline_ns(), Some(at(1700)));

        // A line joining an open group does not move its deadline.
        out.clear();
        agg.push(line(&b, Source::Stdout, 1300, "  b2"), &mut |m| out.push(tagged(&m)));
        assert_eq!(agg.next_deadline_ns(), Some(at(1700)));
        agg.flush_expired(at(1800), &mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["B/stdout:b\n  b2"]);
        assert_eq!(agg.next_deadline_ns(), None);

        // After `push` closes a group the deadline may be early, never late; the wasted
        // wake-up emits nothing and makes it exact.
        out.clear();
        agg.push(line(&c, Source::Stdout, 2000, "c"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&c, Source::Stdout, 2100, "d"), &mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["C/stdout:c"]);
        assert_eq!(agg.next_deadline_ns(), Some(at(2500)));
        out.clear();
        agg.flush_expired(at(2500), &mut |m| out.push(tagged(&m)));
        assert!(out.is_empty());
        assert_eq!(agg.next_deadline_ns(), Some(at(2600)));
        agg.flush_expired(at(5000), &mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["C/stdout:d"]);
        assert_eq!(agg.next_deadline_ns(), None);
        assert!(agg.groups.is_empty(), "a sweep drops containers with nothing open");
    }

    #[test]
    fn flush_expired_emits_oldest_first() {
        let c = container("A");
        let mut agg = Aggregator::new(spec(&[]));
        let mut out = Vec::new();
        agg.push(line(&c, Source::Stderr, 0, "err"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&c, Source::Stdout, 1, "out"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&container("B"), Source::Stdout, 2, "other"), &mut |m| out.push(tagged(&m)));
        agg.flush_expired(T0 + 600 * MS, &mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["A/stderr:err", "A/stdout:out", "B/stdout:other"]);
    }

    #[test]
    fn caps_cut_groups_and_are_counted() {
        type Row<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str], u64);
        let rows: &[Row] = &[
            // The third line fills the group: it goes out with it.
            (&[("max_lines", "3")], &["a", " 1", " 2", " 3", " 4", "b"], &["a\n 1\n 2", " 3\n 4", "b"], 1),
            // A line that would grow the group past 10 bytes goes to the next group.
            (&[("max_bytes", "10")], &["abcd", " efg", " hi", "x"], &["abcd\n efg", " hi", "x"], 1),
            // Reaching the cap exactly emits at once.
            (&[("max_bytes", "9")], &["abcd", " efg", " hi"], &["abcd\n efg", " hi"], 1),
            // A line longer than the cap is emitted alone, at once.
            (&[("max_bytes", "10")], &["x", "0123456789AB", " y"], &["x", "0123456789AB", " y"], 1),
            // A group the mode completes is not counted even if it is full too.
            (&[("match", "last"), ("pattern", ";$"), ("max_lines", "2")], &["a", "b;"], &["a\nb;"], 0),
            (&[("max_lines", "1")], &["a", " b"], &["a", " b"], 2),
        ];
        for (opts, input, want, caps) in rows {
            let c = container("A");
            let mut agg = Aggregator::new(spec(opts));
            let mut out = Vec::new();
            for (i, l) in input.iter().enumerate() {
                agg.push(line(&c, Source::Stdout, i as i64, l), &mut |m| out.push(text(&m)));
            }
            assert_eq!(agg.caps_hit(), *caps, "{opts:?} {input:?}");
            agg.flush_all(&mut |m| out.push(text(&m)));
            assert_eq!(out, *want, "{opts:?} {input:?}");
        }
    }

    #[test]
    fn flush_container_and_flush_all() {
        let (a, b) = (container("A"), container("B"));
        let mut agg = Aggregator::new(spec(&[]));
        let mut out = Vec::new();
        agg.push(line(&a, Source::Stdout, 0, "a-out"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&b, Source::Stdout, 1, "b-out"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&a, Source::Stderr, 2, "a-err"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&b, Source::Stderr, 3, "b-err"), &mut |m| out.push(tagged(&m)));
        agg.push(line(&a, Source::Stdout, 4, "  a-out2"), &mut |m| out.push(tagged(&m)));
        assert!(out.is_empty());

        agg.flush_container("A", &mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["A/stdout:a-out\n  a-out2", "A/stderr:a-err"]);
        out.clear();
        agg.flush_container("A", &mut |m| out.push(tagged(&m)));
        agg.flush_container("nope", &mut |m| out.push(tagged(&m)));
        assert!(out.is_empty());

        agg.flush_all(&mut |m| out.push(tagged(&m)));
        assert_eq!(out, ["B/stdout:b-out", "B/stderr:b-err"]);
        assert_eq!(agg.next_deadline_ns(), None);
        out.clear();
        agg.flush_all(&mut |m| out.push(tagged(&m)));
        assert!(out.is_empty());
    }

    const JAVA_TRACE: [&str; 8] = [
        "2024-05-01 12:00:00 ERROR request failed",
        "java.lang.IllegalStateException: boom",
        "\tat com.example.Foo.bar(Foo.java:10)",
        "\tat com.example.Main.main(Main.java:5)",
        "Caused by: java.io.IOException: disk",
        "\tat com.example.Disk.read(Disk.java:3)",
        "\t... 1 more",
        "2024-05-01 12:00:01 INFO next request",
    ];

    #[test]
    fn start_continue_on_a_java_stack_trace() {
        let whole = JAVA_TRACE[..7].join("\n");
        let frames = JAVA_TRACE[1..7].join("\n");
        let cont = r"^(\s+at |Caused by:|\s+\.\.\.)";
        type Row<'a> = (&'a [(&'a str, &'a str)], Vec<&'a str>);
        let rows: [Row; 3] = [
            (&[("start", r"^\d{4}-")], vec![&whole, JAVA_TRACE[7]]),
            (&[("continue", cont)], vec![JAVA_TRACE[0], &frames, JAVA_TRACE[7]]),
            (
                &[("match", "Start_Continue"), ("start", r"^\d{4}-"), ("continue", r"^(\s|Caused by:|java\.)")],
                vec![&whole, JAVA_TRACE[7]],
            ),
        ];
        for (opts, want) in rows {
            assert_eq!(spec(opts).mode, Mode::StartContinue);
            assert_eq!(group(opts, &JAVA_TRACE), want, "{opts:?}");
        }
    }

    #[test]
    fn start_and_continue_together() {
        // A line matching neither closes the group and goes alone; a continuation with no group
        // opens one; a line matching both starts a group.
        let opts = [("start", "^S"), ("continue", "C")];
        let input = ["S1", "C1", "X", "C2", "C3", "SC", "C4"];
        assert_eq!(group(&opts, &input), ["S1\nC1", "X", "C2\nC3", "SC\nC4"]);
    }

    #[test]
    fn from_options_defaults() {
        let s = spec(&[("match", ""), ("separator", "")]);
        assert_eq!(s.mode, Mode::NonFirst);
        let p = s.pattern.as_ref().map(|p| (p.is_match(b" x"), p.is_match(b"x")));
        assert_eq!(p, Some((true, false)));
        assert!(s.start.is_none() && s.cont.is_none());
        assert_eq!(s.flush_after_ns, 500 * MS);
        assert_eq!(s.separator, b"\n");
        assert_eq!((s.max_lines, s.max_bytes), (1000, 1 << 20));

        let s = spec(&[("flush_after", "2000"), ("separator", "\\n"), ("max_lines", "5"), ("max_bytes", "64")]);
        assert_eq!(s.flush_after_ns, 2000 * MS);
        assert_eq!(s.separator, b"\\n", "taken literally");
        assert_eq!((s.max_lines, s.max_bytes), (5, 64));
    }

    #[test]
    fn from_options_reads_only_the_documented_keys() {
        let asked = RefCell::new(Vec::new());
        let get = |key: &str| {
            asked.borrow_mut().push(key.to_string());
            None
        };
        assert!(Spec::from_options(&get).is_ok());
        let mut asked = asked.into_inner();
        asked.sort();
        let mut keys = OPTION_KEYS.to_vec();
        keys.sort();
        assert_eq!(asked, keys);
    }

    #[test]
    fn from_options_errors_name_the_key_and_value() {
        let rows: &[(&[(&str, &str)], &str)] = &[
            (&[("pattern", "(")], "multiline pattern \"(\": regex parse error"),
            (&[("start", "[a")], "multiline start \"[a\": regex parse error"),
            (&[("continue", r"\q")], "multiline continue \"\\\\q\": regex parse error"),
            (&[("match", "sometimes")], "multiline match \"sometimes\": expected first, last"),
            (&[("match", "start_continue")], "needs start or continue"),
            (&[("match", "first"), ("start", "^x")], "only used with match \"start_continue\", not \"first\""),
            (&[("start", "^x"), ("pattern", "^y")], "multiline pattern \"^y\": not used with match"),
            (&[("flush_after", "0")], "multiline flush_after \"0\": must be more than 0"),
            (&[("flush_after", "-5")], "multiline flush_after \"-5\": not a whole number"),
            (&[("flush_after", "1.5")], "multiline flush_after \"1.5\": not a whole number"),
            (&[("flush_after", "99999999999999999")], "multiline flush_after \"99999999999999999\": too large"),
            (&[("max_lines", "0")], "multiline max_lines \"0\": must be more than 0"),
            (&[("max_bytes", "1MiB")], "multiline max_bytes \"1MiB\": not a whole number"),
        ];
        for (opts, want) in rows {
            match try_spec(opts) {
                Ok(_) => panic!("{opts:?} accepted"),
                Err(e) => assert!(e.contains(want), "{opts:?}: {e}"),
            }
        }
    }

    #[test]
    fn mode_parse_is_case_insensitive() {
        let rows = [
            ("first", Ok(Mode::First)),
            ("FIRST", Ok(Mode::First)),
            ("Last", Ok(Mode::Last)),
            ("NonFirst", Ok(Mode::NonFirst)),
            ("nonLAST", Ok(Mode::NonLast)),
            ("start_continue", Ok(Mode::StartContinue)),
            ("non-first", Err(())),
            ("", Err(())),
        ];
        for (s, want) in rows {
            let got = Mode::parse(s);
            assert_eq!(got.as_ref().ok(), want.as_ref().ok(), "{s:?}");
            if let Ok(m) = got {
                assert_eq!(Mode::parse(m.as_str()), Ok(m));
            }
        }
    }

    /// Go's `\d \s \w \b` are ASCII-only; the rest of the syntax stays Unicode-aware.
    #[test]
    fn patterns_match_as_go_would() {
        let rows = [
            (r"^\s", "\tx", true),
            (r"^\s", "\u{a0}x", false), // no-break space
            (r"^\s", "\u{0b}x", false), // Go's \s has no vertical tab
            (r"^\S", "\u{a0}x", true),
            (r"^\d+$", "42", true),
            (r"^\d", "\u{663}", false), // Arabic-Indic three
            (r"^\D", "\u{663}", true),
            (r"^\w+$", "a_1", true),
            (r"^\w", "é", false),
            (r"^\W", "é", true),
            (r"\bfoo", "éfoo", true), // é is not a word character in Go
            (r"\Bfoo", "éfoo", false),
            (r"^[\s,]x", ",x", true),
            (r"^[\s,]x", "\u{a0}x", false),
            (r"^[^\d]", "\u{663}", true),
            (r"^[^\d]", "3", false),
            (r"^[[:alpha:]\d]+$", "ab12", true),
            (r"^[\]\d]+$", "]1", true),
            (r"^[]\d]+$", "]1", true),
            (r"^[^]\d]", "]", false),
            (r"\\d", "\\d", true),
            (r"\\d", "5", false),
            (r"^.$", "é", true),
            (r"^\pL+$", "éa", true),
            (r"^[é]$", "é", true),
            (r"^\d{4}-", "2024-05-01", true),
        ];
        for (pattern, input, want) in rows {
            let re = compile("pattern", pattern).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(re.is_match(input.as_bytes()), want, "{pattern:?} on {input:?} (as {:?})", re.as_str());
        }
        assert_eq!(go_ascii_classes(r"[\s,]\b"), r"[[\t\n\f\r ],](?-u:\b)");
    }
}
