//! Shell-style globs with exactly the semantics of Go's `path.Match`, which logspout uses for
//! `filter.name` and the value side of `filter.labels`.
//!
//! A pattern is parsed once into chunks (`*` followed by fixed-width items) and matched with
//! Go's own algorithm: each chunk is tried at the leftmost position where it fits, which is
//! exact because a chunk consumes a fixed number of characters and `*` can skip anything but
//! `/`. Matching walks bytes like Go does (including Go's treatment of invalid UTF-8 as one
//! U+FFFD per byte) and never allocates.
//!
//! Syntax: `*` is any run of non-`/` characters, `?` one non-`/` character, `[abc]`, `[a-z]`
//! and `[^a]` are character classes (only `^` negates; `[!a]` is the class of `!` and `a`),
//! and `\` makes the next character literal. Matching is anchored and case-sensitive. A
//! malformed pattern (such as `[` or a trailing `\`) is accepted but never matches, because
//! logspout treats Go's `ErrBadPattern` as "no match".

/// A compiled `path.Match` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    /// `None` when the pattern is malformed.
    chunks: Option<Vec<Chunk>>,
}

/// A run of fixed-width items, possibly preceded by a `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chunk {
    star: bool,
    items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Bytes that must appear as they are.
    Literal(Vec<u8>),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `[...]`: one character inside (or, negated, outside) inclusive ranges.
    Class { negated: bool, ranges: Vec<(char, char)> },
}

/// Go's `path.ErrBadPattern`.
struct BadPattern;

impl Glob {
    /// Compiles `pattern`; a malformed pattern yields a glob that matches nothing.
    pub fn new(pattern: &str) -> Glob {
        Glob { source: pattern.to_string(), chunks: compile(pattern).ok() }
    }

    /// The pattern as written, for messages and listings.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern was malformed (and so never matches), for callers that want to warn.
    pub fn is_malformed(&self) -> bool {
        self.chunks.is_none()
    }

    /// Whether `name` matches the whole pattern, as Go's `path.Match(pattern, name)`.
    pub fn matches(&self, name: &str) -> bool {
        let Some(chunks) = &self.chunks else {
            return false;
        };
        let mut name = name.as_bytes();
        'chunks: for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            if chunk.star && chunk.items.is_empty() {
                // A trailing `*` takes the rest of the name unless it has a `/`.
                return !name.contains(&b'/');
            }
            if let Some(rest) = match_chunk(&chunk.items, name) {
                // The last chunk must use up the name; otherwise a later position may fit.
                if rest.is_empty() || !last {
                    name = rest;
                    continue;
                }
            }
            if chunk.star {
                let mut skip = 0;
                while skip < name.len() && name[skip] != b'/' {
                    skip += 1;
                    if let Some(rest) = match_chunk(&chunk.items, &name[skip..]) {
                        if last && !rest.is_empty() {
                            continue;
                        }
                        name = rest;
                        continue 'chunks;
                    }
                }
            }
            return false;
        }
        name.is_empty()
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// Splits `pattern` into chunks as Go's `scanChunk` does, then parses each chunk's items.
fn compile(mut pattern: &str) -> Result<Vec<Chunk>, BadPattern> {
    let mut chunks = Vec::new();
    while !pattern.is_empty() {
        let rest = pattern.trim_start_matches('*');
        let star = rest.len() != pattern.len();
        let end = chunk_end(rest);
        chunks.push(Chunk { star, items: parse_items(&rest[..end])? });
        pattern = &rest[end..];
    }
    Ok(chunks)
}

