//! The subset of Go's `text/template` that logspout users put in `RAW_FORMAT` and the
//! `SYSLOG_*` variables, compiled once into a list of parts.
//!
//! Supported: literal text; `{{.Field.Chain}}`; `{{toJSON .Field}}`; `{{index
//! .Container.Config.Labels "key"}}`; `{{.Time.Format "Go layout"}}`; `{{.Time.Unix}}`;
//! comments; and the `{{-`/`-}}` trim markers. Everything else (`if`, `range`, pipelines,
//! `printf`, unknown fields) is a compile error that quotes the action, so a config that
//! would print something different from logspout fails at startup instead.
//!
//! Fields are resolved at compile time into `Field` values, so rendering is one `match` per
//! part, appending to the caller's buffer with no lookups by name (label keys aside) and no
//! allocation. Values print as Go's template engine prints them: `.Container.Name` keeps
//! Docker's leading `/`, a missing label prints `<no value>` through a field but nothing
//! through `index`, and `toJSON` is Go's `json.Marshal` with its HTML escaping.

use thiserror::Error;

use crate::message::{Message, Source};
use crate::timefmt::{self, Civil};

/// What every error message offers instead of the rejected action.
const SUPPORTED: &str = "supported actions are {{.Field}}, {{toJSON .Field}}, \
     {{index .Container.Config.Labels \"key\"}}, {{.Time.Format \"layout\"}} and {{.Time.Unix}}";

/// Which variables a template is for: the syslog adapter adds fields of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `RAW_FORMAT`.
    Raw,
    /// `SYSLOG_*`, which may also use `.Priority`, `.Timestamp`, `.ContainerName` and `.Hostname`.
    Syslog,
}

/// A template that cannot be compiled; the text names the action and says what would work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct TemplateError(String);

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(Vec<u8>),
    /// `{{.Field}}`.
    Print(Field),
    /// `{{toJSON .Field}}`.
    Json(Field),
    /// `{{index .Container.Config.Labels "key"}}`.
    IndexLabel(String),
    /// `{{.Time.Format "layout"}}`.
    TimeFormat(Vec<LayoutItem>),
}

/// A value reachable from the template's root, resolved at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Data,
    Source,
    Time,
    TimeUnix,
    ContainerId,
    /// `.Container.Name`: with Docker's leading `/`.
    ContainerName,
    /// `.Container.Image`: the image ID.
    ImageId,
    /// `.Container.Config.Image`: the image reference.
    ConfigImage,
    ConfigHostname,
    Labels,
    /// `.Container.Config.Labels.KEY`.
    Label(String),
    Pid,
    Tty,
    Priority,
    Timestamp,
    /// `.ContainerName`: without the `/`.
    BareName,
    /// `.Hostname`: luaspout's own hostname, read when the template was compiled.
    Hostname(String),
}

/// Words that start Go's control structures, reported as unsupported actions rather than as
/// unknown functions.
const GO_KEYWORDS: [&str; 13] =
    ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil", "true", "false"];

/// Every field a template may name, for error messages.
const RAW_FIELDS: &str = ".Data, .Source, .Time, .Time.Unix, .Container.ID, .Container.Name, \
     .Container.Image, .Container.Config.Image, .Container.Config.Hostname, \
     .Container.Config.Labels, .Container.Config.Labels.KEY, .Container.Config.Tty, \
     .Container.State.Pid";
const SYSLOG_FIELDS: &str = ".Priority, .Timestamp, .ContainerName, .Hostname";

impl Template {
    /// Compiles `text` for `dialect`.
    pub fn compile(text: &str, dialect: Dialect) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        loop {
            let Some(open) = rest.find("{{") else {
                push_text(&mut parts, trim(rest, trim_next, false));
                break;
            };
            let after = &rest[open + 2..];
            let trim_left = after.len() > 1 && after.as_bytes()[0] == b'-' && is_space(after.as_bytes()[1]);
            push_text(&mut parts, trim(&rest[..open], trim_next, trim_left));
            let body_start = if trim_left { 2 } else { 0 };
            let (body, trim_right, len) = scan_action(&after[body_start..], &rest[open..])?;
            let end = open + 2 + body_start + len;
            if let Some(part) = compile_action(body, &rest[open..end], dialect)? {
                parts.push(part);
            }
            trim_next = trim_right;
            rest = &rest[end..];
        }
        Ok(Template { source: text.to_string(), parts })
    }

    /// The text the template was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Appends the template's output for `msg`.
    pub fn render(&self, msg: &Message, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text),
                Part::Print(field) => print_field(field, msg, out),
                Part::Json(field) => json_field(field, msg, out),
                Part::IndexLabel(key) => {
                    if let Some(value) = msg.container.labels.get(key) {
                        out.extend_from_slice(value.as_bytes());
                    }
                }
                Part::TimeFormat(layout) => format_time(layout, msg.time_ns, out),
            }
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Applies the trim markers around a piece of literal text.
fn trim(text: &str, start: bool, end: bool) -> &str {
    let is_space = |c: char| c.is_ascii() && is_space(c as u8);
    let text = if start { text.trim_start_matches(is_space) } else { text };
    if end { text.trim_end_matches(is_space) } else { text }
}

fn push_text(parts: &mut Vec<Part>, text: &str) {
    if text.is_empty() {
        return;
    }
    if let Some(Part::Text(prev)) = parts.last_mut() {
        prev.extend_from_slice(text.as_bytes());
    } else {
        parts.push(Part::Text(text.as_bytes().to_vec()));
    }
}

