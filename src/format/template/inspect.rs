//! Values of the container's inspect: reading them from Docker's JSON with go-dockerclient's
//! types ([`super::schema`]), and printing them as Go's `fmt` and `json.Marshal` do.

use super::*;
use serde_json::Value as Json;

/// Go's zero `time.Time` (`0001-01-01 00:00:00 +0000 UTC`, Docker's "never"), which is outside
/// the `i64` nanosecond range.
pub(super) const ZERO_TIME: i64 = i64::MIN;

/// Seconds from year 1 to 1970, Go's `unixToInternal` negated.
const ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// The member `key` of a JSON object as Go's decoder finds it (the exact key, else one that
/// differs in case); `null` is absent.
pub(super) fn json_get<'a>(node: Option<&'a Json>, key: &str) -> Option<&'a Json> {
    let obj = node?.as_object()?;
    let v = obj.get(key).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))?;
    (!v.is_null()).then_some(v)
}

/// The value of Go type `id` decoded from `node` (absent: the zero value).
pub(super) fn load(node: Option<&Json>, id: TyId) -> Value<'_> {
    let s = schema();
    let node = node.filter(|n| !n.is_null());
    let int = || node.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))).unwrap_or(0);
    match s.ty(id) {
        GoTy::Str => Value::Str(Cow::Borrowed(node.and_then(Json::as_str).unwrap_or("").as_bytes())),
        GoTy::Bool => Value::Bool(node.and_then(Json::as_bool).unwrap_or(false)),
        GoTy::Int => Value::Int(int(), IntTy::Int),
        GoTy::Int64 => Value::Int(int(), IntTy::Int64),
        GoTy::Duration => Value::Int(int(), IntTy::Duration),
        GoTy::Time => Value::Time(
            node.and_then(Json::as_str)
                .and_then(|t| timefmt::parse_rfc3339_nanos(t.as_bytes()))
                .map_or(ZERO_TIME, |(ns, _)| ns),
        ),
        GoTy::Slice(e) if s.ty(e) == GoTy::Str => {
            let items = node.and_then(Json::as_array);
            let list = items.map(|a| a.iter().map(|v| Cow::Borrowed(v.as_str().unwrap_or("").as_bytes())).collect());
            Value::List(list.unwrap_or_default(), items.is_none())
        }
        _ => Value::Go(node, id),
    }
}

/// The inspect node and Go type of the message's structs and of inspect values.
pub(super) fn as_go<'a>(v: &Value<'a>) -> Option<(Option<&'a Json>, TyId)> {
    let s = schema();
    match v {
        Value::Container(c) => Some((Some(c.inspect_json()), s.container)),
        Value::Config(c) => Some((json_get(Some(c.inspect_json()), "Config"), s.config)),
        Value::State(c) => Some((json_get(Some(c.inspect_json()), "State"), s.state)),
        Value::Go(node, id) => Some((*node, *id)),
        _ => None,
    }
}

/// `.name` of a value of Go type `id`: a struct field, or a map key.
pub(super) fn go_member<'a>(node: Option<&'a Json>, id: TyId, name: &str) -> Result<Value<'a>, String> {
    let s = schema();
    match s.ty(id) {
        // A missing key is Go's invalid value, as with the labels.
        GoTy::Map(_, v) => {
            Ok(node.and_then(Json::as_object).and_then(|o| o.get(name)).map_or(Value::Missing, |n| load(Some(n), v)))
        }
        GoTy::Ptr(_) if node.is_none() => Err(format!("nil pointer evaluating {}.{name}", s.name(id))),
        GoTy::Struct(_) | GoTy::Ptr(_) => match s.field(id, name) {
            Some(f) => Ok(load(json_get(node, f.key), f.ty)),
            None => Err(format!("can't evaluate field {name} in type {}", s.name(id))),
        },
        _ => Err(format!("can't evaluate field {name} in type {}", s.name(id))),
    }
}

/// Go's `isTrue` for an inspect value.
pub(super) fn go_truth(node: Option<&Json>, id: TyId) -> bool {
    match schema().ty(id) {
        GoTy::Ptr(_) | GoTy::PtrTo(_) => node.is_some(),
        GoTy::Slice(_) | GoTy::Map(..) => go_len(node, id).unwrap_or(0) > 0,
        _ => true,
    }
}

