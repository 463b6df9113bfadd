//! Scanning a template: splitting text from actions, with the trim markers and comments.

use super::*;

/// An action of the source, for messages: its text (shortened) and where it starts.
#[derive(Debug, Clone)]
pub(super) struct ActionInfo {
    pub(super) text: String,
    pub(super) line: usize,
    pub(super) column: usize,
}

impl ActionInfo {
    pub(super) fn describe(&self) -> String {
        format!("{:?} at line {}, column {}", self.text, self.line, self.column)
    }
}

/// A piece of the source: literal text with the trim markers applied, or an action's body.
pub(super) enum Item<'t> {
    Text(&'t str),
    Action { body: &'t str, id: usize },
}

pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Applies the trim markers around a piece of literal text.
pub(super) fn trim(text: &str, start: bool, end: bool) -> &str {
    let is_space = |c: char| c.is_ascii() && is_space(c as u8);
    let text = if start { text.trim_start_matches(is_space) } else { text };
    if end { text.trim_end_matches(is_space) } else { text }
}

pub(super) fn shorten(s: &str) -> String {
    if s.chars().count() <= 60 { s.to_string() } else { s.chars().take(57).chain("...".chars()).collect() }
}

/// Line and column (both from 1, the column in characters) of byte `offset` of `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Finds the end of the action whose body starts `s`: the first `}}` outside a quoted string.
///
/// Returns the body (without a right trim marker), whether there was one, and the bytes
/// consumed including the `}}`. `whole` is the text from the action's `{{` and `at` its
/// position, for messages.
pub(super) fn scan_action<'a>(
    s: &'a str,
    whole: &str,
    at: (usize, usize),
) -> Result<(&'a str, bool, usize), TemplateError> {
    let unclosed = || {
        let shown: String = whole.chars().take(40).collect();
        TemplateError(format!("unclosed action {shown:?} at line {}, column {}: add the closing }}}}", at.0, at.1))
    };
    let b = s.as_bytes();
    if s.starts_with("/*") {
        let end = s.find("*/").ok_or_else(unclosed)? + 2;
        return match &s[end..] {
            tail if tail.starts_with("}}") => Ok((&s[..end], false, end + 2)),
            tail if tail.len() > 3 && is_space(tail.as_bytes()[0]) && tail[1..].starts_with("-}}") => {
                Ok((&s[..end], true, end + 4))
            }
            _ => Err(TemplateError(format!(
                "comment in {:?} at line {}, column {} must end with */}}}}",
                shorten(whole),
                at.0,
                at.1
            ))),
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
