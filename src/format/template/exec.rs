//! Rendering: walking the tree for one message.

use super::*;

/// A value while rendering. Strings are bytes, as Go's are; `Missing` is Go's invalid value
/// (a missing map key reached through a field, `nil`), which prints `<no value>` in an action
/// and `<nil>` through `fmt`.
#[derive(Debug, Clone)]
pub(super) enum Value<'a> {
    Missing,
    Str(Cow<'a, [u8]>),
    Int(i64, IntTy),
    Float(f64),
    Bool(bool),
    /// Nanoseconds since the epoch, in UTC.
    Time(i64),
    Map(&'a BTreeMap<String, String>),
    /// A `[]string`, and whether it is Go's nil slice (`ContainerNameSplitN` with a count of 0).
    List(Vec<Cow<'a, [u8]>>, bool),
    /// The message, and the structs inside it.
    Root(&'a Message),
    Container(&'a Container),
    Config(&'a Container),
    State(&'a Container),
    /// Any other value of the container's inspect (a struct, a pointer, a map, a slice of
    /// structs), with its go-dockerclient type; `None` is Go's zero value (a nil pointer…).
    Go(Option<&'a serde_json::Value>, TyId),
    /// Part of an inspect slice, as `slice` cuts it, with the slice's type.
    GoItems(&'a [serde_json::Value], TyId),
}

/// What ends the walk of a list of nodes.
pub(super) enum Flow {
    Next,
    Break,
    Continue,
}

/// The state of one rendering.
pub(super) struct Exec<'a> {
    pub(super) t: &'a Template,
    pub(super) msg: &'a Message,
    pub(super) vars: Vec<Value<'a>>,
    /// `$`: the message, or the value a `{{template}}` was called with.
    pub(super) root: Value<'a>,
    /// How deeply the running `{{template}}` calls nest: one level each, plus the nesting of
    /// blocks in their bodies.
    pub(super) depth: usize,
}

/// How deeply `{{template}}` calls may nest (a template that calls itself stops there), as
/// counted in [`Exec::depth`]; blocks nest no deeper ([`MAX_NESTING`]).
pub(super) const MAX_TEMPLATE_DEPTH: usize = 100;

pub(super) fn bytes(s: &str) -> Value<'_> {
    Value::Str(Cow::Borrowed(s.as_bytes()))
}

pub(super) fn owned<'a>(s: Vec<u8>) -> Value<'a> {
    Value::Str(Cow::Owned(s))
}

impl<'a> Exec<'a> {
    pub(super) fn located(&self, at: usize, e: String) -> String {
        let action = &self.t.actions[at];
        format!("executing {:?} at line {}, column {}: {e}", action.text, action.line, action.column)
    }

    pub(super) fn walk(&mut self, nodes: &'a [Node], dot: &Value<'a>, out: &mut Vec<u8>) -> Result<Flow, String> {
        for node in nodes {
            match node {
                Node::Text(text) => out.extend_from_slice(text),
                Node::Part(part) => render_part(part, self.msg, out),
                Node::Action { pipe, at } => {
                    let value = self.pipe(pipe, dot).map_err(|e| self.located(*at, e))?;
                    if pipe.decl.is_empty() {
                        print_value(&value, self.t.dialect, out).map_err(|e| self.located(*at, e))?;
                    }
                }
                Node::If { pipe, then, otherwise, at } | Node::With { pipe, then, otherwise, at } => {
                    let value = self.pipe(pipe, dot).map_err(|e| self.located(*at, e))?;
                    let flow = match (truth(&value), node) {
                        (true, Node::With { .. }) => self.walk(then, &value, out)?,
                        (true, _) => self.walk(then, dot, out)?,
                        (false, _) => self.walk(otherwise, dot, out)?,
                    };
                    if !matches!(flow, Flow::Next) {
                        return Ok(flow);
                    }
                }
                Node::Range { pipe, key, elem, body, otherwise, at } => {
                    let value = self.pipe(pipe, dot).map_err(|e| self.located(*at, e))?;
                    let ran = self.range(&value, (*key, *elem), body, *at, out)?;
                    // As in Go, a {{break}} in the else list ends nothing more, a {{continue}}
                    // continues the enclosing range.
                    if !ran && matches!(self.walk(otherwise, dot, out)?, Flow::Continue) {
                        return Ok(Flow::Continue);
                    }
                }
                Node::Template { index, pipe, at } => {
                    let value = match pipe {
                        Some(pipe) => self.pipe(pipe, dot).map_err(|e| self.located(*at, e))?,
                        None => Value::Missing,
                    };
                    let (body, nesting) = &self.t.defines[*index];
                    let cost = 1 + nesting;
                    if self.depth + cost > MAX_TEMPLATE_DEPTH {
                        let e = format!("exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})");
                        return Err(self.located(*at, e));
                    }
                    // The called template has variables of its own, and `$` is its dot.
                    let vars = self.vars.clone();
                    let root = std::mem::replace(&mut self.root, value.clone());
                    self.depth += cost;
                    let done = self.walk(body, &value, out);
                    self.depth -= cost;
                    self.root = root;
                    self.vars = vars;
                    done?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Next)
    }

    /// Runs `body` for each element of `value`, storing the key and the element in the `slots`
    /// of `$k, $v :=`; returns whether there was any element.
    pub(super) fn range(
        &mut self,
        value: &Value<'a>,
        (key, elem): (Option<usize>, Option<usize>),
        body: &'a [Node],
        at: usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        let mut items: Box<dyn Iterator<Item = (Value<'a>, Value<'a>)> + '_> = match value {
            Value::Map(m) => {
                let m: &'a BTreeMap<String, String> = m;
                Box::new(m.iter().map(|(k, v)| (bytes(k), bytes(v))))
            }
            Value::List(items, _) => Box::new(
                items.iter().enumerate().map(|(i, s)| (Value::Int(i as i64, IntTy::Int), Value::Str(s.clone()))),
            ),
            // Go 1.22's range over an integer.
            Value::Int(n, t) => Box::new((0..*n).map(|i| (Value::Int(i, *t), Value::Int(i, *t)))),
            Value::Go(node, id) if go_len(*node, *id).is_some() => {
                Box::new(go_items(*node, *id).unwrap_or_default().into_iter())
            }
            Value::GoItems(items, id) => {
                let e = match schema().ty(*id) {
                    GoTy::Slice(e) => e,
                    _ => *id,
                };
                Box::new(
                    items.iter().enumerate().map(move |(i, v)| (Value::Int(i as i64, IntTy::Int), load(Some(v), e))),
                )
            }
            Value::Missing => return Ok(false),
            other => {
                let e = format!("range can't iterate over {}", display(other, self.t.dialect));
                return Err(self.located(at, e));
            }
        };
        let mut ran = false;
        for (k, v) in &mut items {
            ran = true;
            if let Some(slot) = key {
                self.vars[slot] = k;
            }
            if let Some(slot) = elem {
                self.vars[slot] = v.clone();
            }
            if let Flow::Break = self.walk(body, &v, out)? {
                break;
            }
        }
        Ok(ran)
    }

    pub(super) fn pipe(&mut self, pipe: &'a Pipe, dot: &Value<'a>) -> Result<Value<'a>, String> {
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.cmd(cmd, dot, value)?);
        }
        let value = value.unwrap_or(Value::Missing);
        for &slot in &pipe.decl {
            self.vars[slot] = value.clone();
        }
        Ok(value)
    }

    /// Runs one command; `fin` is the value piped into it, its last argument.
    pub(super) fn cmd(&mut self, cmd: &'a Cmd, dot: &Value<'a>, fin: Option<Value<'a>>) -> Result<Value<'a>, String> {
        match cmd {
            Cmd::Call { func, args } => self.call(*func, args, fin, dot),
            Cmd::Chain { chain, args, layout } => {
                let mut value = self.operand(&chain.base, dot)?;
                let Some((last, init)) = chain.steps.split_last() else { return Ok(value) };
                for step in init {
                    value = self.member(value, step, Vec::new(), None)?;
                }
                let mut vals = Vec::with_capacity(args.len() + 1);
                for arg in args {
                    vals.push(self.operand(arg, dot)?);
                }
                vals.extend(fin);
                self.member(value, last, vals, layout.as_deref())
            }
            Cmd::Value(operand) => self.operand(operand, dot),
        }
    }

    pub(super) fn operand(&mut self, operand: &'a Operand, dot: &Value<'a>) -> Result<Value<'a>, String> {
        Ok(match operand {
            Operand::Dot => dot.clone(),
            Operand::Root => self.root.clone(),
            Operand::Var(slot) => self.vars[*slot].clone(),
            Operand::Str(s) => Value::Str(Cow::Borrowed(s)),
            Operand::Int(n) => Value::Int(*n, IntTy::Int),
            Operand::Float(f) => Value::Float(*f),
            Operand::Bool(b) => Value::Bool(*b),
            Operand::Nil => Value::Missing,
            Operand::Pipe(pipe) => self.pipe(pipe, dot)?,
            Operand::Chain(chain) => {
                let mut value = self.operand(&chain.base, dot)?;
                for step in &chain.steps {
                    value = self.member(value, step, Vec::new(), None)?;
                }
                value
            }
            Operand::Call(func) => self.call(*func, &[], None, dot)?,
        })
    }

    /// `recv.Name args…`: a field, a method or a map key, as Go's `evalField` resolves it.
    pub(super) fn member(
        &self,
        recv: Value<'a>,
        step: &'a Step,
        args: Vec<Value<'a>>,
        layout: Option<&'a [LayoutItem]>,
    ) -> Result<Value<'a>, String> {
        use Member as M;
        let msg = self.msg;
        let c: &'a Container = &msg.container;
        let dialect = self.t.dialect;
        let syslog = dialect == Dialect::Syslog;
        let name = &*step.name;
        match recv {
            // Go's evalField returns the invalid value for any field of the invalid value.
            Value::Missing => return Ok(Value::Missing),
            Value::Map(map) => {
                if !args.is_empty() {
                    return Err(format!("{name} is not a method but has arguments"));
                }
                return Ok(map.get(name).map_or(Value::Missing, |v| bytes(v)));
            }
            Value::Go(node, id) => {
                if !args.is_empty() {
                    return Err(format!("{name} has arguments but cannot be invoked as function"));
                }
                return go_member(node, id, name);
            }
            _ => {}
        }
        let cant = || format!("can't evaluate field {name} in type {}", type_name(&recv, dialect));
        // A field of the inspect that luaspout has no shortcut for.
        let inspect = || match as_go(&recv) {
            Some((node, id)) if args.is_empty() => go_member(node, id, name),
            _ => Err(cant()),
        };
        let Some(member) = step.member else { return inspect() };
        let field = |value: Value<'a>| {
            if args.is_empty() {
                Ok(value)
            } else {
                Err(format!("{name} has arguments but cannot be invoked as function"))
            }
        };
        let method = |want: usize| {
            if args.len() == want {
                Ok(())
            } else {
                Err(format!("wrong number of args for {name}: want {want} got {}", args.len()))
            }
        };
        match (&recv, member) {
            (Value::Root(_), M::Data) => field(Value::Str(Cow::Borrowed(&msg.data))),
            (Value::Root(_), M::Source) => field(bytes(msg.source.as_str())),
            (Value::Root(_), M::Time) => field(Value::Time(msg.time_ns)),
            (Value::Root(_), M::Container) => field(Value::Container(c)),
            (Value::Root(_), M::Priority) if syslog => {
                method(0).map(|_| Value::Int(priority(msg.source), IntTy::Priority))
            }
            (Value::Root(_), M::Timestamp) if syslog => {
                method(0)?;
                let mut s = Vec::new();
                timefmt::write_rfc3339_seconds(msg.time_ns, &mut s);
                Ok(owned(s))
            }
            (Value::Root(_), M::ContainerName) if syslog => method(0).map(|_| bytes(&c.name)),
            (Value::Root(_), M::ContainerNameSplitN) if syslog => {
                method(2)?;
                let sep = want_str(&args[0], dialect)?;
                let n = want_int(&args[1], dialect)?;
                let parts = split_n(c.name.as_bytes(), sep, n).into_iter().map(Cow::Borrowed).collect();
                Ok(Value::List(parts, n == 0))
            }
            (Value::Root(_), M::Hostname) if syslog => method(0).map(|_| bytes(crate::format::os_hostname())),
            (Value::Container(_), M::Id) => field(bytes(&c.id)),
            (Value::Container(_), M::Name) => field(owned(format!("/{}", c.name).into_bytes())),
            (Value::Container(_), M::Image) => field(bytes(&c.image_id)),
            (Value::Container(_), M::Config) => field(Value::Config(c)),
            (Value::Container(_), M::State) => field(Value::State(c)),
            (Value::Config(_), M::Hostname) => field(bytes(&c.hostname)),
            (Value::Config(_), M::Image) => field(bytes(&c.image)),
            (Value::Config(_), M::Labels) => field(Value::Map(&c.labels)),
            (Value::Config(_), M::Env) => {
                let env = c.env.iter().map(|(k, v)| Cow::Owned(format!("{k}={v}").into_bytes())).collect();
                field(Value::List(env, false))
            }
            (Value::Config(_), M::Tty) => field(Value::Bool(c.tty)),
            (Value::State(_), M::Pid) => field(Value::Int(c.pid, IntTy::Int)),
            (Value::Time(ns), M::Format) => {
                method(1)?;
                let mut s = Vec::new();
                match layout {
                    Some(layout) => format_time(layout, *ns, &mut s),
                    None => format_time(&compile_layout(want_str(&args[0], dialect)?), *ns, &mut s),
                }
                Ok(owned(s))
            }
            (Value::Time(ns), M::Unix) => method(0).map(|_| Value::Int(unix_in(*ns, 1_000_000_000), IntTy::Int64)),
            (Value::Time(ns), M::UnixNano) => method(0).map(|_| Value::Int(unix_in(*ns, 1), IntTy::Int64)),
            (Value::Time(ns), M::UnixMilli) => method(0).map(|_| Value::Int(unix_in(*ns, 1_000_000), IntTy::Int64)),
            (Value::Time(ns), M::UnixMicro) => method(0).map(|_| Value::Int(unix_in(*ns, 1_000), IntTy::Int64)),
            (Value::Time(ns), M::Utc) => method(0).map(|_| Value::Time(*ns)),
            (Value::State(c), M::String) => method(0).map(|_| owned(state_string(c, timefmt::now_ns()).into_bytes())),
            (Value::State(c), M::StateString) => method(0).map(|_| bytes(state_word(c))),
            (Value::Time(ns), M::String) => {
                method(0)?;
                let mut s = Vec::new();
                time_string(*ns, &mut s);
                Ok(owned(s))
            }
            _ => inspect(),
        }
    }

    /// Calls a function. `and` and `or` evaluate their arguments only as far as needed.
    pub(super) fn call(
        &mut self,
        func: Func,
        args: &'a [Operand],
        fin: Option<Value<'a>>,
        dot: &Value<'a>,
    ) -> Result<Value<'a>, String> {
        if matches!(func, Func::And | Func::Or) {
            let or = func == Func::Or;
            let mut value = Value::Missing;
            for arg in args {
                value = self.operand(arg, dot)?;
                if truth(&value) == or {
                    return Ok(value);
                }
            }
            return Ok(fin.unwrap_or(value));
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for arg in args {
            vals.push(self.operand(arg, dot)?);
        }
        vals.extend(fin);
        let (min, max) = func.arity();
        if vals.len() < min || max.is_some_and(|max| vals.len() > max) {
            return Err(format!("wrong number of args for {}: got {}", func.name(), vals.len()));
        }
        let dialect = self.t.dialect;
        let calling = |e: String| format!("error calling {}: {e}", func.name());
        let text = |out: Vec<u8>| Ok(owned(out));
        match func {
            Func::And | Func::Or => unreachable!("handled above"),
            Func::Not => Ok(Value::Bool(!truth(&vals[0]))),
            Func::Eq => eq(&vals[0], &vals[1..], dialect).map(Value::Bool).map_err(calling),
            Func::Ne => eq(&vals[0], &vals[1..], dialect).map(|b| Value::Bool(!b)).map_err(calling),
            Func::Lt => lt(&vals[0], &vals[1], dialect).map(Value::Bool).map_err(calling),
            Func::Le => le(&vals[0], &vals[1], dialect).map(Value::Bool).map_err(calling),
            Func::Gt => le(&vals[0], &vals[1], dialect).map(|b| Value::Bool(!b)).map_err(calling),
            Func::Ge => lt(&vals[0], &vals[1], dialect).map(|b| Value::Bool(!b)).map_err(calling),
            Func::Len => length(&vals[0], dialect).map_err(calling),
            Func::Index => {
                let mut vals = vals.into_iter();
                let item = vals.next().unwrap_or(Value::Missing);
                index(item, vals, dialect).map_err(calling)
            }
            Func::Slice => {
                let mut vals = vals.into_iter();
                let item = vals.next().unwrap_or(Value::Missing);
                slice(item, vals.collect(), dialect).map_err(calling)
            }
            Func::Printf => {
                let format = want_str(&vals[0], dialect)?;
                let mut out = Vec::new();
                Printer::new(&mut out, dialect).printf(format, &vals[1..])?;
                text(out)
            }
            Func::Print | Func::Println => {
                let mut out = Vec::new();
                Printer::new(&mut out, dialect).print(&vals, func == Func::Println)?;
                text(out)
            }
            Func::Html | Func::Js | Func::UrlQuery => {
                let s = eval_args(&vals, dialect)?;
                let mut out = Vec::new();
                match func {
                    Func::Html => html_escape(&s, &mut out),
                    Func::Js => js_escape(&s, &mut out),
                    _ => query_escape(&s, &mut out),
                }
                text(out)
            }
            Func::ToJson => {
                let mut out = Vec::new();
                write_json(&vals[0], &mut out);
                text(out)
            }
        }
    }
}

/// Go's `isTrue`: the zero value of each type, nil and missing values are false.
pub(super) fn truth(v: &Value<'_>) -> bool {
    match v {
        Value::Missing => false,
        Value::Str(s) => !s.is_empty(),
        Value::Int(n, _) => *n != 0,
        Value::Float(f) => *f != 0.0,
        Value::Bool(b) => *b,
        Value::Map(m) => !m.is_empty(),
        Value::List(l, _) => !l.is_empty(),
        Value::Time(_) | Value::Root(_) | Value::Container(_) | Value::Config(_) | Value::State(_) => true,
        Value::Go(node, id) => go_truth(*node, *id),
        Value::GoItems(items, _) => !items.is_empty(),
    }
}

/// The Go type of a value, as `%T` and error messages show it.
pub(super) fn type_name(v: &Value<'_>, dialect: Dialect) -> &'static str {
    match v {
        Value::Missing => "<nil>",
        Value::Str(_) => "string",
        Value::Int(_, t) => t.name(),
        Value::Float(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Time(_) => "time.Time",
        Value::Map(_) => "map[string]string",
        Value::List(..) => "[]string",
        Value::Root(_) => root_type_name(dialect),
        Value::Container(_) => "*docker.Container",
        Value::Config(_) => "*docker.Config",
        Value::State(_) => "docker.State",
        Value::Go(_, id) | Value::GoItems(_, id) => schema().name(*id),
    }
}

/// A value as `%v` prints it, for error messages.
pub(super) fn display(v: &Value<'_>, dialect: Dialect) -> String {
    let mut out = Vec::new();
    if Printer::new(&mut out, dialect).arg(v, 'v').is_err() {
        return type_name(v, dialect).to_string();
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Prints the value of an action, as Go's template engine does.
pub(super) fn print_value(v: &Value<'_>, dialect: Dialect, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Missing => {
            out.extend_from_slice(b"<no value>");
            Ok(())
        }
        Value::Str(s) => {
            out.extend_from_slice(s);
            Ok(())
        }
        // Go's template engine prints what a pointer points to, and calls `String` on an
        // addressable `State`.
        Value::Root(msg) => Printer::new(out, dialect).message(msg, 'v'),
        Value::State(c) => {
            out.extend_from_slice(state_string(c, timefmt::now_ns()).as_bytes());
            Ok(())
        }
        Value::GoItems(..) => match go_slice(v) {
            Some((items, e)) => Printer::new(out, dialect).go_elems(items, e, 'v'),
            None => Ok(()),
        },
        Value::Container(_) | Value::Config(_) | Value::Go(..) => match as_go(v) {
            Some((node, id)) => Printer::new(out, dialect).go_value(node, id, 'v', true),
            None => Ok(()),
        },
        v => Printer::new(out, dialect).arg(v, 'v'),
    }
}

/// The string a `string` parameter receives, or Go's complaint.
pub(super) fn want_str<'v>(v: &'v Value<'_>, dialect: Dialect) -> Result<&'v [u8], String> {
    match v {
        Value::Str(s) => Ok(s),
        Value::Missing => Err("invalid value; expected string".into()),
        other => Err(format!("wrong type for value; expected string; got {}", type_name(other, dialect))),
    }
}

/// The integer an `int` parameter receives, or Go's complaint.
pub(super) fn want_int(v: &Value<'_>, dialect: Dialect) -> Result<i64, String> {
    match v {
        Value::Int(n, IntTy::Int) => Ok(*n),
        Value::Missing => Err("invalid value; expected int".into()),
        other => Err(format!("wrong type for value; expected int; got {}", type_name(other, dialect))),
    }
}

/// Go's `strings.SplitN`.
pub(super) fn split_n<'s>(s: &'s [u8], sep: &[u8], n: i64) -> Vec<&'s [u8]> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        // One piece per character (each byte of invalid UTF-8 on its own), the last holding
        // the rest.
        let count = rune_count(s);
        let n = if n < 0 || n as usize > count { count } else { n as usize };
        let mut parts = Vec::with_capacity(n);
        let mut rest = s;
        for _ in 1..n {
            let (_, width) = decode_rune(rest);
            parts.push(&rest[..width]);
            rest = &rest[width..];
        }
        if n > 0 {
            parts.push(rest);
        }
        return parts;
    }
    let find = |hay: &[u8]| hay.windows(sep.len()).position(|w| w == sep);
    let mut n = if n < 0 {
        let (mut count, mut rest) = (0, s);
        while let Some(i) = find(rest) {
            count += 1;
            rest = &rest[i + sep.len()..];
        }
        count + 1
    } else {
        n as usize
    };
    n = n.min(s.len() + 1);
    let mut parts = Vec::new();
    let mut rest = s;
    while parts.len() + 1 < n {
        let Some(i) = find(rest) else { break };
        parts.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    parts.push(rest);
    parts
}

/// Go's comparison kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Invalid,
    Bool,
    Int,
    Uint,
    Float,
    Str,
}

pub(super) fn basic_kind(v: &Value<'_>) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_, IntTy::Uint8) => Kind::Uint,
        Value::Int(..) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Invalid,
    }
}