/// Go's `eq` of two inspect values: pointers are equal when they are the same, structs and
/// arrays when their fields are; slices and maps cannot be compared.
pub(super) fn go_eq(x: Option<&Json>, tx: TyId, y: Option<&Json>, ty: TyId) -> Result<bool, String> {
    let s = schema();
    if tx != ty {
        return Err(format!("incompatible types for comparison: {} and {}", s.name(tx), s.name(ty)));
    }
    match s.ty(tx) {
        GoTy::Slice(_) | GoTy::Map(..) => Err(format!("non-comparable type {}", s.name(tx))),
        GoTy::Ptr(_) | GoTy::PtrTo(_) => Ok(match (x, y) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }),
        _ => {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            go_json(x, tx, &mut a);
            go_json(y, ty, &mut b);
            Ok(a == b)
        }
    }
}

/// The length of a slice or map.
pub(super) fn go_len(node: Option<&Json>, id: TyId) -> Option<usize> {
    match schema().ty(id) {
        GoTy::Slice(_) => Some(node.and_then(Json::as_array).map_or(0, Vec::len)),
        GoTy::Array(_, n) => Some(usize::from(n)),
        GoTy::Map(..) => Some(node.and_then(Json::as_object).map_or(0, serde_json::Map::len)),
        _ => None,
    }
}

/// The entries of a map in Go's printing order (sorted keys).
fn sorted(node: Option<&Json>) -> Vec<(&String, &Json)> {
    let mut entries: Vec<(&String, &Json)> =
        node.and_then(Json::as_object).map(|o| o.iter().collect()).unwrap_or_default();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// The elements of an array: as many as its type says, zero values where the JSON has none.
fn array_items(node: Option<&Json>, n: u8) -> Vec<Option<&Json>> {
    let items = node.and_then(Json::as_array).map_or(&[][..], Vec::as_slice);
    (0..usize::from(n)).map(|i| items.get(i)).collect()
}

/// The elements of a slice or map as `(key, element)`, for `range`.
pub(super) fn go_items(node: Option<&Json>, id: TyId) -> Option<Vec<(Value<'_>, Value<'_>)>> {
    match schema().ty(id) {
        GoTy::Array(e, n) => Some(
            array_items(node, n)
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64, IntTy::Int), load(v, e)))
                .collect(),
        ),
        GoTy::Slice(e) => Some(
            node.and_then(Json::as_array)
                .map(|a| {
                    a.iter().enumerate().map(|(i, v)| (Value::Int(i as i64, IntTy::Int), load(Some(v), e))).collect()
                })
                .unwrap_or_default(),
        ),
        GoTy::Map(_, v) => Some(
            sorted(node)
                .into_iter()
                .map(|(key, val)| (Value::Str(Cow::Borrowed(key.as_bytes())), load(Some(val), v)))
                .collect(),
        ),
        _ => None,
    }
}

/// `index` of a slice or map.
pub(super) fn go_index<'a>(
    node: Option<&'a Json>,
    id: TyId,
    key: &Value<'_>,
    dialect: Dialect,
) -> Result<Value<'a>, String> {
    let s = schema();
    match s.ty(id) {
        GoTy::Slice(e) | GoTy::Array(e, _) => {
            let items = match s.ty(id) {
                GoTy::Array(_, n) => array_items(node, n),
                _ => node.and_then(Json::as_array).map_or(Vec::new(), |a| a.iter().map(Some).collect()),
            };
            let i = match key {
                Value::Int(n, _) => *n,
                Value::Missing => return Err("cannot index slice/array with nil".into()),
                other => return Err(format!("cannot index slice/array with type {}", type_name(other, dialect))),
            };
            match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                Some(v) => Ok(load(*v, e)),
                None => Err(format!("index out of range: {i}")),
            }
        }
        // A missing key gives the element type's zero value.
        GoTy::Map(_, v) => match key {
            Value::Str(k) => {
                let k = std::str::from_utf8(k).unwrap_or("");
                Ok(load(node.and_then(Json::as_object).and_then(|o| o.get(k)), v))
            }
            Value::Missing => Err("value is nil; should be of type string".into()),
            other => Err(format!("value has type {}; should be string", type_name(other, dialect))),
        },
        _ => Err(format!("can't index item of type {}", schema().name(id))),
    }
}