fn error(msg: String) -> TemplateError {
    TemplateError(msg)
}

/// Finds the end of the action whose body starts `s`: the first `}}` outside a quoted string.
///
/// Returns the body (without a right trim marker), whether there was one, and the bytes
/// consumed including the `}}`. `whole` is the text from the action's `{{`, for messages.
fn scan_action<'a>(s: &'a str, whole: &str) -> Result<(&'a str, bool, usize), TemplateError> {
    let unclosed = || {
        let shown: String = whole.chars().take(40).collect();
        error(format!("unclosed action {shown:?}: add the closing }}}}"))
    };
    let b = s.as_bytes();
    if s.starts_with("/*") {
        let end = s.find("*/").ok_or_else(unclosed)? + 2;
        return match &s[end..] {
            tail if tail.starts_with("}}") => Ok((&s[..end], false, end + 2)),
            tail if tail.len() > 3 && is_space(tail.as_bytes()[0]) && tail[1..].starts_with("-}}") => {
                Ok((&s[..end], true, end + 4))
            }
            _ => Err(error(format!("comment in {:?} must end with */}}}}", shorten(whole)))),
        };
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            quote @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != quote {
                    if b[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err(unclosed());
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => {
                if i >= 2 && b[i - 1] == b'-' && is_space(b[i - 2]) {
                    return Ok((&s[..i - 2], true, i + 2));
                }
                return Ok((&s[..i], false, i + 2));
            }
            _ => {}
        }
        i += 1;
    }
    Err(unclosed())
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 60 { s.to_string() } else { s.chars().take(57).chain("...".chars()).collect() }
}

/// One lexical element of an action.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    /// `.A.B.C`, as its names.
    Field(Vec<&'a str>),
    /// A function name.
    Ident(&'a str),
    /// A quoted string, unescaped.
    Str(String),
}

/// Compiles one action (`body` is what lies between the delimiters, `action` the whole text
/// for messages). Comments compile to nothing.
fn compile_action(body: &str, action: &str, dialect: Dialect) -> Result<Option<Part>, TemplateError> {
    if body.starts_with("/*") {
        return Ok(None);
    }
    let unsupported = || error(format!("unsupported action {:?}: {SUPPORTED}", shorten(action)));
    let tokens = tokenize(body).ok_or_else(unsupported)?;
    let part = match tokens.as_slice() {
        [Token::Field(chain), Token::Str(layout)] if chain == &["Time", "Format"] => {
            Part::TimeFormat(compile_layout(layout))
        }
        [Token::Field(chain)] => Part::Print(resolve(chain, action, dialect)?),
        [Token::Field(chain), ..] => {
            resolve(chain, action, dialect)?;
            return Err(error(format!(
                "in {:?}: .{} takes no arguments (only .Time.Format takes a layout)",
                shorten(action),
                chain.join(".")
            )));
        }
        [Token::Ident("toJSON"), Token::Field(chain)] => Part::Json(resolve(chain, action, dialect)?),
        [Token::Ident("toJSON"), ..] => {
            return Err(error(format!("in {:?}: toJSON takes one field, as in {{{{toJSON .Data}}}}", shorten(action))));
        }
        [Token::Ident("index"), Token::Field(chain), Token::Str(key)]
            if resolve(chain, action, dialect)? == Field::Labels =>
        {
            Part::IndexLabel(key.clone())
        }
        [Token::Ident("index"), ..] => {
            return Err(error(format!(
                "in {:?}: index takes the labels map and one quoted key, as in \
                 {{{{index .Container.Config.Labels \"com.example.key\"}}}}",
                shorten(action)
            )));
        }
        [Token::Ident(name), ..] if !GO_KEYWORDS.contains(name) => {
            return Err(error(format!("unknown function {name:?} in {:?}: {SUPPORTED}", shorten(action))));
        }
        _ => return Err(unsupported()),
    };
    Ok(Some(part))
}

/// Splits an action body into tokens, or `None` when it holds anything outside the subset
/// (numbers, variables, pipes, parentheses, a lone `.`).
fn tokenize(body: &str) -> Option<Vec<Token<'_>>> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut tokens = Vec::new();
    let mut rest = body.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    while let Some(first) = rest.chars().next() {
        let len = match first {
            '.' => {
                let mut chain = Vec::new();
                let mut len = 0;
                while rest[len..].starts_with('.') {
                    let name_len = rest[len + 1..].find(|c: char| !is_ident(c)).unwrap_or(rest.len() - len - 1);
                    if name_len == 0 {
                        return None;
                    }
                    chain.push(&rest[len + 1..len + 1 + name_len]);
                    len += 1 + name_len;
                }
                tokens.push(Token::Field(chain));
                len
            }
            '"' | '`' => {
                let (value, len) = unquote(rest)?;
                tokens.push(Token::Str(value));
                len
            }
            c if c.is_alphabetic() => {
                let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
                tokens.push(Token::Ident(&rest[..len]));
                len
            }
            _ => return None,
        };
        let after = &rest[len..];
        // Tokens must be separated by spaces; `.Data|x` or `.Data(` is outside the subset.
        if !after.is_empty() && !is_space(after.as_bytes()[0]) {
            return None;
        }
        rest = after.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    }
    Some(tokens)
}

/// Reads the Go string literal at the start of `s` (interpreted `"…"` or raw `` `…` ``),
/// returning its value and length; `None` for an escape outside the common set.
fn unquote(s: &str) -> Option<(String, usize)> {
    if let Some(raw) = s.strip_prefix('`') {
        let end = raw.find('`')?;
        return Some((raw[..end].to_string(), end + 2));
    }
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                let hex_len = match e {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    _ => 0,
                };
                if hex_len > 0 {
                    let digits: String = (0..hex_len).map(|_| chars.next().map(|(_, d)| d)).collect::<Option<_>>()?;
                    let code = u32::from_str_radix(&digits, 16).ok()?;
                    // `\xHH` is a byte in Go; only the ASCII ones are text on their own.
                    if e == 'x' && code > 0x7f {
                        return None;
                    }
                    value.push(char::from_u32(code)?);
                    continue;
                }
                value.push(match e {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    '\\' => '\\',
                    '"' => '"',
                    _ => return None,
                });
            }
            '\n' => return None,
            c => value.push(c),
        }
    }
    None
}