pub(super) fn int_of(v: &Value<'_>) -> i64 {
    match v {
        Value::Int(n, _) => *n,
        _ => 0,
    }
}

/// Go's `eq`: whether `a` equals any of `others`.
pub(super) fn eq(a: &Value<'_>, others: &[Value<'_>], dialect: Dialect) -> Result<bool, String> {
    let k1 = basic_kind(a);
    for b in others {
        let k2 = basic_kind(b);
        let equal = if k1 != k2 {
            match (k1, k2) {
                (Kind::Int, Kind::Uint) | (Kind::Uint, Kind::Int) => int_of(a) == int_of(b),
                // One of them is nil (or missing): unequal, not an error.
                _ if matches!(a, Value::Missing) || matches!(b, Value::Missing) => false,
                _ => {
                    return Err(format!(
                        "incompatible types for comparison: {} and {}",
                        type_name(a, dialect),
                        type_name(b, dialect)
                    ));
                }
            }
        } else {
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Int(x, _), Value::Int(y, _)) => x == y,
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::Str(x), Value::Str(y)) => x == y,
                (Value::Missing, _) | (_, Value::Missing) => matches!((a, b), (Value::Missing, Value::Missing)),
                (Value::Time(x), Value::Time(y)) => x == y,
                (Value::Map(_), Value::Map(_)) | (Value::List(..), Value::List(..)) => {
                    return Err(format!("non-comparable type {}: {}", display(b, dialect), type_name(b, dialect)));
                }
                (Value::Map(_) | Value::List(..), _) | (_, Value::Map(_) | Value::List(..)) => {
                    return Err(format!(
                        "non-comparable types {}: {}, {}: {}",
                        display(a, dialect),
                        type_name(a, dialect),
                        type_name(b, dialect),
                        display(b, dialect)
                    ));
                }
                (Value::Go(x, tx), Value::Go(y, ty)) => go_eq(*x, *tx, *y, *ty)?,
                (Value::GoItems(_, id), _) | (_, Value::GoItems(_, id)) => {
                    return Err(format!("non-comparable type {}", schema().name(*id)));
                }
                // The message and its parts are one value each: equal to themselves only.
                _ => std::mem::discriminant(a) == std::mem::discriminant(b),
            }
        };
        if equal {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `lt`.
pub(super) fn lt(a: &Value<'_>, b: &Value<'_>, dialect: Dialect) -> Result<bool, String> {
    let (k1, k2) = (basic_kind(a), basic_kind(b));
    if k1 == Kind::Invalid || k2 == Kind::Invalid {
        return Err("invalid type for comparison".into());
    }
    if k1 != k2 {
        return match (k1, k2) {
            (Kind::Int, Kind::Uint) | (Kind::Uint, Kind::Int) => Ok(int_of(a) < int_of(b)),
            _ => Err(format!(
                "incompatible types for comparison: {} and {}",
                type_name(a, dialect),
                type_name(b, dialect)
            )),
        };
    }
    match (a, b) {
        (Value::Int(x, _), Value::Int(y, _)) => Ok(x < y),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        _ => Err("invalid type for comparison".into()),
    }
}

pub(super) fn le(a: &Value<'_>, b: &Value<'_>, dialect: Dialect) -> Result<bool, String> {
    Ok(lt(a, b, dialect)? || eq(a, std::slice::from_ref(b), dialect)?)
}

/// Go's `len`.
pub(super) fn length<'a>(v: &Value<'a>, dialect: Dialect) -> Result<Value<'a>, String> {
    let n = match v {
        Value::Str(s) => s.len(),
        Value::Map(m) => m.len(),
        Value::List(l, _) => l.len(),
        Value::Go(node, id) if go_len(*node, *id).is_some() => go_len(*node, *id).unwrap_or(0),
        Value::GoItems(items, _) => items.len(),
        Value::Missing => return Err("reflect: call of reflect.Value.Type on zero Value".into()),
        other => return Err(format!("len of type {}", type_name(other, dialect))),
    };
    Ok(Value::Int(n as i64, IntTy::Int))
}

