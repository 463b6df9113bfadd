//! Go's `fmt` verbs, flags and widths, as `printf` and the printing of values use them.

use super::*;

/// The flags, width and precision of one verb.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Flags {
    pub(super) wid: usize,
    pub(super) wid_present: bool,
    pub(super) prec: usize,
    pub(super) prec_present: bool,
    pub(super) minus: bool,
    pub(super) plus: bool,
    pub(super) sharp: bool,
    pub(super) space: bool,
    pub(super) zero: bool,
    /// `%+v` and `%#v`, which print differently rather than add a sign or a prefix.
    pub(super) plus_v: bool,
    pub(super) sharp_v: bool,
}

/// Go's `fmt` printer (`pp` and `fmt`) for the values a template has.
pub(super) struct Printer<'o> {
    pub(super) buf: &'o mut Vec<u8>,
    pub(super) f: Flags,
    pub(super) dialect: Dialect,
}

/// Go's `fmt` refuses widths and precisions above this.
pub(super) const MAX_WIDTH: usize = 1_000_000;

impl<'o> Printer<'o> {
    pub(super) fn new(buf: &'o mut Vec<u8>, dialect: Dialect) -> Printer<'o> {
        Printer { buf, f: Flags::default(), dialect }
    }

    pub(super) fn write_padding(&mut self, n: usize) {
        let pad = if self.f.zero && !self.f.minus { b'0' } else { b' ' };
        self.buf.resize(self.buf.len() + n, pad);
    }

    /// Writes `b` padded to the width, on the left unless `-`.
    pub(super) fn pad(&mut self, b: &[u8]) {
        if !self.f.wid_present || self.f.wid == 0 {
            self.buf.extend_from_slice(b);
            return;
        }
        let width = self.f.wid.saturating_sub(rune_count(b));
        if self.f.minus {
            self.buf.extend_from_slice(b);
            self.write_padding(width);
        } else {
            self.write_padding(width);
            self.buf.extend_from_slice(b);
        }
    }

    /// The first `prec` characters of `s`, if a precision is given.
    pub(super) fn truncate<'s>(&self, s: &'s [u8]) -> &'s [u8] {
        if !self.f.prec_present {
            return s;
        }
        let (mut i, mut n) = (0, self.f.prec);
        while i < s.len() {
            if n == 0 {
                return &s[..i];
            }
            n -= 1;
            i += decode_rune(&s[i..]).1;
        }
        s
    }

    pub(super) fn fmt_s(&mut self, s: &[u8]) {
        let s = self.truncate(s);
        self.pad(s);
    }

    /// `%x` of a string: its bytes in hexadecimal.
    pub(super) fn fmt_sx(&mut self, s: &[u8], upper: bool) {
        let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
        let x = if upper { b'X' } else { b'x' };
        let length = if self.f.prec_present { s.len().min(self.f.prec) } else { s.len() };
        let mut width = 2 * length;
        if width == 0 {
            if self.f.wid_present {
                self.write_padding(self.f.wid);
            }
            return;
        }
        if self.f.space {
            if self.f.sharp {
                width *= 2;
            }
            width += length - 1;
        } else if self.f.sharp {
            width += 2;
        }
        if self.f.wid_present && self.f.wid > width && !self.f.minus {
            self.write_padding(self.f.wid - width);
        }
        if self.f.sharp {
            self.buf.extend_from_slice(&[b'0', x]);
        }
        for (i, &c) in s[..length].iter().enumerate() {
            if self.f.space && i > 0 {
                self.buf.push(b' ');
                if self.f.sharp {
                    self.buf.extend_from_slice(&[b'0', x]);
                }
            }
            self.buf.extend_from_slice(&[digits[usize::from(c >> 4)], digits[usize::from(c & 15)]]);
        }
        if self.f.wid_present && self.f.wid > width && self.f.minus {
            self.write_padding(self.f.wid - width);
        }
    }

    /// `%q` of a string.
    pub(super) fn fmt_q(&mut self, s: &[u8]) {
        let s = self.truncate(s);
        let mut quoted = Vec::with_capacity(s.len() + 2);
        if self.f.sharp && can_backquote(s) {
            quoted.push(b'`');
            quoted.extend_from_slice(s);
            quoted.push(b'`');
        } else {
            quote(s, b'"', self.f.plus, &mut quoted);
        }
        self.pad(&quoted);
    }

    /// Go's `fmtInteger`.
    pub(super) fn fmt_integer(&mut self, u: u64, base: u64, signed: bool, verb: char, upper: bool) {
        let digits: &[u8; 17] = if upper { b"0123456789ABCDEFX" } else { b"0123456789abcdefx" };
        let negative = signed && (u as i64) < 0;
        let mut u = if negative { u.wrapping_neg() } else { u };
        let mut prec = 0;
        if self.f.prec_present {
            prec = self.f.prec;
            if prec == 0 && u == 0 {
                let zero = std::mem::replace(&mut self.f.zero, false);
                self.write_padding(self.f.wid);
                self.f.zero = zero;
                return;
            }
        } else if self.f.zero && !self.f.minus && self.f.wid_present {
            prec = self.f.wid;
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        // Built backwards.
        let mut rev = Vec::with_capacity(24);
        loop {
            rev.push(digits[(u % base) as usize]);
            u /= base;
            if u == 0 {
                break;
            }
        }
        while rev.len() < prec {
            rev.push(b'0');
        }
        if self.f.sharp {
            match base {
                2 => rev.extend_from_slice(b"b0"),
                8 if rev.last() != Some(&b'0') => rev.push(b'0'),
                16 => rev.extend_from_slice(&[digits[16], b'0']),
                _ => {}
            }
        }
        if verb == 'O' {
            rev.extend_from_slice(b"o0");
        }
        if negative {
            rev.push(b'-');
        } else if self.f.plus {
            rev.push(b'+');
        } else if self.f.space {
            rev.push(b' ');
        }
        rev.reverse();
        let zero = std::mem::replace(&mut self.f.zero, false);
        self.pad(&rev);
        self.f.zero = zero;
    }

    /// `%U`.
    pub(super) fn fmt_unicode(&mut self, u: u64) {
        let prec = if self.f.prec_present && self.f.prec > 4 { self.f.prec } else { 4 };
        let mut s = format!("U+{u:0prec$X}").into_bytes();
        if self.f.sharp
            && let Some(c) = u32::try_from(u).ok().and_then(char::from_u32).filter(|&c| is_print(c))
        {
            s.extend_from_slice(format!(" '{c}'").as_bytes());
        }
        let zero = std::mem::replace(&mut self.f.zero, false);
        self.pad(&s);
        self.f.zero = zero;
    }

    pub(super) fn rune(u: u64) -> char {
        u32::try_from(u).ok().and_then(char::from_u32).unwrap_or('\u{fffd}')
    }

    pub(super) fn fmt_int(&mut self, v: &Value<'_>, n: i64, signed: bool, verb: char) {
        let u = n as u64;
        match verb {
            'v' if self.f.sharp_v && !signed => {
                let sharp = std::mem::replace(&mut self.f.sharp, true);
                self.fmt_integer(u, 16, false, 'v', false);
                self.f.sharp = sharp;
            }
            'v' | 'd' => self.fmt_integer(u, 10, signed, verb, false),
            'b' => self.fmt_integer(u, 2, signed, verb, false),
            'o' | 'O' => self.fmt_integer(u, 8, signed, verb, false),
            'x' => self.fmt_integer(u, 16, signed, verb, false),
            'X' => self.fmt_integer(u, 16, signed, verb, true),
            'c' => {
                let mut b = [0; 4];
                let s = Self::rune(u).encode_utf8(&mut b);
                self.pad(s.as_bytes());
            }
            'q' => {
                let mut quoted = Vec::new();
                quote_rune(Self::rune(u), self.f.plus, &mut quoted);
                self.pad(&quoted);
            }
            'U' => self.fmt_unicode(u),
            _ => self.bad_verb(verb, v),
        }
    }

    pub(super) fn fmt_string(&mut self, s: &[u8], verb: char, v: &Value<'_>) {
        match verb {
            'v' if self.f.sharp_v => self.fmt_q(s),
            'v' | 's' => self.fmt_s(s),
            'x' => self.fmt_sx(s, false),
            'X' => self.fmt_sx(s, true),
            'q' => self.fmt_q(s),
            _ => self.bad_verb(verb, v),
        }
    }

    /// `%!d(string=hello)`.
    pub(super) fn bad_verb(&mut self, verb: char, v: &Value<'_>) {
        self.buf.extend_from_slice(b"%!");
        self.buf.extend_from_slice(verb.encode_utf8(&mut [0; 4]).as_bytes());
        self.buf.push(b'(');
        if matches!(v, Value::Missing) {
            self.buf.extend_from_slice(b"<nil>");
        } else {
            self.buf.extend_from_slice(type_name(v, self.dialect).as_bytes());
            self.buf.push(b'=');
            // Cannot fail: only printable values get here.
            let _ = self.arg(v, 'v');
        }
        self.buf.push(b')');
    }

    /// Go's `printArg`: one operand with one verb.
    pub(super) fn arg(&mut self, v: &Value<'_>, verb: char) -> Result<(), String> {
        match (v, verb) {
            (Value::Missing, 'T' | 'v') => self.pad(b"<nil>"),
            (Value::Missing, _) => self.bad_verb(verb, v),
            (_, 'T') => self.fmt_s(type_name(v, self.dialect).as_bytes()),
            // Addresses are not reproducible; nothing prints them usefully in a log line.
            (_, 'p') => self.bad_verb(verb, v),
            (Value::Bool(b), 't' | 'v') => self.pad(if *b { b"true" } else { b"false" }),
            (Value::Bool(_), _) => self.bad_verb(verb, v),
            (Value::Int(n, IntTy::Duration), 'v' | 's' | 'x' | 'X' | 'q') if !self.f.sharp_v => {
                self.fmt_string(duration_string(*n).as_bytes(), verb, v)
            }
            (Value::Int(n, t), _) => self.fmt_int(v, *n, *t != IntTy::Uint8, verb),
            (Value::Float(f), _) => self.fmt_float(*f, verb, v),
            (Value::Str(s), _) => self.fmt_string(s, verb, v),
            (Value::Time(ns), _) => {
                if self.f.sharp_v {
                    self.fmt_s(go_syntax_time(*ns).as_bytes());
                } else {
                    let mut s = Vec::new();
                    time_string(*ns, &mut s);
                    if matches!(verb, 'v' | 's' | 'x' | 'X' | 'q') {
                        self.fmt_string(&s, verb, v);
                    } else {
                        // Go prints the struct's private fields, which luaspout does not have.
                        self.buf.extend_from_slice(format!("%!{verb}(time.Time=").as_bytes());
                        self.buf.extend_from_slice(&s);
                        self.buf.push(b')');
                    }
                }
            }
            (Value::Map(m), _) => {
                self.buf.extend_from_slice(if self.f.sharp_v { b"map[string]string{" } else { b"map[" });
                for (i, (k, val)) in m.iter().enumerate() {
                    if i > 0 {
                        self.buf.extend_from_slice(if self.f.sharp_v { b", " } else { b" " });
                    }
                    let (k, val) = (bytes(k), bytes(val));
                    self.arg(&k, verb)?;
                    self.buf.push(b':');
                    self.arg(&val, verb)?;
                }
                self.buf.push(if self.f.sharp_v { b'}' } else { b']' });
            }
            (Value::List(items, nil), _) => {
                if self.f.sharp_v {
                    self.buf.extend_from_slice(b"[]string");
                    if *nil {
                        self.buf.extend_from_slice(b"(nil)");
                        return Ok(());
                    }
                    self.buf.push(b'{');
                } else {
                    self.buf.push(b'[');
                }
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.buf.extend_from_slice(if self.f.sharp_v { b", " } else { b" " });
                    }
                    self.arg(&Value::Str(Cow::Borrowed(item)), verb)?;
                }
                self.buf.push(if self.f.sharp_v { b'}' } else { b']' });
            }
            // `&{…}`: a pointer at the top of `fmt`'s printing; `%#v` prints as `%v`.
            (Value::Root(msg), _) => {
                let sharp_v = std::mem::take(&mut self.f.sharp_v);
                self.buf.push(b'&');
                let done = self.message(msg, verb);
                self.f.sharp_v = sharp_v;
                done?;
            }
            (Value::GoItems(..), _) => {
                let sharp_v = std::mem::take(&mut self.f.sharp_v);
                let done = go_slice(v).map_or(Ok(()), |(items, e)| self.go_elems(items, e, verb));
                self.f.sharp_v = sharp_v;
                done?;
            }
            (Value::Container(_) | Value::Config(_) | Value::State(_) | Value::Go(..), _) => {
                let sharp_v = std::mem::take(&mut self.f.sharp_v);
                let done = as_go(v).map_or(Ok(()), |(node, id)| self.go_value(node, id, verb, false));
                self.f.sharp_v = sharp_v;
                done?;
            }
        }
        Ok(())
    }

    /// Go's `Sprint` (spaces between operands when neither is a string) or `Sprintln` (spaces
    /// always, and a newline).
    pub(super) fn print(&mut self, vals: &[Value<'_>], ln: bool) -> Result<(), String> {
        let mut prev_string = false;
        for (i, v) in vals.iter().enumerate() {
            let is_string = matches!(v, Value::Str(_));
            if i > 0 && (ln || (!is_string && !prev_string)) {
                self.buf.push(b' ');
            }
            self.f = Flags::default();
            self.arg(v, 'v')?;
            prev_string = is_string;
        }
        if ln {
            self.buf.push(b'\n');
        }
        Ok(())
    }

    /// Go's `Sprintf`, with its `%!verb(…)` complaints for missing, extra and mismatched
    /// operands.
    pub(super) fn printf(&mut self, format: &[u8], args: &[Value<'_>]) -> Result<(), String> {
        let end = format.len();
        let mut arg_num = 0;
        let mut reordered = false;
        let mut i = 0;
        while i < end {
            let mut good_arg_num = true;
            let last = i;
            while i < end && format[i] != b'%' {
                i += 1;
            }
            self.buf.extend_from_slice(&format[last..i]);
            if i >= end {
                break;
            }
            i += 1;
            self.f = Flags::default();
            while i < end {
                match format[i] {
                    b'#' => self.f.sharp = true,
                    b'0' => self.f.zero = true,
                    b'+' => self.f.plus = true,
                    b'-' => self.f.minus = true,
                    b' ' => self.f.space = true,
                    _ => break,
                }
                i += 1;
            }
            let mut after_index;
            (arg_num, i, after_index) = arg_number(arg_num, format, i, args.len(), &mut reordered, &mut good_arg_num);
            if i < end && format[i] == b'*' {
                i += 1;
                let (w, ok, next) = int_from_arg(args, arg_num);
                arg_num = next;
                self.f.wid_present = ok;
                if !ok {
                    self.buf.extend_from_slice(b"%!(BADWIDTH)");
                }
                if w < 0 {
                    self.f.minus = true;
                    self.f.zero = false;
                }
                self.f.wid = w.unsigned_abs();
                after_index = false;
            } else {
                (self.f.wid, self.f.wid_present, i) = parse_num(format, i, end);
                if after_index && self.f.wid_present {
                    good_arg_num = false;
                }
            }
            if i + 1 < end && format[i] == b'.' {
                i += 1;
                if after_index {
                    good_arg_num = false;
                }
                (arg_num, i, after_index) =
                    arg_number(arg_num, format, i, args.len(), &mut reordered, &mut good_arg_num);
                if i < end && format[i] == b'*' {
                    i += 1;
                    let (p, ok, next) = int_from_arg(args, arg_num);
                    arg_num = next;
                    self.f.prec = p.max(0) as usize;
                    self.f.prec_present = ok && p >= 0;
                    if !self.f.prec_present {
                        self.buf.extend_from_slice(b"%!(BADPREC)");
                    }
                    after_index = false;
                } else {
                    (self.f.prec, self.f.prec_present, i) = parse_num(format, i, end);
                    if !self.f.prec_present {
                        self.f.prec = 0;
                        self.f.prec_present = true;
                    }
                }
            }
            if !after_index {
                (arg_num, i, _) = arg_number(arg_num, format, i, args.len(), &mut reordered, &mut good_arg_num);
            }
            if i >= end {
                self.buf.extend_from_slice(b"%!(NOVERB)");
                break;
            }
            let (verb, size) = decode_rune(&format[i..]);
            let verb = verb.unwrap_or('\u{fffd}');
            i += size;
            let bang = |buf: &mut Vec<u8>, what: &[u8]| {
                buf.extend_from_slice(b"%!");
                buf.extend_from_slice(verb.encode_utf8(&mut [0; 4]).as_bytes());
                buf.extend_from_slice(what);
            };
            match verb {
                '%' => self.buf.push(b'%'),
                _ if !good_arg_num => bang(self.buf, b"(BADINDEX)"),
                _ if arg_num >= args.len() => bang(self.buf, b"(MISSING)"),
                _ => {
                    if matches!(verb, 'v' | 'w') {
                        self.f.sharp_v = std::mem::take(&mut self.f.sharp);
                        self.f.plus_v = std::mem::take(&mut self.f.plus);
                    }
                    // `%w` only means something to `fmt.Errorf`.
                    self.arg(&args[arg_num], verb)?;
                    arg_num += 1;
                }
            }
        }
        if !reordered && arg_num < args.len() {
            self.f = Flags::default();
            self.buf.extend_from_slice(b"%!(EXTRA ");
            for (i, v) in args[arg_num..].iter().enumerate() {
                if i > 0 {
                    self.buf.extend_from_slice(b", ");
                }
                if matches!(v, Value::Missing) {
                    self.buf.extend_from_slice(b"<nil>");
                } else {
                    self.buf.extend_from_slice(type_name(v, self.dialect).as_bytes());
                    self.buf.push(b'=');
                    self.arg(v, 'v')?;
                }
            }
            self.buf.push(b')');
        }
        Ok(())
    }
}

/// Go's `parsenum`: the number at `format[start..end]`, whether there was one, and where it
/// ends (`end` if it is absurdly large).
pub(super) fn parse_num(format: &[u8], start: usize, end: usize) -> (usize, bool, usize) {
    let (mut num, mut isnum, mut i) = (0usize, false, start);
    while i < end && format[i].is_ascii_digit() {
        if num > MAX_WIDTH {
            return (0, false, end);
        }
        num = num * 10 + usize::from(format[i] - b'0');
        isnum = true;
        i += 1;
    }
    (num, isnum, i)
}

/// Go's `argNumber`: an explicit `[n]` operand index at `format[i]`, if any.
pub(super) fn arg_number(
    arg_num: usize,
    format: &[u8],
    i: usize,
    num_args: usize,
    reordered: &mut bool,
    good_arg_num: &mut bool,
) -> (usize, usize, bool) {
    if format.len() <= i || format[i] != b'[' {
        return (arg_num, i, false);
    }
    *reordered = true;
    let rest = &format[i..];
    let (index, width, ok) = match rest.iter().position(|&c| c == b']') {
        Some(close) if rest.len() >= 3 => {
            let (n, isnum, end) = parse_num(rest, 1, close);
            if !isnum || end != close { (0, close + 1, false) } else { (n as isize - 1, close + 1, true) }
        }
        _ => (0, 1, false),
    };
    if ok && index >= 0 && (index as usize) < num_args {
        return (index as usize, i + width, true);
    }
    *good_arg_num = false;
    (arg_num, i + width, ok)
}

/// Go's `intFromArg`: a `*` width or precision.
pub(super) fn int_from_arg(args: &[Value<'_>], arg_num: usize) -> (isize, bool, usize) {
    let Some(v) = args.get(arg_num) else { return (0, false, arg_num) };
    match v {
        Value::Int(n, _) if n.unsigned_abs() <= MAX_WIDTH as u64 => (*n as isize, true, arg_num + 1),
        _ => (0, false, arg_num + 1),
    }
}

/// `time.Time.GoString` of a UTC time.
pub(super) fn go_syntax_time(ns: i64) -> String {
    let t = civil(ns);
    let month = MONTHS[(t.month - 1) as usize];
    format!(
        "time.Date({}, time.{month}, {}, {}, {}, {}, {}, time.UTC)",
        t.year, t.day, t.hour, t.minute, t.second, t.nanos
    )
}

/// The character at the start of `s` and its length, as Go's `utf8.DecodeRune`: `None` (Go's
/// `RuneError`) for each byte of invalid UTF-8.
pub(super) fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
    match s.first() {
        None => (None, 0),
        Some(&b) if b < 0x80 => (Some(char::from(b)), 1),
        Some(_) => {
            let width = utf8_width(s);
            if width == 1 {
                return (None, 1);
            }
            (std::str::from_utf8(&s[..width]).ok().and_then(|t| t.chars().next()), width)
        }
    }
}

/// Go's `utf8.RuneCount`.
pub(super) fn rune_count(s: &[u8]) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < s.len() {
        i += decode_rune(&s[i..]).1;
        n += 1;
    }
    n
}