/// Where the chunk starting at `s` ends: at the first `*` outside brackets (Go's `scanChunk`,
/// which also skips the character after a `\`).
fn chunk_end(s: &str) -> usize {
    let b = s.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Parses one chunk with the grammar of Go's `matchChunk`.
fn parse_items(chunk: &str) -> Result<Vec<Item>, BadPattern> {
    let mut items = Vec::new();
    let mut literal = Vec::new();
    let mut rest = chunk;
    while let Some(c) = rest.chars().next() {
        match c {
            '[' => {
                flush_literal(&mut literal, &mut items);
                let (item, after) = parse_class(&rest[1..])?;
                items.push(item);
                rest = after;
            }
            '?' => {
                flush_literal(&mut literal, &mut items);
                items.push(Item::AnyChar);
                rest = &rest[1..];
            }
            '\\' => {
                let escaped = rest[1..].chars().next().ok_or(BadPattern)?;
                let mut buf = [0u8; 4];
                literal.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                rest = &rest[1 + escaped.len_utf8()..];
            }
            c => {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    flush_literal(&mut literal, &mut items);
    Ok(items)
}

fn flush_literal(literal: &mut Vec<u8>, items: &mut Vec<Item>) {
    if !literal.is_empty() {
        items.push(Item::Literal(std::mem::take(literal)));
    }
}

/// Parses a class body (after the `[`), returning the class and what follows its `]`.
fn parse_class(mut s: &str) -> Result<(Item, &str), BadPattern> {
    let negated = s.starts_with('^');
    if negated {
        s = &s[1..];
    }
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && s.starts_with(']') {
            return Ok((Item::Class { negated, ranges }, &s[1..]));
        }
        let (lo, after) = class_char(s)?;
        s = after;
        let mut hi = lo;
        if let Some(after_dash) = s.strip_prefix('-') {
            (hi, s) = class_char(after_dash)?;
        }
        ranges.push((lo, hi));
    }
}

/// One possibly escaped class character (Go's `getEsc`): `-` and `]` must be escaped, and
/// something must follow, since the class still needs its `]`.
fn class_char(s: &str) -> Result<(char, &str), BadPattern> {
    let s = match s.chars().next() {
        None | Some('-' | ']') => return Err(BadPattern),
        Some('\\') => &s[1..],
        Some(_) => s,
    };
    let c = s.chars().next().ok_or(BadPattern)?;
    let rest = &s[c.len_utf8()..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((c, rest))
}

/// Matches `items` at the start of `s`, returning what is left, as Go's `matchChunk`.
fn match_chunk<'a>(items: &[Item], mut s: &'a [u8]) -> Option<&'a [u8]> {
    for item in items {
        match item {
            Item::Literal(lit) => s = s.strip_prefix(lit.as_slice())?,
            Item::AnyChar => {
                if s.first()? == &b'/' {
                    return None;
                }
                s = &s[decode(s)?.1..];
            }
            Item::Class { negated, ranges } => {
                let (c, width) = decode(s)?;
                let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                if inside == *negated {
                    return None;
                }
                s = &s[width..];
            }
        }
    }
    Some(s)
}

/// Decodes the character at the start of `s` as Go's `utf8.DecodeRune` does, or `None` at the
/// end.
///
/// `s` is always a suffix of a `&str`, but `*` skips bytes, so it may start inside a
/// character; a stray continuation byte then counts as one U+FFFD, exactly as in Go.
fn decode(s: &[u8]) -> Option<(char, usize)> {
    let first = *s.first()?;
    let width = match first {
        0x00..=0x7f => return Some((char::from(first), 1)),
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return Some((char::REPLACEMENT_CHARACTER, 1)),
    };
    match s.get(..width).and_then(|b| std::str::from_utf8(b).ok()).and_then(|t| t.chars().next()) {
        Some(c) => Some((c, width)),
        None => Some((char::REPLACEMENT_CHARACTER, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).matches(name)
    }

    #[test]
    fn reference_name_rows() {
        // logspout's container filter test vectors (docs/logspout-compat.md), container name `/app_db`
        // (matched without its `/`).
        assert!(m("*_db", "app_db"));
        assert!(!m("*_db", "app_db_1"));
        assert!(!m("db", "app_db"), "anchored");
        assert!(m("*db*", "app_db_1"));
        assert!(m("app?db", "app_db"));
        assert!(!m("APP_DB", "app_db"), "case-sensitive");
        assert!(!m("[", "app_db"), "malformed");
        assert!(m("app*", "app_db"));
    }

    #[test]
    fn reference_label_value_rows() {
        assert!(m("x*", "xyz"));
        assert!(!m("x*", "yx"));
        assert!(!m("x*", ""));
        assert!(m("*", ""), "a missing label is the empty string, and * matches it");
        assert!(m("*y", "zy"));
        assert!(!m("x*", "x/y"), "* does not match /");
        assert!(m("prod", "prod"));
        assert!(!m("prod", "dev"));
        // An empty glob is Go's `path.Match("", v)`: only the empty value. logspout itself
        // skips empty label globs (`a:` always passes); that belongs to the route matcher.
        assert!(m("", ""));
        assert!(!m("", "anything"));
    }

    #[test]
    fn question_mark_and_slash() {
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(!m("a?c", "ac"));
        assert!(m("a?", "aé"), "? takes a whole character");
        assert!(!m("a??", "aé"));
        assert!(m("a/*", "a/b"));
        assert!(!m("a/*", "a/b/c"));
        assert!(m("*/*", "a/b"));
        assert!(!m("*", "a/b"));
    }

    #[test]
    fn classes() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("[^a]", "b"));
        assert!(!m("[^a]", "a"));
        assert!(m("[!a]", "!"), "Go negates with ^ only");
        assert!(!m("[!a]", "b"));
        assert!(m("[^a-c]", "/"), "a class may match /");
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(m("[*]", "*"), "* is literal inside a class");
        assert!(m("[é-ü]", "ö"));
        assert!(!m("[z-a]", "m"), "an empty range is valid and matches nothing");
        assert!(m("[a-cx-z]", "y"));
    }

    #[test]
    fn escapes() {
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a\\?b", "a?b"));
        assert!(!m("a\\?b", "axb"));
        assert!(m("\\[x]", "[x]"));
        assert!(m("\\a", "a"));
    }

    #[test]
    fn malformed_patterns_never_match() {
        for bad in ["[", "[]", "[]a]", "[^]", "[a", "[a-", "[a-]", "[-a]", "a\\", "[\\", "[x-\\", "*[", "a*[b"] {
            let g = Glob::new(bad);
            assert!(g.is_malformed(), "{bad:?}");
            for name in ["", "a", "[", "ab", "]", "-"] {
                assert!(!g.matches(name), "{bad:?} ~ {name:?}");
            }
        }
        assert!(!Glob::new("a*").is_malformed());
        assert!(!Glob::new("]").is_malformed(), "a lone ] is literal");
        assert!(m("]", "]"));
    }

    #[test]
    fn backtracking() {
        assert!(m("*a*b", "xaxaxb"));
        assert!(m("a*b*c", "abbbcbc"));
        assert!(m("*ab", "aab"), "the first place the chunk fits is not the one that ends the name");
        assert!(m("*aab", "aaab"));
        assert!(!m("*aab", "aaba"));
        assert!(m("a*a*a", "aaa"));
        assert!(!m("a*a*a", "aa"));
        assert!(m("**a", "ba"), "consecutive stars collapse");
        assert!(m("*?", "x"));
        assert!(!m("*?", ""));
        assert!(m("*.log", "a.b.log"));
        assert!(m("*x*", "x"));
        assert!(!m("*/b", "a/c/b"));
        assert!(m("a*", "a"));
        assert!(m(&"*a".repeat(20), &"a".repeat(40)));
        assert!(!m(&format!("{}b", "*a".repeat(20)), &"a".repeat(60)));
    }

    #[test]
    fn go_counts_bytes_after_a_star() {
        // Go skips bytes after `*`, so `??` can land on the two trailing bytes of `€`.
        assert!(m("*??", "€"));
        assert!(!m("??", "€"));
    }

    #[test]
    fn shows_the_pattern() {
        let g = Glob::new("*_db");
        assert_eq!(g.as_str(), "*_db");
        assert_eq!(g.to_string(), "*_db");
    }
}