/// Go's `index`: `index x 1 2` is `x[1][2]`; a missing map key gives the empty string.
pub(super) fn index<'a>(
    item: Value<'a>,
    keys: impl Iterator<Item = Value<'a>>,
    dialect: Dialect,
) -> Result<Value<'a>, String> {
    if matches!(item, Value::Missing) {
        return Err("index of untyped nil".into());
    }
    let position = |key: &Value<'_>, len: usize| -> Result<usize, String> {
        let x = match key {
            Value::Int(n, _) => *n,
            Value::Missing => return Err("cannot index slice/array with nil".into()),
            other => return Err(format!("cannot index slice/array with type {}", type_name(other, dialect))),
        };
        if x < 0 || x as u64 > len as u64 {
            return Err(format!("index out of range: {x}"));
        }
        Ok(x as usize)
    };
    let mut item = item;
    for key in keys {
        item = match &item {
            Value::Str(s) => {
                let i = position(&key, s.len())?;
                let byte = s.get(i).ok_or("reflect: string index out of range")?;
                Value::Int(i64::from(*byte), IntTy::Uint8)
            }
            Value::List(l, _) => {
                let i = position(&key, l.len())?;
                Value::Str(l.get(i).ok_or("reflect: slice index out of range")?.clone())
            }
            Value::Map(m) => {
                let k = match &key {
                    Value::Str(k) => k,
                    Value::Missing => return Err("value is nil; should be of type string".into()),
                    other => return Err(format!("value has type {}; should be string", type_name(other, dialect))),
                };
                let found = std::str::from_utf8(k).ok().and_then(|k| m.get(k));
                found.map_or(Value::Str(Cow::Borrowed(b"")), |v| bytes(v))
            }
            Value::Go(node, id) => go_index(*node, *id, &key, dialect)?,
            Value::GoItems(items, id) => {
                let i = position(&key, items.len())?;
                let e = match schema().ty(*id) {
                    GoTy::Slice(e) => e,
                    _ => *id,
                };
                load(Some(items.get(i).ok_or("reflect: slice index out of range")?), e)
            }
            other => return Err(format!("can't index item of type {}", type_name(other, dialect))),
        };
    }
    Ok(item)
}