impl Printer<'_> {
    /// Go's `printValue` of an inspect value. Pointers print as `&{…}` unless `deref` (a
    /// template action prints what they point to); Go prints the address of a pointer inside
    /// a struct, luaspout what it points to.
    pub(super) fn go_value(&mut self, node: Option<&Json>, id: TyId, verb: char, deref: bool) -> Result<(), String> {
        let s = schema();
        match s.ty(id) {
            GoTy::Ptr(_) | GoTy::PtrTo(_) if node.is_none() => self.pad(b"<nil>"),
            GoTy::PtrTo(e) => self.go_value(node, e, verb, deref)?,
            GoTy::Array(e, n) => {
                self.buf.push(b'[');
                for (i, v) in array_items(node, n).into_iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b' ');
                    }
                    self.go_value(v, e, verb, false)?;
                }
                self.buf.push(b']');
            }
            GoTy::Ptr(st) | GoTy::Struct(st) => {
                if matches!(s.ty(id), GoTy::Ptr(_)) && !deref {
                    self.buf.push(b'&');
                }
                self.buf.push(b'{');
                for (i, f) in s.structs[usize::from(st)].fields.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b' ');
                    }
                    if self.f.plus_v {
                        self.buf.extend_from_slice(f.go.as_bytes());
                        self.buf.push(b':');
                    }
                    self.go_value(json_get(node, f.key), f.ty, verb, false)?;
                }
                self.buf.push(b'}');
            }
            GoTy::Empty => self.buf.extend_from_slice(b"{}"),
            GoTy::Slice(e) if s.ty(e) != GoTy::Str => {
                self.go_elems(node.and_then(Json::as_array).map_or(&[][..], Vec::as_slice), e, verb)?
            }
            GoTy::Map(_, v) => {
                self.buf.extend_from_slice(b"map[");
                for (i, (key, val)) in sorted(node).into_iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b' ');
                    }
                    self.arg(&Value::Str(Cow::Borrowed(key.as_bytes())), verb)?;
                    self.buf.push(b':');
                    self.go_value(Some(val), v, verb, false)?;
                }
                self.buf.push(b']');
            }
            _ => self.arg(&load(node, id), verb)?,
        }
        Ok(())
    }

    /// `[e1 e2]`: the elements of a slice of Go type `e`.
    pub(super) fn go_elems(&mut self, items: &[Json], e: TyId, verb: char) -> Result<(), String> {
        self.buf.push(b'[');
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push(b' ');
            }
            self.go_value(Some(v), e, verb, false)?;
        }
        self.buf.push(b']');
        Ok(())
    }

    /// The message as Go prints a `router.Message` struct: `{Container Source Data Time}`.
    pub(super) fn message(&mut self, msg: &Message, verb: char) -> Result<(), String> {
        let s = schema();
        let fields: [(&str, Value<'_>); 4] = [
            ("Container", Value::Go(Some(msg.container.inspect_json()), s.container)),
            ("Source", bytes(msg.source.as_str())),
            ("Data", Value::Str(Cow::Borrowed(&msg.data))),
            ("Time", Value::Time(msg.time_ns)),
        ];
        self.buf.push(b'{');
        for (i, (name, v)) in fields.iter().enumerate() {
            if i > 0 {
                self.buf.push(b' ');
            }
            if self.f.plus_v {
                self.buf.extend_from_slice(name.as_bytes());
                self.buf.push(b':');
            }
            self.arg(v, verb)?;
        }
        self.buf.push(b'}');
        Ok(())
    }
}

/// Go's `isEmptyValue`, for `omitempty`: structs (times too) are never empty.
fn is_empty(node: Option<&Json>, id: TyId) -> bool {
    match schema().ty(id) {
        GoTy::Str => node.and_then(Json::as_str).is_none_or(str::is_empty),
        GoTy::Bool => !node.and_then(Json::as_bool).unwrap_or(false),
        GoTy::Int | GoTy::Int64 | GoTy::Duration => node.and_then(Json::as_f64).unwrap_or(0.0) == 0.0,
        GoTy::Slice(_) | GoTy::Map(..) => go_len(node, id).unwrap_or(0) == 0,
        GoTy::Ptr(_) | GoTy::PtrTo(_) => node.is_none(),
        GoTy::Array(_, n) => n == 0,
        GoTy::Time | GoTy::Empty | GoTy::Struct(_) => false,
    }
}

