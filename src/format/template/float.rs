//! Go's formatting of `float64` (`strconv.FormatFloat` under `fmt`'s verbs, and
//! `encoding/json`'s form), for floating-point constants.

use super::*;

/// The decimal digits of `|f|` (no leading zeros, at least one) and the position of the
/// decimal point: `|f| = 0.d1d2… × 10^dp`. `sig` rounds to that many significant digits;
/// `None` is the shortest that reads back as `f`.
fn digits(f: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let s = match sig {
        Some(n) => format!("{:.*e}", n.saturating_sub(1), f.abs()),
        None => format!("{:e}", f.abs()),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    if f == 0.0 {
        return (b"0".to_vec(), 1);
    }
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    (d, exp + 1)
}

/// Go's `fmtE`: `d.ddde±dd` with `prec` digits after the point.
fn fmt_e(d: &[u8], dp: i32, prec: usize, e: u8, out: &mut Vec<u8>) {
    out.push(d[0]);
    if prec > 0 {
        out.push(b'.');
        for i in 1..=prec {
            out.push(*d.get(i).unwrap_or(&b'0'));
        }
    }
    out.push(e);
    let exp = if d == b"0" { 0 } else { dp - 1 };
    out.push(if exp < 0 { b'-' } else { b'+' });
    let exp = exp.unsigned_abs();
    if exp < 10 {
        out.push(b'0');
    }
    out.extend_from_slice(exp.to_string().as_bytes());
}

/// Go's `fmtF`: `ddd.ddd` with `prec` digits after the point.
fn fmt_f(d: &[u8], dp: i32, prec: usize, out: &mut Vec<u8>) {
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(*d.get(i).unwrap_or(&b'0'));
        }
    } else {
        out.push(b'0');
    }
    if prec > 0 {
        out.push(b'.');
        for i in 1..=prec as i32 {
            let j = dp + i - 1;
            out.push(if j >= 0 { *d.get(j as usize).unwrap_or(&b'0') } else { b'0' });
        }
    }
}

/// `strconv.AppendFloat(f, verb, prec)` of `|f|` for verbs `e E f g G` (`prec` -1: shortest).
fn format_abs(f: f64, verb: char, prec: i32, out: &mut Vec<u8>) {
    let shortest = prec < 0;
    match verb {
        'e' | 'E' => {
            let e = if verb == 'e' { b'e' } else { b'E' };
            let (d, dp) = digits(f, (!shortest).then(|| prec as usize + 1));
            let prec = if shortest { d.len() - 1 } else { prec as usize };
            fmt_e(&d, dp, prec, e, out);
        }
        'f' => {
            if shortest {
                let (d, dp) = digits(f, None);
                fmt_f(&d, dp, (d.len() as i32 - dp).max(0) as usize, out);
            } else {
                out.extend_from_slice(format!("{:.*}", prec as usize, f.abs()).as_bytes());
            }
        }
        _ => {
            let e = if verb == 'G' { b'E' } else { b'e' };
            let p = if shortest { 0 } else { prec.max(1) as usize };
            let (d, dp) = digits(f, (!shortest).then_some(p));
            let nd = d.len() as i32;
            let mut eprec = if shortest { 6 } else { p as i32 };
            if !shortest && eprec > nd && nd >= dp {
                eprec = nd;
            }
            let exp = dp - 1;
            let prec = if shortest { nd } else { p as i32 };
            if exp < -4 || exp >= eprec {
                fmt_e(&d, dp, (prec.min(nd) - 1).max(0) as usize, e, out);
            } else {
                let prec = if prec > dp { nd } else { prec };
                fmt_f(&d, dp, (prec - dp).max(0) as usize, out);
            }
        }
    }
}

impl Printer<'_> {
    /// Go's `fmtFloat` for a `float64` operand.
    pub(super) fn fmt_float(&mut self, f: f64, verb: char, v: &Value<'_>) {
        let (verb, default_prec) = match verb {
            'v' => ('g', -1),
            'g' | 'G' => (verb, -1),
            'e' | 'E' | 'f' => (verb, 6),
            'F' => ('f', 6),
            _ => return self.bad_verb(verb, v),
        };
        let prec = if self.f.prec_present { self.f.prec as i32 } else { default_prec };
        let mut num = vec![if f.is_sign_negative() && !f.is_nan() { b'-' } else { b'+' }];
        if f.is_nan() {
            num.extend_from_slice(b"NaN");
        } else if f.is_infinite() {
            num.extend_from_slice(b"Inf");
        } else {
            format_abs(f, verb, prec, &mut num);
        }
        if self.f.space && num[0] == b'+' && !self.f.plus {
            num[0] = b' ';
        }
        if !f.is_finite() {
            let zero = std::mem::replace(&mut self.f.zero, false);
            let skip = usize::from(f.is_nan() && !self.f.space && !self.f.plus);
            self.pad(&num[skip..]);
            self.f.zero = zero;
            return;
        }
        if self.f.plus || num[0] != b'+' {
            if self.f.zero && !self.f.minus && self.f.wid_present && self.f.wid > num.len() {
                self.buf.push(num[0]);
                let width = self.f.wid - num.len();
                self.write_padding(width);
                self.buf.extend_from_slice(&num[1..]);
                return;
            }
            self.pad(&num);
            return;
        }
        self.pad(&num[1..]);
    }
}

/// A `float64` as Go's JSON encoder writes it: shortest, exponent only below 1e-6 or from
/// 1e21, and `null` for NaN and infinities (logspout's `toJSON` on an encoding error).
pub(super) fn json_float(f: f64, out: &mut Vec<u8>) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if f.is_sign_negative() && f != 0.0 {
        out.push(b'-');
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let start = out.len();
        format_abs(f, 'e', -1, out);
        // Go writes e-7, not e-07.
        let n = out.len();
        if n - start >= 4 && out[n - 4] == b'e' && out[n - 3] == b'-' && out[n - 2] == b'0' {
            out.remove(n - 2);
        }
    } else {
        format_abs(f, 'f', -1, out);
    }
}