/// Go's `slice`: `slice x 1 2` is `x[1:2]`, of a string or a slice.
pub(super) fn slice<'a>(item: Value<'a>, indexes: Vec<Value<'a>>, dialect: Dialect) -> Result<Value<'a>, String> {
    if matches!(item, Value::Missing) {
        return Err("slice of untyped nil".into());
    }
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match &item {
        Value::Str(_) if indexes.len() == 3 => return Err("cannot 3-index slice a string".into()),
        Value::Str(s) => s.len(),
        Value::List(l, _) => l.len(),
        v if go_slice(v).is_some() => go_slice(v).map_or(0, |(items, _)| items.len()),
        other => return Err(format!("can't slice item of type {}", type_name(other, dialect))),
    };
    // A decoded slice's capacity is its length here.
    let mut idx = [0, len, len];
    for (i, index) in indexes.iter().enumerate() {
        let x = match index {
            Value::Int(n, _) => *n,
            Value::Missing => return Err("cannot index slice/array with nil".into()),
            other => return Err(format!("cannot index slice/array with type {}", type_name(other, dialect))),
        };
        if x < 0 || x as u64 > len as u64 {
            return Err(format!("index out of range: {x}"));
        }
        idx[i] = x as usize;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    let (i, j) = (idx[0], idx[1]);
    Ok(match item {
        Value::Str(Cow::Borrowed(s)) => Value::Str(Cow::Borrowed(&s[i..j])),
        Value::Str(Cow::Owned(s)) => owned(s[i..j].to_vec()),
        Value::List(l, nil) => Value::List(l[i..j].to_vec(), nil),
        // A nil slice stays nil.
        Value::Go(None, id) => Value::Go(None, id),
        Value::Go(_, id) | Value::GoItems(_, id) => {
            Value::GoItems(go_slice(&item).map_or(&[][..], |(s, _)| &s[i..j]), id)
        }
        _ => Value::Missing,
    })
}

/// The text of `html`, `js` and `urlquery`'s arguments: a lone string as is, otherwise
/// `fmt.Sprint` of them with a missing value as `<no value>`.
pub(super) fn eval_args(vals: &[Value<'_>], dialect: Dialect) -> Result<Vec<u8>, String> {
    if let [Value::Str(s)] = vals {
        return Ok(s.to_vec());
    }
    let vals: Vec<Value<'_>> = vals
        .iter()
        .map(|v| if matches!(v, Value::Missing) { Value::Str(Cow::Borrowed(b"<no value>")) } else { v.clone() })
        .collect();
    let mut out = Vec::new();
    Printer::new(&mut out, dialect).print(&vals, false)?;
    Ok(out)
}

/// Go's `template.HTMLEscape`.
pub(super) fn html_escape(s: &[u8], out: &mut Vec<u8>) {
    for &c in s {
        match c {
            0 => out.extend_from_slice("\u{fffd}".as_bytes()),
            b'"' => out.extend_from_slice(b"&#34;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            c => out.push(c),
        }
    }
}

/// Go's `template.JSEscape`.
pub(super) fn js_escape(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'<' => out.extend_from_slice(b"\\u003C"),
            b'>' => out.extend_from_slice(b"\\u003E"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            b'=' => out.extend_from_slice(b"\\u003D"),
            0..0x20 => {
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]])
            }
            0x20..0x80 => out.push(c),
            _ => {
                let (r, width) = decode_rune(&s[i..]);
                match r {
                    Some(r) if !is_print(r) => out.extend_from_slice(format!("\\u{:04X}", u32::from(r)).as_bytes()),
                    _ => out.extend_from_slice(&s[i..i + width]),
                }
                i += width;
                continue;
            }
        }
        i += 1;
    }
}