/// Writes an inspect value as Go's `json.Marshal` writes it: go-dockerclient's keys in its
/// field order, `omitempty` honoured, maps with sorted keys, nil slices and pointers as `null`.
pub(super) fn go_json(node: Option<&Json>, id: TyId, out: &mut Vec<u8>) {
    let s = schema();
    let node = node.filter(|n| !n.is_null());
    match s.ty(id) {
        GoTy::Str => write_json_string(&[node.and_then(Json::as_str).unwrap_or("").as_bytes()], out),
        GoTy::Bool => {
            out.extend_from_slice(if node.and_then(Json::as_bool).unwrap_or(false) { b"true" } else { b"false" })
        }
        GoTy::Int | GoTy::Int64 | GoTy::Duration => {
            if let Value::Int(n, _) = load(node, id) {
                timefmt::write_i64(n, out);
            }
        }
        GoTy::Time => {
            if let Value::Time(ns) = load(node, id) {
                out.push(b'"');
                time_rfc3339(ns, out);
                out.push(b'"');
            }
        }
        GoTy::Empty => out.extend_from_slice(b"{}"),
        GoTy::Slice(e) => match node.and_then(Json::as_array) {
            None => out.extend_from_slice(b"null"),
            Some(items) => go_json_elems(items, e, out),
        },
        GoTy::Map(_, v) => match node.and_then(Json::as_object) {
            None => out.extend_from_slice(b"null"),
            Some(_) => {
                out.push(b'{');
                for (i, (key, val)) in sorted(node).into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_string(&[key.as_bytes()], out);
                    out.push(b':');
                    go_json(Some(val), v, out);
                }
                out.push(b'}');
            }
        },
        GoTy::Ptr(_) | GoTy::PtrTo(_) if node.is_none() => out.extend_from_slice(b"null"),
        GoTy::PtrTo(e) => go_json(node, e, out),
        GoTy::Array(e, n) => {
            out.push(b'[');
            for (i, v) in array_items(node, n).into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                go_json(v, e, out);
            }
            out.push(b']');
        }
        GoTy::Ptr(st) | GoTy::Struct(st) => {
            out.push(b'{');
            let mut first = true;
            for f in &s.structs[usize::from(st)].fields {
                let v = json_get(node, f.key);
                if f.omitempty && is_empty(v, f.ty) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_json_string(&[f.key.as_bytes()], out);
                out.push(b':');
                go_json(v, f.ty, out);
            }
            out.push(b'}');
        }
    }
}

/// `[e1,e2]`: the elements of a slice of Go type `e` in JSON.
pub(super) fn go_json_elems(items: &[Json], e: TyId, out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        go_json(Some(v), e, out);
    }
    out.push(b']');
}

/// The elements of an inspect slice (of structs, maps…), whole or cut by `slice`, and the Go
/// type of the elements.
pub(super) fn go_slice<'a>(v: &Value<'a>) -> Option<(&'a [Json], TyId)> {
    let (items, id) = match v {
        Value::Go(node, id) => (node.and_then(Json::as_array).map_or(&[][..], Vec::as_slice), *id),
        Value::GoItems(items, id) => (*items, *id),
        _ => return None,
    };
    match schema().ty(id) {
        GoTy::Slice(e) => Some((items, e)),
        _ => None,
    }
}

/// `toJSON .`: logspout's `router.Message`, whose fields have no JSON tags.
pub(super) fn message_json(msg: &Message, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"Container\":");
    go_json(Some(msg.container.inspect_json()), schema().container, out);
    out.extend_from_slice(b",\"Source\":");
    write_json_string(&[msg.source.as_str().as_bytes()], out);
    out.extend_from_slice(b",\"Data\":");
    write_json_string(&[&msg.data], out);
    out.extend_from_slice(b",\"Time\":\"");
    time_rfc3339(msg.time_ns, out);
    out.push(b'"');
    out.push(b'}');
}

/// A time as Go's `time.RFC3339Nano` (its JSON form).
pub(super) fn time_rfc3339(ns: i64, out: &mut Vec<u8>) {
    if ns == ZERO_TIME {
        out.extend_from_slice(b"0001-01-01T00:00:00Z");
    } else {
        timefmt::write_rfc3339_nanos(ns, out);
    }
}

/// A time as Go's `Time.String` prints it.
pub(super) fn time_string(ns: i64, out: &mut Vec<u8>) {
    if ns == ZERO_TIME {
        out.extend_from_slice(b"0001-01-01 00:00:00 +0000 UTC");
    } else {
        timefmt::write_go_time_string(ns, out);
    }
}

