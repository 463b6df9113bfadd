//! Lexing one action into tokens, with Go's quoting of strings and characters.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok<'t> {
    Dot,
    /// `.Name`, without the dot.
    Field(&'t str),
    /// `$` or `$name`, with the `$`.
    Var(&'t str),
    Ident(&'t str),
    Str(Vec<u8>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Debug, Clone)]
pub(super) struct Token<'t> {
    pub(super) tok: Tok<'t>,
    /// Whether whitespace precedes it: `.A.B` is one chain, `.A .B` two arguments.
    pub(super) spaced: bool,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Whether `c` may continue an identifier, a field or a variable name (Go's `isAlphaNumeric`).
pub(super) fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits an action body into tokens, as Go's lexer does.
pub(super) fn lex(body: &str) -> Result<Vec<Token<'_>>, String> {
    let b = body.as_bytes();
    let mut tokens = Vec::new();
    let mut spaced = true;
    let mut i = 0;
    let word_len = |from: usize| body[from..].find(|c: char| !is_word(c)).unwrap_or(body.len() - from);
    while i < b.len() {
        let c = b[i];
        if is_space(c) {
            spaced = true;
            i += 1;
            continue;
        }
        let start = i;
        let mut needs_terminator = true;
        let tok = match c {
            b'|' => {
                i += 1;
                needs_terminator = false;
                Tok::Pipe
            }
            b'(' | b')' | b',' | b'=' => {
                i += 1;
                needs_terminator = false;
                match c {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b',' => Tok::Comma,
                    _ => Tok::Assign,
                }
            }
            b':' => {
                if b.get(i + 1) != Some(&b'=') {
                    return Err("expected := after :".into());
                }
                i += 2;
                needs_terminator = false;
                Tok::Declare
            }
            b'"' | b'`' => {
                let (value, len) = unquote(&body[i..])?;
                i += len;
                needs_terminator = false;
                Tok::Str(value)
            }
            b'\'' => {
                let (value, len) = unquote_char(&body[i..])?;
                i += len;
                Tok::Int(value)
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let len = number_len(&b[i..]);
                i += len;
                number(&body[start..i])?
            }
            b'.' => {
                let len = word_len(i + 1);
                i += 1 + len;
                if len == 0 { Tok::Dot } else { Tok::Field(&body[start + 1..i]) }
            }
            b'$' => {
                i += 1 + word_len(i + 1);
                Tok::Var(&body[start..i])
            }
            b'+' | b'-' | b'0'..=b'9' => {
                i += number_len(&b[i..]);
                number(&body[start..i])?
            }
            _ => {
                let ch = body[i..].chars().next().unwrap_or('?');
                if !(ch == '_' || ch.is_alphabetic()) {
                    return Err(format!("unexpected character {ch:?}"));
                }
                i += word_len(i);
                match &body[start..i] {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    word => Tok::Ident(word),
                }
            }
        };
        // As in Go, a name or number must be followed by a space or punctuation.
        if needs_terminator && let Some(next) = body[i..].chars().next() {
            let ok = next.is_ascii() && (is_space(next as u8) || matches!(next, '.' | ',' | '|' | ':' | ')' | '('));
            if !ok {
                return Err(format!("bad character {next:?} after {:?}", &body[start..i]));
            }
        }
        tokens.push(Token { tok, spaced, start, end: i });
        spaced = false;
    }
    Ok(tokens)
}

/// The length of the number at the start of `b`, with Go's lexer's generosity (it is parsed,
/// and rejected if malformed, afterwards).
pub(super) fn number_len(b: &[u8]) -> usize {
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    while i < b.len() {
        let c = b[i];
        let exponent_sign = matches!(c, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exponent_sign) {
            break;
        }
        i += 1;
    }
    i
}

/// A number constant: as Go's template engine takes it, a `float64` when its text has a `.`, an
/// exponent or (in hexadecimal) a `p` exponent, an `int` otherwise.
pub(super) fn number(text: &str) -> Result<Tok<'_>, String> {
    let digits = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let hex = digits.starts_with("0x");
    let float = !digits.ends_with('i')
        && (digits.contains('.') || (!hex && digits.contains('e')) || (hex && digits.contains('p')));
    if !float {
        return parse_number(text).map(Tok::Int);
    }
    if hex {
        return Err(format!("hexadecimal floating-point constants such as {text} are not supported"));
    }
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    match clean.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Tok::Float(f)),
        _ => Err(format!("bad number syntax: {text:?}")),
    }
}