/// Go's `strconv.IsPrint`, without Unicode's tables: letters, marks, numbers, punctuation,
/// symbols and the ASCII space. Controls, format characters, separators, surrogates, private
/// use and non-characters are not printable; unassigned code points are taken as printable.
pub(super) fn is_print(c: char) -> bool {
    let u = u32::from(c);
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    !matches!(u,
        0x80..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xe000..=0xf8ff
        | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
        && u & 0xfffe != 0xfffe
        && !(0xfdd0..=0xfdef).contains(&u)
}

/// Go's `strconv.CanBackquote`.
pub(super) fn can_backquote(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let (r, width) = decode_rune(&s[i..]);
        match r {
            None => return false,
            Some('\u{feff}' | '`' | '\u{7f}') => return false,
            Some(c) if c < ' ' && c != '\t' => return false,
            _ => {}
        }
        i += width;
    }
    true
}

/// Go's `strconv.Quote` (or `QuoteToASCII`), appended to `out`.
pub(super) fn quote(s: &[u8], q: u8, ascii: bool, out: &mut Vec<u8>) {
    out.push(q);
    let mut i = 0;
    while i < s.len() {
        match decode_rune(&s[i..]) {
            (None, _) => {
                out.extend_from_slice(format!("\\x{:02x}", s[i]).as_bytes());
                i += 1;
            }
            (Some(c), width) => {
                escape_rune(c, q, ascii, out);
                i += width;
            }
        }
    }
    out.push(q);
}

/// Go's `strconv.QuoteRune` (or `QuoteRuneToASCII`).
pub(super) fn quote_rune(c: char, ascii: bool, out: &mut Vec<u8>) {
    out.push(b'\'');
    escape_rune(c, b'\'', ascii, out);
    out.push(b'\'');
}

/// Go's `appendEscapedRune`.
pub(super) fn escape_rune(c: char, q: u8, ascii: bool, out: &mut Vec<u8>) {
    if c == char::from(q) || c == '\\' {
        out.extend_from_slice(&[b'\\', c as u8]);
        return;
    }
    if (ascii && c.is_ascii() && is_print(c)) || (!ascii && is_print(c)) {
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        return;
    }
    let escaped = match c {
        '\u{7}' => "\\a".to_string(),
        '\u{8}' => "\\b".to_string(),
        '\u{c}' => "\\f".to_string(),
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\u{b}' => "\\v".to_string(),
        c if c < ' ' || c == '\u{7f}' => format!("\\x{:02x}", u32::from(c)),
        c if u32::from(c) < 0x10000 => format!("\\u{:04x}", u32::from(c)),
        c => format!("\\U{:08x}", u32::from(c)),
    };
    out.extend_from_slice(escaped.as_bytes());
}
