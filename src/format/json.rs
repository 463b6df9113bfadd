//! JSON encoding of Lua values (`spout.json`, and tables returned by `format`), walking the Lua
//! table directly: about 4x cheaper than a pure-Lua encoder and with no intermediate
//! `serde_json::Value`.
//!
//! Types survive the trip: a Lua integer is written as an integer and a float always as a float
//! (`1.0`, `1e300`), so a consumer that types fields by their first value sees the same type on
//! every line. NaN and the infinities have no JSON spelling and become `null`.
//!
//! Lua has one table type for both arrays and objects, so an empty table is ambiguous; it is
//! `{}` unless marked with `spout.array` (a metatable whose `__name` is [`ARRAY_MARKER`]), and
//! `spout.null` ([`null`]) stands for a JSON `null` inside a table, where a Lua `nil` would
//! delete the key.
//!
//! Lua strings are bytes; invalid UTF-8 is replaced with U+FFFD, as Go's encoder does, so the
//! output is always valid JSON.

use std::ffi::c_void;
use std::io::Write as _;
use std::ops::Range;

use mlua::{LightUserData, Table, Value};

use crate::message::Message;
use crate::timefmt::write_i64;

/// Deepest nesting accepted, which also stops reference cycles.
const MAX_DEPTH: usize = 64;

/// The `__name` of the metatable `spout.array` puts on a table: such a table encodes as a JSON
/// array even when empty. `__name` is the Lua convention for naming a metatable's type, and
/// checking the name rather than one table's identity works in every Lua state.
pub const ARRAY_MARKER: &str = "spout.array";

/// The address behind [`null`]; only its identity matters.
static NULL_SENTINEL: u8 = 0;

/// The value of `spout.null`: a light userdata that encodes as JSON `null`.
///
/// A light userdata is a bare pointer, so the same value is valid in every Lua state and
/// compares equal across them (state carried over a reload keeps its nulls).
pub fn null() -> LightUserData {
    LightUserData(std::ptr::addr_of!(NULL_SENTINEL) as *mut c_void)
}

/// Whether `t` was marked with `spout.array` (its metatable's `__name` is [`ARRAY_MARKER`]).
pub fn is_marked_array(t: &Table) -> bool {
    t.metatable().is_some_and(|mt| matches!(mt.raw_get::<Value>("__name"), Ok(Value::String(s)) if s == ARRAY_MARKER))
}

/// Appends the JSON encoding of `v` to `out`.
///
/// A table whose keys are exactly `1..n` (n ≥ 1) is an array; so is a table marked with
/// `spout.array`, whose holes become `null`. Any other table is an object whose keys must be
/// strings or numbers, written in byte order so the output is stable. Functions, userdata
/// (other than `spout.null`) and threads are errors.
pub fn encode_lua(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    encode(v, out, 0)
}

fn encode(v: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("cannot encode as JSON: nested deeper than {MAX_DEPTH} levels (a cycle?)"));
    }
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => write_i64(*i, out),
        Value::Number(n) => write_float(*n, out),
        Value::String(s) => write_string(&s.as_bytes(), out),
        Value::LightUserData(p) if *p == null() => out.extend_from_slice(b"null"),
        Value::Table(t) => encode_table(t, out, depth)?,
        other => {
            return Err(format!(
                "cannot encode a {} as JSON (only tables, strings, numbers, booleans, nil and spout.null)",
                other.type_name()
            ));
        }
    }
    Ok(())
}