/// Go's `url.QueryEscape`.
pub(super) fn query_escape(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in s {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(c),
            b' ' => out.push(b'+'),
            c => out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]),
        }
    }
}

/// Writes a value as Go's `json.Marshal` would (`toJSON`).
pub(super) fn write_json(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Missing => out.extend_from_slice(b"null"),
        Value::Str(s) => write_json_string(&[s], out),
        Value::Int(n, _) => timefmt::write_i64(*n, out),
        // Go's encoder cannot write NaN or an infinity; logspout's toJSON then gives null.
        Value::Float(f) => json_float(*f, out),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Time(ns) => {
            out.push(b'"');
            time_rfc3339(*ns, out);
            out.push(b'"');
        }
        Value::Map(m) => write_json_map(m, out),
        Value::List(_, true) => out.extend_from_slice(b"null"),
        Value::List(items, false) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(&[item], out);
            }
            out.push(b']');
        }
        Value::Root(msg) => message_json(msg, out),
        Value::GoItems(..) => {
            if let Some((items, e)) = go_slice(v) {
                go_json_elems(items, e, out);
            }
        }
        other => {
            if let Some((node, id)) = as_go(other) {
                go_json(node, id, out);
            }
        }
    }
}

/// Appends the fast form of an action.
pub(super) fn render_part(part: &Part, msg: &Message, out: &mut Vec<u8>) {
    match part {
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