/// The calendar fields of a time (year 1 for the zero time, a Monday).
pub(super) fn civil(ns: i64) -> Civil {
    if ns == ZERO_TIME {
        return Civil { year: 1, month: 1, day: 1, hour: 0, minute: 0, second: 0, nanos: 0, weekday: 1, yday: 1 };
    }
    Civil::from_nanos(ns)
}

/// Go's `Time.Unix`, `UnixMilli`, `UnixMicro` and `UnixNano` (which wraps for the zero time, as
/// Go's does), by the unit's nanoseconds.
pub(super) fn unix_in(ns: i64, unit: i64) -> i64 {
    if ns == ZERO_TIME {
        return ZERO_TIME_UNIX.wrapping_mul(1_000_000_000 / unit);
    }
    ns.div_euclid(unit)
}

/// Go's `Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(super) fn duration_string(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut s = String::new();
    if u < 1_000_000_000 {
        // Below a second: the largest unit that keeps a whole part.
        let (unit, name) = match u {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        s.push_str(&fraction(u, unit));
        s.push_str(name);
    } else {
        let secs = u / 1_000_000_000;
        let (h, m) = (secs / 3600, secs / 60 % 60);
        if h > 0 {
            s.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            s.push_str(&format!("{m}m"));
        }
        s.push_str(&fraction(u % 60_000_000_000, 1_000_000_000));
        s.push('s');
    }
    if neg { format!("-{s}") } else { s }
}

/// `v / unit` with the fraction's trailing zeros dropped.
fn fraction(v: u64, unit: u64) -> String {
    let (whole, frac) = (v / unit, v % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// go-dockerclient's `State.String()`, which Go's template engine calls for
/// `{{.Container.State}}` (`Up 5 minutes`, `Exited (0) 2 hours ago`), at `now` (ns).
pub(super) fn state_string(c: &Container, now: i64) -> String {
    let state = json_get(Some(c.inspect_json()), "State");
    let flag = |k: &str| json_get(state, k).and_then(Json::as_bool).unwrap_or(false);
    let time = |k: &str| match load(json_get(state, k), schema().types_time()) {
        Value::Time(ns) => ns,
        _ => ZERO_TIME,
    };
    let code = json_get(state, "ExitCode").and_then(Json::as_i64).unwrap_or(0);
    let since = |k: &str| human_duration(now.saturating_sub(time(k)));
    if flag("Running") {
        if flag("Paused") {
            return format!("Up {} (Paused)", since("StartedAt"));
        }
        if flag("Restarting") {
            return format!("Restarting ({code}) {} ago", since("FinishedAt"));
        }
        return format!("Up {}", since("StartedAt"));
    }
    if flag("RemovalInProgress") {
        return "Removal In Progress".into();
    }
    if flag("Dead") {
        return "Dead".into();
    }
    if time("StartedAt") == ZERO_TIME {
        return "Created".into();
    }
    if time("FinishedAt") == ZERO_TIME {
        return String::new();
    }
    format!("Exited ({code}) {} ago", since("FinishedAt"))
}

/// go-dockerclient's `State.StateString()`: `running`, `paused`, `exited`….
pub(super) fn state_word(c: &Container) -> &'static str {
    let state = json_get(Some(c.inspect_json()), "State");
    let flag = |k: &str| json_get(state, k).and_then(Json::as_bool).unwrap_or(false);
    let started =
        json_get(state, "StartedAt").and_then(Json::as_str).and_then(|t| timefmt::parse_rfc3339_nanos(t.as_bytes()));
    match () {
        _ if flag("Running") && flag("Paused") => "paused",
        _ if flag("Running") && flag("Restarting") => "restarting",
        _ if flag("Running") => "running",
        _ if flag("Dead") => "dead",
        _ if started.is_none() => "created",
        _ => "exited",
    }
}

/// docker/go-units' `HumanDuration`: `Less than a second`, `About a minute`, `3 hours`….
pub(super) fn human_duration(ns: i64) -> String {
    let seconds = ns / 1_000_000_000;
    let minutes = ns / 60_000_000_000;
    let hours = (ns as f64 / 3.6e12 + 0.5) as i64;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", ns / 3_600_000_000_000 / 24 / 365),
    }
}
