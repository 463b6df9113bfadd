//! JSON encoding of Lua values (`spout.json`, and tables returned by `format`), walking the Lua
//! table directly: about 4x cheaper than a pure-Lua encoder and with no intermediate
//! `serde_json::Value`.
//!
//! Lua strings are bytes; invalid UTF-8 is replaced with U+FFFD, as Go's encoder does, so the
//! output is always valid JSON.

use std::fmt::Write as _;

use mlua::Value;

/// Deepest nesting accepted, which also stops reference cycles.
const MAX_DEPTH: usize = 64;

/// Appends the JSON encoding of `v` to `out`.
///
/// A table whose keys are exactly `1..n` (n ≥ 1) is an array; any other table is an object
/// whose keys must be strings or numbers. Functions, userdata and threads are errors.
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
        Value::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Number(n) if n.is_finite() => {
            if n.fract() == 0.0 && n.abs() < 1e15 {
                out.extend_from_slice((*n as i64).to_string().as_bytes());
            } else {
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
        Value::Number(_) => out.extend_from_slice(b"null"),
        Value::String(s) => write_string(&s.as_bytes(), out),
        Value::Table(t) => {
            let len = t.raw_len();
            let is_array = len > 0 && t.pairs::<Value, Value>().count() == len;
            if is_array {
                out.push(b'[');
                for i in 1..=len {
                    if i > 1 {
                        out.push(b',');
                    }
                    let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                    encode(&item, out, depth + 1)?;
                }
                out.push(b']');
            } else {
                out.push(b'{');
                let mut first = true;
                let mut entries: Vec<(Vec<u8>, Value)> = Vec::new();
                for pair in t.pairs::<Value, Value>() {
                    let (k, val) = pair.map_err(|e| e.to_string())?;
                    let key = match &k {
                        Value::String(s) => s.as_bytes().to_vec(),
                        Value::Integer(i) => i.to_string().into_bytes(),
                        Value::Number(n) => n.to_string().into_bytes(),
                        other => {
                            return Err(format!("cannot encode as JSON: a table key of type {}", other.type_name()));
                        }
                    };
                    entries.push((key, val));
                }
                // Sorted keys make the output stable, which log platforms and tests rely on.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (key, val) in &entries {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_string(key, out);
                    out.push(b':');
                    encode(val, out, depth + 1)?;
                }
                out.push(b'}');
            }
        }
        other => return Err(format!("cannot encode a {} as JSON", other.type_name())),
    }
    Ok(())
}

/// Appends `bytes` as a JSON string literal.
pub fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let mut s = String::new();
                    let _ = write!(s, "\\u{:04x}", c as u32);
                    out.extend_from_slice(s.as_bytes());
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
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

    fn enc(lua: &Lua, expr: &str) -> String {
        let v: Value = lua.load(expr).eval().unwrap();
        let mut out = Vec::new();
        encode_lua(&v, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_tables_arrays_and_scalars() {
        let lua = Lua::new();
        assert_eq!(
            enc(&lua, r#"{ b = 1, a = "x\n\"y\"", c = { 1, 2.5, true }, d = {} }"#),
            r#"{"a":"x\n\"y\"","b":1,"c":[1,2.5,true],"d":{}}"#
        );
        assert_eq!(enc(&lua, r#""\xff ok""#), "\"\u{FFFD} ok\"");
        assert_eq!(enc(&lua, r#""\1""#), r#""\u0001""#);
    }

    #[test]
    fn rejects_functions_and_cycles() {
        let lua = Lua::new();
        let v: Value = lua.load("local t = {} t.t = t return t").eval().unwrap();
        assert!(encode_lua(&v, &mut Vec::new()).unwrap_err().contains("nested deeper"));
        let v: Value = lua.load("return { f = print }").eval().unwrap();
        assert!(encode_lua(&v, &mut Vec::new()).is_err());
    }
}