/// Resolves a field chain for `dialect`.
fn resolve(chain: &[&str], action: &str, dialect: Dialect) -> Result<Field, TemplateError> {
    let field = match chain {
        ["Data"] => Field::Data,
        ["Source"] => Field::Source,
        ["Time"] => Field::Time,
        ["Time", "Unix"] => Field::TimeUnix,
        ["Time", "Format"] => {
            return Err(error(format!(
                "in {:?}: .Time.Format needs one quoted layout, as in {{{{.Time.Format \"2006-01-02T15:04:05Z07:00\"}}}}",
                shorten(action)
            )));
        }
        ["Container", "ID"] => Field::ContainerId,
        ["Container", "Name"] => Field::ContainerName,
        ["Container", "Image"] => Field::ImageId,
        ["Container", "Config", "Image"] => Field::ConfigImage,
        ["Container", "Config", "Hostname"] => Field::ConfigHostname,
        ["Container", "Config", "Labels"] => Field::Labels,
        ["Container", "Config", "Labels", key] => Field::Label(key.to_string()),
        ["Container", "Config", "Tty"] => Field::Tty,
        ["Container", "State", "Pid"] => Field::Pid,
        ["Priority"] | ["Timestamp"] | ["ContainerName"] | ["Hostname"] if dialect == Dialect::Raw => {
            return Err(error(format!(
                "field .{} in {:?} only exists in SYSLOG_* templates; in RAW_FORMAT use {RAW_FIELDS}",
                chain[0],
                shorten(action)
            )));
        }
        ["Priority"] => Field::Priority,
        ["Timestamp"] => Field::Timestamp,
        ["ContainerName"] => Field::BareName,
        ["Hostname"] => Field::Hostname(crate::format::os_hostname().to_string()),
        _ => {
            let known = match dialect {
                Dialect::Raw => RAW_FIELDS.to_string(),
                Dialect::Syslog => format!("{RAW_FIELDS}, {SYSLOG_FIELDS}"),
            };
            return Err(error(format!(
                "unknown field .{} in {:?}; known fields are {known}",
                chain.join("."),
                shorten(action)
            )));
        }
    };
    Ok(field)
}

/// The PRI of a line: user.info for stdout, user.err for stderr (logspout's `.Priority`).
fn priority(source: Source) -> i64 {
    match source {
        Source::Stdout => 14,
        Source::Stderr => 11,
    }
}

/// Prints a field as Go's template engine does (`fmt.Print` of the value).
fn print_field(field: &Field, msg: &Message, out: &mut Vec<u8>) {
    let c = &msg.container;
    match field {
        Field::Data => out.extend_from_slice(&msg.data),
        Field::Source => out.extend_from_slice(msg.source.as_str().as_bytes()),
        Field::Time => timefmt::write_go_time_string(msg.time_ns, out),
        Field::TimeUnix => timefmt::write_i64(unix_seconds(msg.time_ns), out),
        Field::ContainerId => out.extend_from_slice(c.id.as_bytes()),
        Field::ContainerName => {
            out.push(b'/');
            out.extend_from_slice(c.name.as_bytes());
        }
        Field::ImageId => out.extend_from_slice(c.image_id.as_bytes()),
        Field::ConfigImage => out.extend_from_slice(c.image.as_bytes()),
        Field::ConfigHostname => out.extend_from_slice(c.hostname.as_bytes()),
        Field::Labels => {
            out.extend_from_slice(b"map[");
            for (i, (k, v)) in c.labels.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                out.extend_from_slice(v.as_bytes());
            }
            out.push(b']');
        }
        Field::Label(key) => match c.labels.get(key) {
            Some(v) => out.extend_from_slice(v.as_bytes()),
            None => out.extend_from_slice(b"<no value>"),
        },
        Field::Pid => timefmt::write_i64(c.pid, out),
        Field::Tty => out.extend_from_slice(if c.tty { b"true" } else { b"false" }),
        Field::Priority => timefmt::write_i64(priority(msg.source), out),
        Field::Timestamp => timefmt::write_rfc3339_seconds(msg.time_ns, out),
        Field::BareName => out.extend_from_slice(c.name.as_bytes()),
        Field::Hostname(h) => out.extend_from_slice(h.as_bytes()),
    }
}

/// Go's `time.Time.Unix`: whole seconds, rounded towards the past.
fn unix_seconds(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000)
}