fn encode_table(t: &Table, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    let mut entries: Vec<(Value, Value)> = Vec::with_capacity(t.raw_len());
    t.for_each(|k, v| {
        entries.push((k, v));
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    if is_marked_array(t) {
        return encode_marked_array(entries, out, depth);
    }
    let n = entries.len();
    let index = |k: &Value| match k {
        Value::Integer(i) => usize::try_from(*i).ok().filter(|i| *i >= 1),
        _ => None,
    };
    if n > 0 && entries.iter().all(|(k, _)| index(k).is_some_and(|i| i <= n)) {
        // Distinct keys all within 1..=n: exactly the keys 1..=n.
        entries.sort_unstable_by_key(|(k, _)| index(k));
        out.push(b'[');
        for (i, (_, item)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            encode(item, out, depth + 1)?;
        }
        out.push(b']');
        return Ok(());
    }
    // Every key's text goes into one buffer, so sorting compares slices and allocates once.
    let mut key_text = Vec::new();
    let mut keyed: Vec<(Range<usize>, Value)> = Vec::with_capacity(n);
    for (k, val) in entries {
        let start = key_text.len();
        match &k {
            Value::String(s) => key_text.extend_from_slice(&s.as_bytes()),
            Value::Integer(i) => write_i64(*i, &mut key_text),
            Value::Number(x) => write_float(*x, &mut key_text),
            other => {
                return Err(format!(
                    "cannot encode as JSON: a table key of type {} (object keys must be strings or numbers)",
                    other.type_name()
                ));
            }
        }
        keyed.push((start..key_text.len(), val));
    }
    // Sorted keys make the output stable, which log platforms and tests rely on.
    keyed.sort_by(|a, b| key_text[a.0.clone()].cmp(&key_text[b.0.clone()]));
    out.push(b'{');
    for (i, (key, val)) in keyed.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(&key_text[key.clone()], out);
        out.push(b':');
        encode(val, out, depth + 1)?;
    }
    out.push(b'}');
    Ok(())
}

/// A `spout.array` table: `[]` when empty, holes as `null`. A key past twice the number of
/// entries is refused rather than written as a long run of nulls (`spout.array{[1e9] = 1}`).
fn encode_marked_array(entries: Vec<(Value, Value)>, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    let most = 2 * entries.len() as u64;
    let mut slots: Vec<(u64, Value)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        match k {
            Value::Integer(i) if i >= 1 && i as u64 <= most => slots.push((i as u64, v)),
            other => {
                return Err(format!(
                    "cannot encode as JSON: a table marked with spout.array has the key {} (keys must be 1 to 2 x the number of items)",
                    key_display(&other)
                ));
            }
        }
    }
    slots.sort_unstable_by_key(|(i, _)| *i);
    out.push(b'[');
    let mut next = 1;
    for (i, v) in &slots {
        while next <= *i {
            if next > 1 {
                out.push(b',');
            }
            if next < *i {
                out.extend_from_slice(b"null");
            } else {
                encode(v, out, depth + 1)?;
            }
            next += 1;
        }
    }
    out.push(b']');
    Ok(())
}

/// A table key as an error message shows it.
fn key_display(k: &Value) -> String {
    match k {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Integer(i) => i.to_string(),
        Value::Number(x) => format!("{x:?}"),
        other => format!("of type {}", other.type_name()),
    }
}

/// Appends a float so that it reads back as a float: Rust's shortest round-trip form, which
/// always has a `.` or an exponent (`1.0`, `0.1`, `1e300`, `-0.0`). NaN and the infinities
/// have no JSON form and become `null`.
fn write_float(x: f64, out: &mut Vec<u8>) {
    if x.is_finite() {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{x:?}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends a message as the `json` adapter's object, the shape `/logs` also streams:
/// `{"container":{"id","name","image","hostname","labels"},"source","data","time"}`, with
/// the time in RFC 3339 with nanoseconds.
pub fn write_message(msg: &Message, out: &mut Vec<u8>) {
    let c = &msg.container;
    out.extend_from_slice(b"{\"container\":{\"id\":");
    write_string(c.id.as_bytes(), out);
    out.extend_from_slice(b",\"name\":");
    write_string(c.name.as_bytes(), out);
    out.extend_from_slice(b",\"image\":");
    write_string(c.image.as_bytes(), out);
    out.extend_from_slice(b",\"hostname\":");
    write_string(c.hostname.as_bytes(), out);
    out.extend_from_slice(b",\"labels\":");
    write_labels(&c.labels, out);
    out.extend_from_slice(b"},\"source\":");
    write_string(msg.source.as_str().as_bytes(), out);
    out.extend_from_slice(b",\"data\":");
    write_string(&msg.data, out);
    out.extend_from_slice(b",\"time\":\"");
    crate::timefmt::write_rfc3339_nanos(msg.time_ns, out);
    out.extend_from_slice(b"\"}");
}

/// Appends a container's labels as a JSON object.
pub fn write_labels(labels: &std::collections::BTreeMap<String, String>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k.as_bytes(), out);
        out.push(b':');
        write_string(v.as_bytes(), out);
    }
    out.push(b'}');
}