/// Parses a Go integer constant (decimal, `0x`, `0o`, `0b` or a leading-zero octal, with `_`
/// separators); complex constants are outside the subset.
pub(super) fn parse_number(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex)
    } else if let Some(bin) = lower.strip_prefix("0b") {
        (2, bin)
    } else if let Some(oct) = lower.strip_prefix("0o") {
        (8, oct)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit() || c == b'_') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let float = body.ends_with('i')
        || body.contains('.')
        || (radix == 10 && body.contains('e'))
        || (radix == 16 && body.contains('p'));
    if float {
        return Err(format!("complex constants such as {text} are not supported"));
    }
    let body: String = body.chars().filter(|&c| c != '_').collect();
    let magnitude = u64::from_str_radix(&body, radix).map_err(|_| format!("bad number syntax: {text:?}"))?;
    let value = if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    value.ok_or_else(|| format!("{text} overflows int"))
}

/// Reads the Go string literal at the start of `s` (interpreted `"…"` or raw `` `…` ``),
/// returning its bytes and length.
pub(super) fn unquote(s: &str) -> Result<(Vec<u8>, usize), String> {
    if let Some(raw) = s.strip_prefix('`') {
        let end = raw.find('`').ok_or("unterminated raw quoted string")?;
        // Go drops carriage returns from raw strings.
        return Ok((raw[..end].bytes().filter(|&c| c != b'\r').collect(), end + 2));
    }
    let mut value = Vec::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, i + 1)),
            '\\' => unescape(&mut chars, '"', &mut value)?,
            '\n' => break,
            c => value.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Err("unterminated quoted string".into())
}

/// Reads a Go character constant (`'a'`, `'\n'`, `'\u00e9'`), returning its code point and
/// length.
pub(super) fn unquote_char(s: &str) -> Result<(i64, usize), String> {
    let mut chars = s.char_indices().skip(1);
    let mut value = Vec::new();
    let code = match chars.next() {
        Some((_, '\\')) => {
            unescape(&mut chars, '\'', &mut value)?;
            // A `\xHH` or octal escape is a byte; the others are characters.
            match std::str::from_utf8(&value).ok().and_then(|v| v.chars().next()) {
                Some(c) if value.len() > 1 || value[0] < 0x80 => i64::from(u32::from(c)),
                _ => i64::from(value[0]),
            }
        }
        Some((_, c)) if c != '\'' && c != '\n' => i64::from(u32::from(c)),
        _ => return Err("malformed character constant".into()),
    };
    match chars.next() {
        Some((i, '\'')) => Ok((code, i + 1)),
        _ => Err("malformed character constant".into()),
    }
}

/// Decodes the escape after a backslash into `out`, as Go's `strconv.Unquote` does.
pub(super) fn unescape(
    chars: &mut impl Iterator<Item = (usize, char)>,
    quote: char,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let bad = || "invalid escape in string".to_string();
    let (_, e) = chars.next().ok_or_else(bad)?;
    let mut digits = |n: usize, radix: u32| -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let (_, d) = chars.next().ok_or_else(bad)?;
            v = v.checked_mul(radix).and_then(|v| v.checked_add(d.to_digit(radix)?)).ok_or_else(bad)?;
        }
        Ok(v)
    };
    match e {
        'a' => out.push(7),
        'b' => out.push(8),
        'f' => out.push(12),
        'n' => out.push(b'\n'),
        'r' => out.push(b'\r'),
        't' => out.push(b'\t'),
        'v' => out.push(11),
        '\\' => out.push(b'\\'),
        c if c == quote => out.push(c as u8),
        'x' => out.push(digits(2, 16)? as u8),
        '0'..='7' => {
            let rest = digits(2, 8)?;
            let v = (e as u32 - '0' as u32) * 64 + rest;
            out.push(u8::try_from(v).map_err(|_| bad())?);
        }
        'u' | 'U' => {
            let v = digits(if e == 'u' { 4 } else { 8 }, 16)?;
            let c = char::from_u32(v).ok_or_else(bad)?;
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        _ => return Err(bad()),
    }
    Ok(())
}