/// Writes a field as Go's `json.Marshal` would (`toJSON`).
fn json_field(field: &Field, msg: &Message, out: &mut Vec<u8>) {
    let c = &msg.container;
    match field {
        Field::Data => write_json_string(&[&msg.data], out),
        Field::Source => write_json_string(&[msg.source.as_str().as_bytes()], out),
        Field::Time => {
            out.push(b'"');
            timefmt::write_rfc3339_nanos(msg.time_ns, out);
            out.push(b'"');
        }
        Field::Timestamp => {
            out.push(b'"');
            timefmt::write_rfc3339_seconds(msg.time_ns, out);
            out.push(b'"');
        }
        Field::ContainerName => write_json_string(&[b"/", c.name.as_bytes()], out),
        Field::Labels => {
            out.push(b'{');
            for (i, (k, v)) in c.labels.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(&[k.as_bytes()], out);
                out.push(b':');
                write_json_string(&[v.as_bytes()], out);
            }
            out.push(b'}');
        }
        // A missing key is Go's invalid value, which reaches toJSON as nil.
        Field::Label(key) => match c.labels.get(key) {
            Some(v) => write_json_string(&[v.as_bytes()], out),
            None => out.extend_from_slice(b"null"),
        },
        Field::TimeUnix | Field::Pid | Field::Tty | Field::Priority => print_field(field, msg, out),
        Field::ContainerId => write_json_string(&[c.id.as_bytes()], out),
        Field::ImageId => write_json_string(&[c.image_id.as_bytes()], out),
        Field::ConfigImage => write_json_string(&[c.image.as_bytes()], out),
        Field::ConfigHostname => write_json_string(&[c.hostname.as_bytes()], out),
        Field::BareName => write_json_string(&[c.name.as_bytes()], out),
        Field::Hostname(h) => write_json_string(&[h.as_bytes()], out),
    }
}

/// Whether Go's HTML-escaping JSON encoder writes an ASCII byte as is.
fn json_safe(b: u8) -> bool {
    (0x20..0x80).contains(&b) && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&')
}

/// Appends the concatenation of `pieces` as a JSON string exactly as Go's `json.Marshal`
/// writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped, control characters as `\n`, `\r`,
/// `\t` or `\u00XX`, and each byte of invalid UTF-8 as `\ufffd`.
fn write_json_string(pieces: &[&[u8]], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for s in pieces {
        let mut start = 0;
        let mut i = 0;
        while i < s.len() {
            let b = s[i];
            if json_safe(b) {
                i += 1;
                continue;
            }
            let width = if b < 0x80 { 1 } else { utf8_width(&s[i..]) };
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
            if width > 1 && !matches!(&s[i..i + width], [0xe2, 0x80, 0xa8 | 0xa9]) {
                i += width;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..0x80 => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
                _ if width == 1 => out.extend_from_slice(b"\\ufffd"),
                _ => out.extend_from_slice(&[b'\\', b'u', b'2', b'0', b'2', HEX[usize::from(s[i + 2] & 0xf)]]),
            }
            i += width;
            start = i;
        }
        out.extend_from_slice(&s[start..]);
    }
    out.push(b'"');
}

/// The length of the valid UTF-8 character at the start of `s` (which starts with a non-ASCII
/// byte), or 1 when it is invalid, as Go's `utf8.DecodeRune` counts it.
fn utf8_width(s: &[u8]) -> usize {
    let width = match s[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return 1,
    };
    match s.get(..width).map(std::str::from_utf8) {
        Some(Ok(_)) => width,
        _ => 1,
    }
}

/// One element of a compiled Go time layout.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LayoutItem {
    /// Literal text, including zone tokens, which are constant for UTC.
    Text(Vec<u8>),
    /// `2006`.
    Year,
    /// `06`.
    Year2,
    /// `Jan`.
    MonthShort,
    /// `January`.
    MonthLong,
    /// `1`.
    Month,
    /// `01`.
    Month0,
    /// `Mon`.
    WeekdayShort,
    /// `Monday`.
    WeekdayLong,
    /// `2`.
    Day,
    /// `_2`.
    DaySpace,
    /// `02`.
    Day0,
    /// `__2`.
    YearDaySpace,
    /// `002`.
    YearDay0,
    /// `15`.
    Hour,
    /// `3`.
    Hour12,
    /// `03`.
    Hour12Zero,
    /// `4`.
    Minute,
    /// `04`.
    Minute0,
    /// `5`.
    Second,
    /// `05`.
    Second0,
    /// `PM`.
    PmUpper,
    /// `pm`.
    PmLower,
    /// `.000`, `.999`, `,000`…: separator, digits, and whether trailing zeros are dropped.
    Fraction { sep: u8, digits: usize, trim: bool },
}

/// Compiles a Go layout, recognising tokens exactly where Go's `nextStdChunk` does.
fn compile_layout(layout: &str) -> Vec<LayoutItem> {
    let b = layout.as_bytes();
    let mut items = Vec::new();
    let mut text = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match layout_token(b, i) {
            Some((item, len)) => {
                match item {
                    LayoutItem::Text(t) => text.extend_from_slice(&t),
                    item => {
                        if !text.is_empty() {
                            items.push(LayoutItem::Text(std::mem::take(&mut text)));
                        }
                        items.push(item);
                    }
                }
                i += len;
            }
            None => {
                text.push(b[i]);
                i += 1;
            }
        }
    }
    if !text.is_empty() {
        items.push(LayoutItem::Text(text));
    }
    items
}