/// Appends `bytes` as a JSON string literal: `"`, `\` and control characters escaped, invalid
/// UTF-8 replaced with U+FFFD. Runs that need no escaping are copied whole.
pub fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut run = 0;
        for (i, &b) in valid.iter().enumerate() {
            // Bytes of multi-byte UTF-8 sequences are all >= 0x80, so they never match here.
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..0x20 => &[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]],
                _ => continue,
            };
            out.extend_from_slice(&valid[run..i]);
            out.extend_from_slice(escape);
            run = i + 1;
        }
        out.extend_from_slice(&valid[run..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Lua;

    /// A state where `null` and `array` stand for `spout.null` and `spout.array`.
    fn state() -> Lua {
        let lua = Lua::new();
        lua.globals().set("null", null()).unwrap();
        let mt = lua.create_table().unwrap();
        mt.raw_set("__name", ARRAY_MARKER).unwrap();
        lua.globals()
            .set(
                "array",
                lua.create_function(move |_, t: Table| {
                    t.set_metatable(Some(mt.clone()))?;
                    Ok(t)
                })
                .unwrap(),
            )
            .unwrap();
        lua
    }

    fn enc(lua: &Lua, expr: &str) -> String {
        let v: Value = lua.load(expr).eval().unwrap();
        let mut out = Vec::new();
        encode_lua(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("invalid JSON {text}: {e}"));
        text
    }

    fn enc_err(lua: &Lua, expr: &str) -> String {
        let v: Value = lua.load(expr).eval().unwrap();
        encode_lua(&v, &mut Vec::new()).unwrap_err()
    }

    #[test]
    fn encodes_tables_arrays_and_scalars() {
        let lua = state();
        assert_eq!(
            enc(&lua, r#"{ b = 1, a = "x\n\"y\"", c = { 1, 2.5, true }, d = {} }"#),
            r#"{"a":"x\n\"y\"","b":1,"c":[1,2.5,true],"d":{}}"#
        );
        assert_eq!(enc(&lua, r#"{ [3] = "c", [1] = "a", [2] = "b" }"#), r#"["a","b","c"]"#);
        assert_eq!(enc(&lua, r#"{ [1] = "a", [3] = "c" }"#), r#"{"1":"a","3":"c"}"#, "holes make an object");
        assert_eq!(enc(&lua, r#"{ [1.5] = 1, [-2] = 2 }"#), r#"{"-2":2,"1.5":1}"#);
    }

    #[test]
    fn integers_stay_integers_and_floats_stay_floats() {
        let lua = state();
        assert_eq!(
            enc(&lua, "{ 1, 1.0, -0.0, 0.1, 2^53, math.maxinteger, math.mininteger }"),
            "[1,1.0,-0.0,0.1,9007199254740992.0,9223372036854775807,-9223372036854775808]"
        );
        assert_eq!(enc(&lua, "{ 1e300, -1e-300, 1e16, 123456.789 }"), "[1e300,-1e-300,1e16,123456.789]");
        assert_eq!(enc(&lua, "{ 0/0, 1/0, -1/0 }"), "[null,null,null]");
        let v: serde_json::Value = serde_json::from_str(&enc(&lua, "{ 1e300, 3 }")).unwrap();
        assert!(v[0].is_f64() && v[1].is_i64());
    }

    #[test]
    fn empty_tables_arrays_and_null() {
        let lua = state();
        assert_eq!(enc(&lua, "{}"), "{}");
        assert_eq!(enc(&lua, "array {}"), "[]");
        assert_eq!(
            enc(&lua, "{ tags = array {}, x = null, list = { 1, null, 3 } }"),
            r#"{"list":[1,null,3],"tags":[],"x":null}"#
        );
        assert_eq!(enc(&lua, "array { 1, nil, 3 }"), "[1,null,3]");
        assert_eq!(enc(&lua, "array { [2] = 'b' }"), r#"[null,"b"]"#);
        assert_eq!(enc(&lua, "null"), "null");
        assert!(enc_err(&lua, "array { x = 1 }").contains("marked with spout.array has the key \"x\""));
        assert!(enc_err(&lua, "array { [1000000000] = 1 }").contains("has the key 1000000000"));
    }

    #[test]
    fn strings_are_escaped_and_invalid_utf8_replaced() {
        let lua = state();
        assert_eq!(enc(&lua, r#""\xff ok""#), "\"\u{FFFD} ok\"");
        assert_eq!(enc(&lua, r#""\1\31\127""#), "\"\\u0001\\u001f\u{7f}\"");
        assert_eq!(enc(&lua, r#""tab\there\\ \r""#), r#""tab\there\\ \r""#);
        assert_eq!(enc(&lua, r#""é\xc3 ü\xe2\x82""#), "\"é\u{FFFD} ü\u{FFFD}\"");
        assert_eq!(enc(&lua, r#"{ ["k\xff"] = "v" }"#), "{\"k\u{FFFD}\":\"v\"}");
        let mut out = Vec::new();
        write_string(b"", &mut out);
        assert_eq!(out, b"\"\"");
    }

    #[test]
    fn rejects_functions_and_cycles() {
        let lua = state();
        assert!(enc_err(&lua, "local t = {} t.t = t return t").contains("nested deeper"));
        assert!(enc_err(&lua, "{ f = print }").contains("cannot encode a function"));
        assert!(enc_err(&lua, "{ [true] = 1 }").contains("table key of type boolean"));
    }
}