/// The layout token starting at `b[i]`, and its length.
fn layout_token(b: &[u8], i: usize) -> Option<(LayoutItem, usize)> {
    use LayoutItem::*;
    let at = |s: &str| b[i..].starts_with(s.as_bytes());
    let lower_after = |n: usize| b.get(i + n).is_some_and(u8::is_ascii_lowercase);
    let text = |s: &str, n: usize| Some((Text(s.as_bytes().to_vec()), n));
    match b[i] {
        b'J' if at("January") => Some((MonthLong, 7)),
        b'J' if at("Jan") && !lower_after(3) => Some((MonthShort, 3)),
        b'M' if at("Monday") => Some((WeekdayLong, 6)),
        b'M' if at("Mon") && !lower_after(3) => Some((WeekdayShort, 3)),
        b'M' if at("MST") => text("UTC", 3),
        b'0' => match b.get(i + 1) {
            Some(b'1') => Some((Month0, 2)),
            Some(b'2') => Some((Day0, 2)),
            Some(b'3') => Some((Hour12Zero, 2)),
            Some(b'4') => Some((Minute0, 2)),
            Some(b'5') => Some((Second0, 2)),
            Some(b'6') => Some((Year2, 2)),
            _ if at("002") => Some((YearDay0, 3)),
            _ => None,
        },
        b'1' if at("15") => Some((Hour, 2)),
        b'1' => Some((Month, 1)),
        b'2' if at("2006") => Some((Year, 4)),
        b'2' => Some((Day, 1)),
        // `_2006` is a literal `_` followed by the year.
        b'_' if at("_2") && !at("_2006") => Some((DaySpace, 2)),
        b'_' if at("__2") => Some((YearDaySpace, 3)),
        b'3' => Some((Hour12, 1)),
        b'4' => Some((Minute, 1)),
        b'5' => Some((Second, 1)),
        b'P' if at("PM") => Some((PmUpper, 2)),
        b'p' if at("pm") => Some((PmLower, 2)),
        b'-' if at("-070000") => text("+000000", 7),
        b'-' if at("-07:00:00") => text("+00:00:00", 9),
        b'-' if at("-0700") => text("+0000", 5),
        b'-' if at("-07:00") => text("+00:00", 6),
        b'-' if at("-07") => text("+00", 3),
        b'Z' if at("Z070000") => text("Z", 7),
        b'Z' if at("Z07:00:00") => text("Z", 9),
        b'Z' if at("Z0700") => text("Z", 5),
        b'Z' if at("Z07:00") => text("Z", 6),
        b'Z' if at("Z07") => text("Z", 3),
        sep @ (b'.' | b',') => {
            let digit = *b.get(i + 1).filter(|&&d| d == b'0' || d == b'9')?;
            let run = b[i + 1..].iter().take_while(|&&d| d == digit).count();
            // Only a fraction if the run of digits ends here.
            if b.get(i + 1 + run).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            Some((Fraction { sep, digits: run, trim: digit == b'9' }, run + 1))
        }
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Appends `ns` formatted with a compiled layout, in UTC, as Go's `Time.Format`.
fn format_time(layout: &[LayoutItem], ns: i64, out: &mut Vec<u8>) {
    use LayoutItem::*;
    let t = Civil::from_nanos(ns);
    let month = MONTHS[(t.month - 1) as usize];
    let weekday = WEEKDAYS[t.weekday as usize];
    let hour12 = if t.hour.is_multiple_of(12) { 12 } else { t.hour % 12 };
    for item in layout {
        match item {
            Text(text) => out.extend_from_slice(text),
            Year => timefmt::write_year(t.year, out),
            Year2 => timefmt::write_padded(t.year.rem_euclid(100) as u32, 2, b'0', out),
            MonthShort => out.extend_from_slice(&month.as_bytes()[..3]),
            MonthLong => out.extend_from_slice(month.as_bytes()),
            Month => timefmt::write_padded(t.month, 1, b'0', out),
            Month0 => timefmt::write_padded(t.month, 2, b'0', out),
            WeekdayShort => out.extend_from_slice(&weekday.as_bytes()[..3]),
            WeekdayLong => out.extend_from_slice(weekday.as_bytes()),
            Day => timefmt::write_padded(t.day, 1, b'0', out),
            DaySpace => timefmt::write_padded(t.day, 2, b' ', out),
            Day0 => timefmt::write_padded(t.day, 2, b'0', out),
            YearDaySpace => timefmt::write_padded(t.yday, 3, b' ', out),
            YearDay0 => timefmt::write_padded(t.yday, 3, b'0', out),
            Hour => timefmt::write_padded(t.hour, 2, b'0', out),
            Hour12 => timefmt::write_padded(hour12, 1, b'0', out),
            Hour12Zero => timefmt::write_padded(hour12, 2, b'0', out),
            Minute => timefmt::write_padded(t.minute, 1, b'0', out),
            Minute0 => timefmt::write_padded(t.minute, 2, b'0', out),
            Second => timefmt::write_padded(t.second, 1, b'0', out),
            Second0 => timefmt::write_padded(t.second, 2, b'0', out),
            PmUpper => out.extend_from_slice(if t.hour >= 12 { b"PM" } else { b"AM" }),
            PmLower => out.extend_from_slice(if t.hour >= 12 { b"pm" } else { b"am" }),
            Fraction { sep, digits, trim } => write_fraction(t.nanos, *sep, *digits, *trim, out),
        }
    }
}

/// Go's `appendNano`: `digits` (at most 9) digits of the fraction; with `trim`, trailing zeros
/// go, and the separator too when nothing is left.
fn write_fraction(nanos: u32, sep: u8, digits: usize, trim: bool, out: &mut Vec<u8>) {
    let digits = digits.min(9);
    let mut value = nanos / 10u32.pow(9 - digits as u32);
    let mut width = digits;
    if trim {
        while width > 0 && value.is_multiple_of(10) {
            value /= 10;
            width -= 1;
        }
        if width == 0 {
            return;
        }
    }
    out.push(sep);
    timefmt::write_padded(value, width, b'0', out);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::message::Container;

    /// 2021-12-06T15:27:06.123456789Z.
    const T: i64 = 1_638_804_426_123_456_789;

    fn msg(data: &[u8], source: Source) -> Message {
        let labels = BTreeMap::from([("env".to_string(), "prod".to_string()), ("a<b".to_string(), "x&y".to_string())]);
        let container = Container {
            id: "3b6ba57db54a0c7d0e2b9f7c1d7a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d".into(),
            name: "web_1".into(),
            image: "nginx:1.25".into(),
            image_id: "sha256:abc".into(),
            hostname: "8dfafdbc3a40".into(),
            pid: 4242,
            labels,
            ..Default::default()
        };
        Message { container: Arc::new(container), source, time_ns: T, data: Bytes::copy_from_slice(data) }
    }

    fn render_at(text: &str, dialect: Dialect, m: &Message) -> Vec<u8> {
        let t = Template::compile(text, dialect).unwrap_or_else(|e| panic!("{text}: {e}"));
        let mut out = Vec::new();
        t.render(m, &mut out);
        out
    }

    fn raw(text: &str, data: &str) -> String {
        String::from_utf8(render_at(text, Dialect::Raw, &msg(data.as_bytes(), Source::Stdout))).unwrap()
    }

    fn syslog(text: &str) -> String {
        String::from_utf8(render_at(text, Dialect::Syslog, &msg(b"hi", Source::Stderr))).unwrap()
    }

    fn compile_err(text: &str, dialect: Dialect) -> String {
        Template::compile(text, dialect).expect_err(text).to_string()
    }

    #[test]
    fn reference_raw_vectors() {
        // logspout.md §9.4, raw adapter.
        assert_eq!(raw("{{.Data}}\n", "hi"), "hi\n");
        assert_eq!(raw("{{toJSON .Data}}\n", r#"a <b> & "c""#), "\"a \\u003cb\\u003e \\u0026 \\\"c\\\"\"\n");
        assert_eq!(raw("{{.Container.Config.Labels.nope}}", "x"), "<no value>");
        assert_eq!(raw(r#"{{index .Container.Config.Labels "nope"}}"#, "x"), "");
    }

    #[test]
    fn readme_full_json_example() {
        let text = r#"{ "container" : "{{ .Container.Name }}", "labels": {{ toJSON .Container.Config.Labels }}, "timestamp": "{{ .Time.Format "2006-01-02T15:04:05Z07:00" }}", "source" : "{{ .Source }}", "message": {{ toJSON .Data }} }"#;
        let out = render_at(text, Dialect::Raw, &msg("multi\nline \"é\" <x>".as_bytes(), Source::Stderr));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["container"], "/web_1");
        assert_eq!(v["labels"], serde_json::json!({"env": "prod", "a<b": "x&y"}));
        assert_eq!(v["timestamp"], "2021-12-06T15:27:06Z");
        assert_eq!(v["source"], "stderr");
        assert_eq!(v["message"], "multi\nline \"é\" <x>");
    }

    #[test]
    fn fields_print_as_go_does() {
        assert_eq!(
            raw("{{.Source}} {{.Container.ID}}", ""),
            "stdout 3b6ba57db54a0c7d0e2b9f7c1d7a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"
        );
        assert_eq!(
            raw("{{.Container.Name}} {{.Container.Image}} {{.Container.Config.Image}}", ""),
            "/web_1 sha256:abc nginx:1.25"
        );
        assert_eq!(
            raw("{{.Container.Config.Hostname}} {{.Container.State.Pid}} {{.Container.Config.Tty}}", ""),
            "8dfafdbc3a40 4242 false"
        );
        assert_eq!(raw("{{.Container.Config.Labels}}", ""), "map[a<b:x&y env:prod]");
        assert_eq!(raw("{{.Container.Config.Labels.env}}", ""), "prod");
        assert_eq!(raw(r#"{{index .Container.Config.Labels "a<b"}}"#, ""), "x&y");
        assert_eq!(raw("{{.Time}}", ""), "2021-12-06 15:27:06.123456789 +0000 UTC");
        assert_eq!(raw("{{.Time.Unix}}", ""), "1638804426");
        assert_eq!(raw("<{{.Data}}>", ""), "<>");
    }

    #[test]
    fn data_bytes_are_written_raw() {
        let m = msg(b"\xff\x00ok", Source::Stdout);
        assert_eq!(render_at("{{.Data}}", Dialect::Raw, &m), b"\xff\x00ok");
        assert_eq!(render_at("{{toJSON .Data}}", Dialect::Raw, &m), b"\"\\ufffd\\u0000ok\"");
    }

    #[test]
    fn to_json_matches_go() {
        assert_eq!(raw("{{toJSON .Data}}", "tab\there\r\n\u{1b}\u{7f}"), "\"tab\\there\\r\\n\\u001b\u{7f}\"");
        assert_eq!(raw("{{toJSON .Data}}", "a\u{2028}b\u{2029}é€😀"), "\"a\\u2028b\\u2029é€😀\"");
        assert_eq!(raw("{{toJSON .Data}}", "\\"), r#""\\""#);
        assert_eq!(raw("{{toJSON .Container.Name}} {{toJSON .Source}}", ""), r#""/web_1" "stdout""#);
        assert_eq!(raw("{{toJSON .Container.Config.Labels}}", ""), r#"{"a\u003cb":"x\u0026y","env":"prod"}"#);
        assert_eq!(
            raw("{{toJSON .Container.Config.Labels.env}} {{toJSON .Container.Config.Labels.nope}}", ""),
            r#""prod" null"#
        );
        assert_eq!(raw("{{toJSON .Time}} {{toJSON .Time.Unix}}", ""), r#""2021-12-06T15:27:06.123456789Z" 1638804426"#);
        assert_eq!(raw("{{toJSON .Container.State.Pid}} {{toJSON .Container.Config.Tty}}", ""), "4242 false");
        assert_eq!(raw("{{toJSON .Container.Config.Image}} {{toJSON .Container.ID}}", "").len(), 12 + 1 + 66);
        // Each byte of a broken sequence is its own U+FFFD, as Go decodes it.
        let m = msg(b"\xe2\x82 \xed\xa0\x80 \xc0\xaf", Source::Stdout);
        assert_eq!(
            String::from_utf8(render_at("{{toJSON .Data}}", Dialect::Raw, &m)).unwrap(),
            r#""\ufffd\ufffd \ufffd\ufffd\ufffd \ufffd\ufffd""#
        );
        let mut m = msg(b"", Source::Stdout);
        Arc::make_mut(&mut m.container).image = "a\"b".into();
        Arc::make_mut(&mut m.container).labels.clear();
        assert_eq!(
            render_at(
                "{{toJSON .Container.Config.Image}} {{toJSON .Container.Config.Labels}} {{.Container.Config.Labels}}",
                Dialect::Raw,
                &m
            ),
            br#""a\"b" {} map[]"#
        );
    }

    #[test]
    fn syslog_fields() {
        assert_eq!(syslog("{{.Priority}} {{.Timestamp}} {{.ContainerName}}"), "11 2021-12-06T15:27:06Z web_1");
        assert_eq!(
            String::from_utf8(render_at("{{.Priority}}", Dialect::Syslog, &msg(b"", Source::Stdout))).unwrap(),
            "14"
        );
        assert_eq!(
            syslog("{{toJSON .Priority}} {{toJSON .Timestamp}} {{toJSON .ContainerName}}"),
            r#"11 "2021-12-06T15:27:06Z" "web_1""#
        );
        assert_eq!(syslog("{{.Hostname}}"), crate::format::os_hostname());
        assert!(!syslog("{{.Hostname}}").contains("{{"), "quirk Q12 fixed: not the template text");
        for field in ["Priority", "Timestamp", "ContainerName", "Hostname"] {
            let e = compile_err(&format!("{{{{.{field}}}}}"), Dialect::Raw);
            assert!(
                e.starts_with(&format!("field .{field} in \"{{{{.{field}}}}}\" only exists in SYSLOG_* templates")),
                "{e}"
            );
        }
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(raw("a  \n {{- .Data -}} \n\t b", "X"), "aXb");
        assert_eq!(raw("a {{- .Data}} b", "X"), "aX b");
        assert_eq!(raw("a {{.Data -}} b", "X"), "a Xb");
        assert_eq!(raw("a{{/* note }} */}}b", ""), "ab");
        assert_eq!(raw("a {{- /* note */ -}} b", ""), "ab");
        assert_eq!(raw("{{ .Data }}{{.Data}}", "x"), "xx");
        assert_eq!(raw("{{\n.Data\n}}", "x"), "x");
        assert_eq!(raw("no actions }} here", ""), "no actions }} here");
        assert_eq!(raw("", "x"), "");
        assert_eq!(raw(r#"{{.Time.Format "}}"}}"#, ""), "}}", "a }} inside a string does not end the action");
    }

    #[test]
    fn string_literals() {
        assert_eq!(raw(r#"{{index .Container.Config.Labels "e\x6ev"}}"#, ""), "prod");
        assert_eq!(raw(r#"{{index .Container.Config.Labels "\u0065nv"}}"#, ""), "prod");
        assert_eq!(raw("{{index .Container.Config.Labels `env`}}", ""), "prod");
        assert_eq!(raw(r#"{{.Time.Format "\"2006\"\t"}}"#, ""), "\"2021\"\t");
        assert!(
            compile_err(r#"{{index .Container.Config.Labels "\q"}}"#, Dialect::Raw).starts_with("unsupported action")
        );
    }

    #[test]
    fn time_layouts() {
        let f = |layout: &str| raw(&format!("{{{{.Time.Format {layout:?}}}}}"), "");
        assert_eq!(f("Jan _2 15:04:05"), "Dec  6 15:27:06");
        assert_eq!(f("2006-01-02T15:04:05.000Z07:00"), "2021-12-06T15:27:06.123Z");
        assert_eq!(f("2006-01-02T15:04:05.999999999Z07:00"), "2021-12-06T15:27:06.123456789Z");
        assert_eq!(f("Mon Monday Jan January 1 01 2 02 _2 06 2006"), "Mon Monday Dec December 12 12 6 06  6 21 2021");
        assert_eq!(f("3 03 15 4 04 5 05 PM pm"), "3 03 15 27 27 6 06 PM pm");
        assert_eq!(f(".000000 .000000000 .9 .99 ,000 .0000000000"), ".123456 .123456789 .1 .12 ,123 .123456789");
        assert_eq!(
            f("MST -0700 -07:00 -07 Z0700 Z07 -070000 -07:00:00 Z070000 Z07:00:00"),
            "UTC +0000 +00:00 +00 Z Z +000000 +00:00:00 Z Z"
        );
        assert_eq!(f("002 __2"), "340 340");
        assert_eq!(
            f("Janet Month Z _2006 .0001 T"),
            "Janet Month Z _2021 .0012 T",
            "Go's look-alikes; .0001 is not a fraction but 01 is the month"
        );
        assert_eq!(f("2006-01-02T15:04:05Z"), "2021-12-06T15:27:06Z");

        let at = |ns: i64, layout: &str| {
            let m = Message { time_ns: ns, ..msg(b"", Source::Stdout) };
            String::from_utf8(render_at(&format!("{{{{.Time.Format {layout:?}}}}}"), Dialect::Raw, &m)).unwrap()
        };
        assert_eq!(at(0, "Monday 3:04PM .999 2006-01-02"), "Thursday 12:00AM  1970-01-01");
        assert_eq!(at(T - 123_456_789 + 100_000_000, "05.999 05.000"), "06.1 06.100");
        assert_eq!(at(-1, "2006-01-02 15:04:05.999"), "1969-12-31 23:59:59.999");
        assert_eq!(at(43_200_000_000_000 + 5_000_000_000 + 7_000, "3 pm .000000"), "12 pm .000007");
        assert_eq!(at(T, "__2"), "340");
    }

    #[test]
    fn unsupported_actions_are_errors() {
        for text in [
            "{{if .Data}}x{{end}}",
            "{{range .Container.Config.Labels}}{{end}}",
            "{{.Data | printf \"%s\"}}",
            "{{.}}",
            "{{ }}",
            "{{$x := .Data}}",
            "{{(.Data)}}",
            "{{\"text\"}}",
            "{{.Data|toJSON}}",
            "{{.Data.}}",
            "{{ 1 }}",
        ] {
            let e = compile_err(text, Dialect::Raw);
            assert!(e.contains(SUPPORTED), "{text}: {e}");
            let action = &text[..text.find("}}").unwrap() + 2];
            assert!(e.starts_with(&format!("unsupported action {action:?}")), "{text}: {e}");
        }
        assert_eq!(
            compile_err("{{printf \"%s\" .Data}}", Dialect::Raw),
            format!("unknown function \"printf\" in \"{{{{printf \\\"%s\\\" .Data}}}}\": {SUPPORTED}")
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let e = compile_err("x {{ .Container.Foo }}", Dialect::Raw);
        assert!(
            e.starts_with("unknown field .Container.Foo in \"{{ .Container.Foo }}\"; known fields are .Data, .Source"),
            "{e}"
        );
        assert!(!e.contains(".Priority"));
        assert!(compile_err("{{.data}}", Dialect::Syslog).contains(".Priority, .Timestamp"));
        assert!(
            compile_err("{{.Container.Config.Labels.a.b}}", Dialect::Raw)
                .starts_with("unknown field .Container.Config.Labels.a.b")
        );
        assert!(compile_err("{{.Data \"x\"}}", Dialect::Raw).contains(".Data takes no arguments"));
        assert!(compile_err("{{.Time.Format}}", Dialect::Raw).contains(".Time.Format needs one quoted layout"));
        assert!(
            compile_err("{{.Time.Format \"a\" \"b\"}}", Dialect::Raw).contains(".Time.Format needs one quoted layout")
        );
        assert!(compile_err("{{toJSON}}", Dialect::Raw).contains("toJSON takes one field"));
        assert!(compile_err("{{toJSON .Data .Source}}", Dialect::Raw).contains("toJSON takes one field"));
        assert!(compile_err("{{index .Data \"k\"}}", Dialect::Raw).contains("index takes the labels map"));
        assert!(compile_err("{{index .Container.Config.Labels}}", Dialect::Raw).contains("index takes the labels map"));
        assert!(compile_err("{{index .Nope \"k\"}}", Dialect::Raw).starts_with("unknown field .Nope"));
        assert_eq!(compile_err("a {{.Data", Dialect::Raw), "unclosed action \"{{.Data\": add the closing }}");
        assert!(compile_err("{{.Time.Format \"x}}", Dialect::Raw).starts_with("unclosed action"));
        assert!(compile_err("{{/* x }}", Dialect::Raw).starts_with("unclosed action"));
        assert!(compile_err("{{/* x */ }}", Dialect::Raw).contains("must end with */}}"));
        let long = format!("{{{{if {}}}}}", "x".repeat(100));
        assert!(compile_err(&long, Dialect::Raw).len() < 400, "long actions are shortened");
    }

    #[test]
    fn source_is_kept() {
        let t = Template::compile("{{.Data}}\n", Dialect::Raw).unwrap();
        assert_eq!(t.source(), "{{.Data}}\n");
    }
}
