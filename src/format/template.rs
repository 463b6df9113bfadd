//! The subset of Go's `text/template` that logspout users put in `RAW_FORMAT` and the
//! `SYSLOG_*` variables, compiled once when a route is created.
//!
//! # The subset
//!
//! - Text, comments (`{{/* … */}}`) and the `{{-`/`-}}` trim markers.
//! - Actions holding a pipeline: `{{.Data | printf "%q"}}`, parenthesised sub-pipelines,
//!   string literals with Go's quoting (`"…"`, `` `…` ``), integer and character constants,
//!   `true`, `false`, `nil`, `.`, `$` and variables (`{{$x := …}}`, `{{$x = …}}`).
//! - Control structures: `{{if}}`/`{{else if}}`/`{{else}}`, `{{with}}`/`{{else with}}`,
//!   `{{range}}` over maps (sorted keys), slices and integers, with `$k, $v :=`, `{{break}}`
//!   and `{{continue}}`, all closed by `{{end}}`.
//! - Fields of the message, as Go names them: `.Data`, `.Source`, `.Time` (with the methods
//!   `.Format "layout"`, `.Unix`, `.UnixNano`, `.UnixMilli`, `.UnixMicro`, `.UTC`, `.String`),
//!   `.Container.{ID,Name,Image}`, `.Container.Config.{Hostname,Image,Labels,Env,Tty}`,
//!   `.Container.State.Pid`, label keys as fields (`.Container.Config.Labels.app`) and, in
//!   `SYSLOG_*` templates, `.Priority`, `.Timestamp`, `.ContainerName`,
//!   `.ContainerNameSplitN SEP N` and `.Hostname`.
//! - The functions `and`, `or`, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`, `index`,
//!   `printf`, `print`, `println`, `html`, `js`, `urlquery` and logspout's `toJSON`.
//!
//! Anything else fails to compile with a message that quotes the action and its position:
//! `define`/`template`/`block`, `call`, `slice`, floating-point constants, unknown functions and
//! fields, and printing a whole Go struct (`{{.Container}}`), whose layout luaspout cannot
//! reproduce. Fields are checked against the message's shape at compile time, so a misspelt
//! field fails at startup rather than printing `<no value>` forever.
//!
//! # How it runs
//!
//! Compiling parses the text into a tree in which field paths, function names and literal time
//! layouts are resolved. Actions that only print a field of the message (the defaults
//! `{{.Data}}`, `{{.Priority}}`, `{{.Container.Config.Hostname}}`… and the README's `toJSON`,
//! `index` and `.Time.Format` forms) become `Part`s that append to the caller's buffer with no
//! allocation. Everything else runs through a small evaluator over `Value`s, which may
//! allocate.
//!
//! Values print as Go prints them: `.Container.Name` keeps Docker's leading `/`; a missing label
//! prints `<no value>` through a field and nothing through `index`; `{{.Container.Config.Labels}}`
//! prints `map[k:v]`; `toJSON` is Go's `json.Marshal` with its HTML escaping; `printf` follows
//! Go's `fmt` verbs, flags, widths and `%!verb(type=value)` complaints.
//!
//! # Errors while rendering
//!
//! Go stops a template at the first execution error (`{{index .Container.Config.Env 9}}` on a
//! container with three variables). [`Template::render`] does the same without panicking: what
//! came before the failing action stays in the buffer, the error is counted in
//! [`Template::errors`] and kept in [`Template::last_error`] for the caller to report. (logspout
//! drops the line and stops the route instead.)
//!
//! # Known differences from Go
//!
//! - `{{.Time}}` has no ` m=+…` monotonic-clock suffix: luaspout's time is Docker's timestamp.
//! - Fields are typed at compile time, so `{{.Container.Config.Labels.app.x}}` is an error even
//!   for containers without an `app` label, where Go would print `<no value>`; `eq` needs two
//!   arguments at compile time rather than failing when rendering.
//! - `%q`, `%U` and `js` decide which characters are printable without Unicode's tables:
//!   unassigned code points count as printable.
//! - `%p`, and verbs other than `%v %s %x %X %q` on a time, print `%!p(…)`/`%!d(time.Time=…)`
//!   rather than Go's addresses and struct fields.
//! - Blocks and parentheses nest at most 100 deep.

use crate::timefmt::{MONTHS, WEEKDAYS};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use crate::message::{Container, Message, Source};
use crate::timefmt::{self, Civil};

/// Which variables a template is for: the syslog adapter adds fields of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `RAW_FORMAT`.
    Raw,
    /// `SYSLOG_*`, which may also use `.Priority`, `.Timestamp`, `.ContainerName`,
    /// `.ContainerNameSplitN` and `.Hostname`.
    Syslog,
}

/// A template that cannot be compiled; the text names the problem, quotes the action with its
/// line and column, and says what would work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct TemplateError(String);

/// A compiled template.
#[derive(Debug)]
pub struct Template {
    source: String,
    dialect: Dialect,
    nodes: Vec<Node>,
    /// How many `$variables` the template declares; each has a slot while rendering.
    slots: usize,
    /// The template's actions, for messages.
    actions: Vec<ActionInfo>,
    /// Renders that stopped at an execution error.
    errors: AtomicU64,
    /// The message of the latest of them.
    last_error: Mutex<Option<String>>,
}

impl Clone for Template {
    fn clone(&self) -> Template {
        Template {
            source: self.source.clone(),
            dialect: self.dialect,
            nodes: self.nodes.clone(),
            slots: self.slots,
            actions: self.actions.clone(),
            errors: AtomicU64::new(self.errors()),
            last_error: Mutex::new(self.last_error()),
        }
    }
}

impl Template {
    /// Compiles `text` for `dialect`.
    pub fn compile(text: &str, dialect: Dialect) -> Result<Template, TemplateError> {
        let mut c = Compiler { dialect, actions: Vec::new(), vars: Vec::new(), slots: 0, ranges: 0, depth: 0 };
        let mut items = c.scan(text)?.into_iter();
        let (nodes, end) = c.list(&mut items, Ty::Root)?;
        match end {
            Stop::Eof => {}
            Stop::End(id) => return Err(c.located(id, "unexpected {{end}}".into())),
            Stop::Else(id, _) => return Err(c.located(id, "unexpected {{else}}".into())),
        }
        Ok(Template {
            source: text.to_string(),
            dialect,
            nodes,
            slots: c.slots,
            actions: c.actions,
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// The text the template was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Appends the template's output for `msg`.
    ///
    /// An execution error (an index out of range, a comparison of a string with a number…)
    /// stops the rendering where Go would stop it: the output of the actions before it stays in
    /// `out`, and the error is counted in [`Template::errors`].
    pub fn render(&self, msg: &Message, out: &mut Vec<u8>) {
        let mut exec = Exec { t: self, msg, vars: Vec::new() };
        if self.slots > 0 {
            exec.vars.resize(self.slots, Value::Missing);
        }
        if let Err(e) = exec.walk(&self.nodes, &Value::Root, out) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e);
            }
        }
    }

    /// How many renders stopped at an execution error since the template was compiled.
    ///
    /// Callers that want to report failures compare it with the value they saw last and log
    /// [`Template::last_error`] when it grew.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The message of the latest execution error, naming the action and its position.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|last| last.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

/// One element of a compiled template.
#[derive(Debug, Clone)]
enum Node {
    Text(Box<[u8]>),
    /// An action that prints a field of the message, rendered without the evaluator.
    Part(Part),
    /// `{{pipeline}}`: prints the value unless the pipeline declares or assigns variables.
    Action {
        pipe: Pipe,
        at: usize,
    },
    If {
        pipe: Pipe,
        then: Vec<Node>,
        otherwise: Vec<Node>,
        at: usize,
    },
    /// Like `If`, with dot bound to the pipeline's value in `then`.
    With {
        pipe: Pipe,
        then: Vec<Node>,
        otherwise: Vec<Node>,
        at: usize,
    },
    /// `key` and `elem` are the slots of `$k, $v :=` (or of `$v :=` alone).
    Range {
        pipe: Pipe,
        key: Option<usize>,
        elem: Option<usize>,
        body: Vec<Node>,
        otherwise: Vec<Node>,
        at: usize,
    },
    Break,
    Continue,
}

/// The fast forms of the common actions.
#[derive(Debug, Clone)]
enum Part {
    /// `{{.Field}}`.
    Print(Field),
    /// `{{toJSON .Field}}`.
    Json(Field),
    /// `{{index .Container.Config.Labels "key"}}`.
    IndexLabel(String),
    /// `{{.Time.Format "layout"}}`.
    TimeFormat(Vec<LayoutItem>),
}

/// A value reachable from the message, resolved at compile time.
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

/// A pipeline: commands joined by `|`, each receiving the previous one's value as its last
/// argument, and the variable slots its value is stored in.
#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<usize>,
    cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
enum Cmd {
    /// `fn arg…`.
    Call { func: Func, args: Vec<Operand> },
    /// `.A.B arg…`: the last element may be a method taking the arguments; `layout` is
    /// `.Time.Format`'s literal layout, compiled.
    Chain { chain: Chain, args: Vec<Operand>, layout: Option<Box<[LayoutItem]>> },
    /// A value that is not a function: a literal, `.`, a variable, `( … )`.
    Value(Operand),
}

#[derive(Debug, Clone)]
enum Operand {
    Dot,
    /// `$`: the message.
    Root,
    Var(usize),
    Str(Box<[u8]>),
    Int(i64),
    Bool(bool),
    Nil,
    Pipe(Box<Pipe>),
    Chain(Box<Chain>),
    /// A function used as an argument: called without arguments.
    Call(Func),
}

/// `.A.B`, `$x.A`, `(pipeline).A`.
#[derive(Debug, Clone)]
struct Chain {
    base: Operand,
    steps: Vec<Step>,
}

/// One `.Name` of a chain: a member of a struct, or a key when the value is a map.
#[derive(Debug, Clone)]
struct Step {
    name: Box<str>,
    member: Option<Member>,
}

/// Every field and method name the message model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Data,
    Source,
    Time,
    Container,
    Priority,
    Timestamp,
    ContainerName,
    ContainerNameSplitN,
    Hostname,
    Id,
    Name,
    Image,
    Config,
    State,
    Labels,
    Env,
    Tty,
    Pid,
    Format,
    Unix,
    UnixNano,
    UnixMilli,
    UnixMicro,
    Utc,
    String,
}

const MEMBERS: [(&str, Member); 25] = [
    ("Data", Member::Data),
    ("Source", Member::Source),
    ("Time", Member::Time),
    ("Container", Member::Container),
    ("Priority", Member::Priority),
    ("Timestamp", Member::Timestamp),
    ("ContainerName", Member::ContainerName),
    ("ContainerNameSplitN", Member::ContainerNameSplitN),
    ("Hostname", Member::Hostname),
    ("ID", Member::Id),
    ("Name", Member::Name),
    ("Image", Member::Image),
    ("Config", Member::Config),
    ("State", Member::State),
    ("Labels", Member::Labels),
    ("Env", Member::Env),
    ("Tty", Member::Tty),
    ("Pid", Member::Pid),
    ("Format", Member::Format),
    ("Unix", Member::Unix),
    ("UnixNano", Member::UnixNano),
    ("UnixMilli", Member::UnixMilli),
    ("UnixMicro", Member::UnixMicro),
    ("UTC", Member::Utc),
    ("String", Member::String),
];

/// The functions a template may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    And,
    Or,
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Len,
    Index,
    Printf,
    Print,
    Println,
    Html,
    Js,
    UrlQuery,
    ToJson,
}

const FUNCS: [(&str, Func); 18] = [
    ("and", Func::And),
    ("or", Func::Or),
    ("not", Func::Not),
    ("eq", Func::Eq),
    ("ne", Func::Ne),
    ("lt", Func::Lt),
    ("le", Func::Le),
    ("gt", Func::Gt),
    ("ge", Func::Ge),
    ("len", Func::Len),
    ("index", Func::Index),
    ("printf", Func::Printf),
    ("print", Func::Print),
    ("println", Func::Println),
    ("html", Func::Html),
    ("js", Func::Js),
    ("urlquery", Func::UrlQuery),
    ("toJSON", Func::ToJson),
];

/// What every unknown-function message offers instead.
const FUNCTIONS: &str = "supported functions are and, or, not, eq, ne, lt, le, gt, ge, len, index, printf, \
     print, println, html, js, urlquery and toJSON";

/// The fields a template may name from the message, for messages.
const RAW_FIELDS: &str = ".Data, .Source, .Time (with .Format \"layout\", .Unix, .UnixNano), .Container.ID, \
     .Container.Name, .Container.Image, .Container.Config.Hostname, .Container.Config.Image, \
     .Container.Config.Labels, .Container.Config.Labels.KEY, .Container.Config.Env, .Container.Config.Tty, \
     .Container.State.Pid";
const SYSLOG_FIELDS: &str = ".Priority, .Timestamp, .ContainerName, .ContainerNameSplitN \"SEP\" N, .Hostname";

impl Func {
    fn named(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn name(self) -> &'static str {
        FUNCS.iter().find(|(_, f)| *f == self).map_or("?", |(n, _)| n)
    }

    /// The least and most arguments it takes (`eq` needs two to compare anything).
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::And | Func::Or | Func::Index | Func::Printf => (1, None),
            Func::Not | Func::Len | Func::ToJson => (1, Some(1)),
            Func::Eq => (2, None),
            Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => (2, Some(2)),
            Func::Print | Func::Println | Func::Html | Func::Js | Func::UrlQuery => (0, None),
        }
    }
}

/// The static type of a value, as far as the compiler knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// Only known when rendering (the result of `and`/`or` over different types…).
    Any,
    /// The `nil` constant.
    Nil,
    Str,
    Int(IntTy),
    Bool,
    Time,
    /// `map[string]string`: the labels.
    Map,
    /// `[]string`.
    List,
    /// The message (`$`).
    Root,
    Container,
    Config,
    State,
}

/// Go's integer types among the values, which `%T`, `%!d(…)` and comparisons tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntTy {
    Int,
    Int64,
    Uint8,
    /// `log/syslog.Priority`: `.Priority`.
    Priority,
}

impl IntTy {
    fn name(self) -> &'static str {
        match self {
            IntTy::Int => "int",
            IntTy::Int64 => "int64",
            IntTy::Uint8 => "uint8",
            IntTy::Priority => "syslog.Priority",
        }
    }
}

impl Ty {
    fn name(self, dialect: Dialect) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::Nil => "nil",
            Ty::Str => "string",
            Ty::Int(t) => t.name(),
            Ty::Bool => "bool",
            Ty::Time => "time.Time",
            Ty::Map => "map[string]string",
            Ty::List => "[]string",
            Ty::Root => root_type_name(dialect),
            Ty::Container => "*docker.Container",
            Ty::Config => "*docker.Config",
            Ty::State => "docker.State",
        }
    }

    /// Go structs, whose printed form (every field, pointers as addresses) luaspout does not
    /// reproduce.
    fn is_struct(self) -> bool {
        matches!(self, Ty::Root | Ty::Container | Ty::Config | Ty::State)
    }
}

fn root_type_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Raw => "*router.Message",
        Dialect::Syslog => "*syslog.Message",
    }
}

/// The type of a method's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Str,
    Int,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Str => "string",
            Param::Int => "int",
        }
    }

    fn ty(self) -> Ty {
        match self {
            Param::Str => Ty::Str,
            Param::Int => Ty::Int(IntTy::Int),
        }
    }
}

/// What `name` is on a value of type `ty`: the member, the type of its value and, for a method,
/// its parameters.
fn lookup(ty: Ty, name: &str, dialect: Dialect) -> Option<(Member, Ty, Option<&'static [Param]>)> {
    use Member as M;
    let member = MEMBERS.iter().find(|(n, _)| *n == name)?.1;
    let syslog = dialect == Dialect::Syslog;
    let (ty, params): (Ty, Option<&'static [Param]>) = match (ty, member) {
        (Ty::Root, M::Data | M::Source) => (Ty::Str, None),
        (Ty::Root, M::Time) => (Ty::Time, None),
        (Ty::Root, M::Container) => (Ty::Container, None),
        (Ty::Root, M::Priority) if syslog => (Ty::Int(IntTy::Priority), Some(&[])),
        (Ty::Root, M::Timestamp | M::ContainerName | M::Hostname) if syslog => (Ty::Str, Some(&[])),
        (Ty::Root, M::ContainerNameSplitN) if syslog => (Ty::List, Some(&[Param::Str, Param::Int])),
        (Ty::Container, M::Id | M::Name | M::Image) => (Ty::Str, None),
        (Ty::Container, M::Config) => (Ty::Config, None),
        (Ty::Container, M::State) => (Ty::State, None),
        (Ty::Config, M::Hostname | M::Image) => (Ty::Str, None),
        (Ty::Config, M::Labels) => (Ty::Map, None),
        (Ty::Config, M::Env) => (Ty::List, None),
        (Ty::Config, M::Tty) => (Ty::Bool, None),
        (Ty::State, M::Pid) => (Ty::Int(IntTy::Int), None),
        (Ty::Time, M::Format) => (Ty::Str, Some(&[Param::Str])),
        (Ty::Time, M::Unix | M::UnixNano | M::UnixMilli | M::UnixMicro) => (Ty::Int(IntTy::Int64), Some(&[])),
        (Ty::Time, M::Utc) => (Ty::Time, Some(&[])),
        (Ty::Time, M::String) => (Ty::Str, Some(&[])),
        _ => return None,
    };
    Some((member, ty, params))
}

/// The members of a struct type, for messages.
fn members_of(ty: Ty, dialect: Dialect) -> String {
    match ty {
        Ty::Root if dialect == Dialect::Syslog => format!("known fields are {RAW_FIELDS}, {SYSLOG_FIELDS}"),
        Ty::Root => format!("known fields are {RAW_FIELDS}"),
        Ty::Container => "it has .ID, .Name, .Image, .Config and .State".into(),
        Ty::Config => "it has .Hostname, .Image, .Labels, .Env and .Tty".into(),
        Ty::State => "it has .Pid".into(),
        Ty::Time => "it has .Format \"layout\", .Unix, .UnixNano, .UnixMilli, .UnixMicro, .UTC and .String".into(),
        other => format!("it is a {} and has no fields", other.name(dialect)),
    }
}

// ---------------------------------------------------------------------------------------------
// Scanning: text and actions
// ---------------------------------------------------------------------------------------------

/// An action of the source, for messages: its text (shortened) and where it starts.
#[derive(Debug, Clone)]
struct ActionInfo {
    text: String,
    line: usize,
    column: usize,
}

impl ActionInfo {
    fn describe(&self) -> String {
        format!("{:?} at line {}, column {}", self.text, self.line, self.column)
    }
}

/// A piece of the source: literal text with the trim markers applied, or an action's body.
enum Item<'t> {
    Text(&'t str),
    Action { body: &'t str, id: usize },
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

fn shorten(s: &str) -> String {
    if s.chars().count() <= 60 { s.to_string() } else { s.chars().take(57).chain("...".chars()).collect() }
}

/// Line and column (both from 1, the column in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
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
fn scan_action<'a>(s: &'a str, whole: &str, at: (usize, usize)) -> Result<(&'a str, bool, usize), TemplateError> {
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

// ---------------------------------------------------------------------------------------------
// Lexing an action
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok<'t> {
    Dot,
    /// `.Name`, without the dot.
    Field(&'t str),
    /// `$` or `$name`, with the `$`.
    Var(&'t str),
    Ident(&'t str),
    Str(Vec<u8>),
    Int(i64),
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
struct Token<'t> {
    tok: Tok<'t>,
    /// Whether whitespace precedes it: `.A.B` is one chain, `.A .B` two arguments.
    spaced: bool,
    start: usize,
    end: usize,
}

/// Whether `c` may continue an identifier, a field or a variable name (Go's `isAlphaNumeric`).
fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits an action body into tokens, as Go's lexer does.
fn lex(body: &str) -> Result<Vec<Token<'_>>, String> {
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
                Tok::Int(parse_number(&body[start..i])?)
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
                Tok::Int(parse_number(&body[start..i])?)
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
fn number_len(b: &[u8]) -> usize {
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

/// Parses a Go integer constant (decimal, `0x`, `0o`, `0b` or a leading-zero octal, with `_`
/// separators); floating-point and complex constants are outside the subset.
fn parse_number(text: &str) -> Result<i64, String> {
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
        return Err(format!("floating-point and complex constants such as {text} are not supported"));
    }
    let body: String = body.chars().filter(|&c| c != '_').collect();
    let magnitude = u64::from_str_radix(&body, radix).map_err(|_| format!("bad number syntax: {text:?}"))?;
    let value = if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    value.ok_or_else(|| format!("{text} overflows int"))
}

/// Reads the Go string literal at the start of `s` (interpreted `"…"` or raw `` `…` ``),
/// returning its bytes and length.
fn unquote(s: &str) -> Result<(Vec<u8>, usize), String> {
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
fn unquote_char(s: &str) -> Result<(i64, usize), String> {
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
fn unescape(chars: &mut impl Iterator<Item = (usize, char)>, quote: char, out: &mut Vec<u8>) -> Result<(), String> {
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

// ---------------------------------------------------------------------------------------------
// Compiling
// ---------------------------------------------------------------------------------------------

/// A compile-time problem; the caller adds the action and its position.
struct Problem {
    what: String,
    hint: Option<String>,
}

impl From<String> for Problem {
    fn from(what: String) -> Problem {
        Problem { what, hint: None }
    }
}

impl From<&str> for Problem {
    fn from(what: &str) -> Problem {
        Problem { what: what.to_string(), hint: None }
    }
}

fn problem(what: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem { what: what.into(), hint: Some(hint.into()) }
}

type Compiled<T> = Result<T, Problem>;

/// A resolved chain: its steps, the type of its value and `.Time.Format`'s literal layout.
type Resolved = (Vec<Step>, Ty, Option<Box<[LayoutItem]>>);

/// A pipeline's `$x :=` (false) and `$x =` (true), before they are bound to slots.
type Decls<'t> = Vec<(&'t str, bool)>;

/// A compiled pipeline before its declarations are bound: its commands and the type of its
/// value.
struct Piped<'t> {
    cmds: Vec<Cmd>,
    ty: Ty,
    decls: Decls<'t>,
}

/// A variable in scope.
struct Var {
    name: String,
    slot: usize,
    ty: Ty,
}

/// How a list of nodes ended.
enum Stop<'t> {
    Eof,
    /// `{{end}}`, at that action.
    End(usize),
    /// `{{else …}}`, at that action, with its tokens.
    Else(usize, Cursor<'t>),
}

/// The tokens of one action and a position in them.
struct Cursor<'t> {
    body: &'t str,
    toks: Vec<Token<'t>>,
    at: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<&Token<'t>> {
        self.toks.get(self.at)
    }

    fn peek_tok(&self, n: usize) -> Option<&Tok<'t>> {
        self.toks.get(self.at + n).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Token<'t>> {
        let token = self.toks.get(self.at).cloned();
        if token.is_some() {
            self.at += 1;
        }
        token
    }

    fn text(&self, start: usize, end: usize) -> &'t str {
        &self.body[start..end]
    }

    /// Fails unless every token has been used.
    fn finish(&self, what: &str) -> Compiled<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!("unexpected {:?} in {what}", &self.body[t.start..t.end]).into()),
        }
    }
}

/// An operand as parsed, before it is known to be a command's head or an argument.
enum Parsed<'t> {
    /// A literal, `.`, `$x`, `( … )`: `executable` is false for literals and `.`, which cannot
    /// start a later command of a pipeline.
    Value { operand: Operand, ty: Ty, text: &'t str, executable: bool },
    /// A function name.
    Call { func: Func, text: &'t str },
    /// A field chain on a base value.
    Chain { base: Operand, base_ty: Ty, names: Vec<&'t str>, text: &'t str, base_text: &'t str },
}

/// A compiled argument and what the checks need to know of it.
struct Arg<'t> {
    operand: Operand,
    ty: Ty,
    text: &'t str,
}

struct Compiler {
    dialect: Dialect,
    actions: Vec<ActionInfo>,
    vars: Vec<Var>,
    slots: usize,
    /// How many `{{range}}` bodies enclose the current action.
    ranges: usize,
    /// How many blocks and parentheses enclose it, bounded by [`MAX_NESTING`].
    depth: usize,
}

/// How deeply blocks and parentheses may nest. Compiling and rendering recurse once per level;
/// the bound keeps a pathological template from exhausting a thread's stack.
const MAX_NESTING: usize = 100;

impl Compiler {
    fn located(&self, id: usize, p: Problem) -> TemplateError {
        let mut s = format!("{} in {}", p.what, self.actions[id].describe());
        if let Some(hint) = p.hint {
            s.push_str("; ");
            s.push_str(&hint);
        }
        TemplateError(s)
    }

    /// Splits the source into text and actions, applying trim markers and dropping comments.
    fn scan<'t>(&mut self, text: &'t str) -> Result<Vec<Item<'t>>, TemplateError> {
        let mut items = Vec::new();
        let push = |items: &mut Vec<Item<'t>>, t: &'t str| {
            if !t.is_empty() {
                items.push(Item::Text(t));
            }
        };
        let mut rest = text;
        let mut trim_next = false;
        loop {
            let Some(open) = rest.find("{{") else {
                push(&mut items, trim(rest, trim_next, false));
                break;
            };
            let after = &rest[open + 2..];
            let trim_left = after.len() > 1 && after.as_bytes()[0] == b'-' && is_space(after.as_bytes()[1]);
            push(&mut items, trim(&rest[..open], trim_next, trim_left));
            let offset = text.len() - rest.len() + open;
            let (line, column) = line_column(text, offset);
            let body_start = if trim_left { 2 } else { 0 };
            let (body, trim_right, len) = scan_action(&after[body_start..], &rest[open..], (line, column))?;
            let end = open + 2 + body_start + len;
            if !body.starts_with("/*") {
                self.actions.push(ActionInfo { text: shorten(&rest[open..end]), line, column });
                items.push(Item::Action { body, id: self.actions.len() - 1 });
            }
            trim_next = trim_right;
            rest = &rest[end..];
        }
        Ok(items)
    }

    /// Compiles items up to the `{{end}}` or `{{else}}` that closes the enclosing block, or
    /// to the end of the source; `dot` is the type of `.` in them.
    fn list<'t>(
        &mut self,
        items: &mut std::vec::IntoIter<Item<'t>>,
        dot: Ty,
    ) -> Result<(Vec<Node>, Stop<'t>), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(item) = items.next() {
            let (body, id) = match item {
                Item::Text(text) => {
                    push_text(&mut nodes, text.as_bytes());
                    continue;
                }
                Item::Action { body, id } => (body, id),
            };
            let toks = lex(body).map_err(|e| self.located(id, e.into()))?;
            let mut p = Cursor { body, toks, at: 0 };
            let keyword = match p.peek_tok(0) {
                Some(Tok::Ident(word)) => Some(*word),
                _ => None,
            };
            match keyword {
                Some("end") => {
                    p.next();
                    p.finish("{{end}}").map_err(|e| self.located(id, e))?;
                    return Ok((nodes, Stop::End(id)));
                }
                Some("else") => {
                    p.next();
                    return Ok((nodes, Stop::Else(id, p)));
                }
                Some(kind @ ("if" | "with" | "range")) => {
                    p.next();
                    let node = self.control(kind, p, id, items, dot)?;
                    nodes.push(node);
                }
                Some(kind @ ("break" | "continue")) => {
                    p.next();
                    p.finish(&format!("{{{{{kind}}}}}")).map_err(|e| self.located(id, e))?;
                    if self.ranges == 0 {
                        return Err(self.located(id, format!("{{{{{kind}}}}} outside {{{{range}}}}").into()));
                    }
                    nodes.push(if kind == "break" { Node::Break } else { Node::Continue });
                }
                Some(kind @ ("define" | "template" | "block")) => {
                    return Err(self.located(
                        id,
                        problem(
                            format!("{{{{{kind}}}}} is not supported"),
                            "a luaspout template is a single template and cannot define or include others",
                        ),
                    ));
                }
                _ => {
                    let node = self.action(&mut p, id, dot).map_err(|e| self.located(id, e))?;
                    nodes.push(node);
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// `{{pipeline}}`.
    fn action(&mut self, p: &mut Cursor<'_>, id: usize, dot: Ty) -> Compiled<Node> {
        let Piped { cmds, ty, decls } = self.pipeline(p, dot, "command", false)?;
        p.finish("command")?;
        let decl = self.bind(&decls, ty)?;
        let pipe = Pipe { decl, cmds };
        if pipe.decl.is_empty() {
            printable(ty, self.dialect, p.body.trim())?;
            if let Some(part) = self.lower(&pipe, dot) {
                return Ok(Node::Part(part));
            }
        }
        Ok(Node::Action { pipe, at: id })
    }

    /// `{{if}}`, `{{with}}` or `{{range}}` (whose keyword `p` has consumed) up to its
    /// `{{end}}`.
    fn control<'t>(
        &mut self,
        kind: &str,
        mut p: Cursor<'t>,
        id: usize,
        items: &mut std::vec::IntoIter<Item<'t>>,
        dot: Ty,
    ) -> Result<Node, TemplateError> {
        let mark = self.vars.len();
        let range = kind == "range";
        let located = |c: &Compiler, e: Problem| c.located(id, e);
        self.nest().map_err(|e| located(self, e))?;
        let Piped { cmds, ty, decls } = self.pipeline(&mut p, dot, kind, range).map_err(|e| located(self, e))?;
        p.finish(kind).map_err(|e| located(self, e))?;
        let (pipe, body_dot, key, elem) = if range {
            let (key_ty, elem_ty) = range_types(ty, decls.len(), self.dialect).map_err(|e| located(self, e))?;
            if decls.iter().any(|(_, assign)| *assign) {
                return Err(located(self, "range can only declare variables, with :=".into()));
            }
            let (key, elem) = match decls.as_slice() {
                [] => (None, None),
                [(v, _)] => (None, Some(self.declare(v, elem_ty))),
                [(k, _), (v, _)] => (Some(self.declare(k, key_ty)), Some(self.declare(v, elem_ty))),
                _ => return Err(located(self, "too many declarations in range".into())),
            };
            (Pipe { decl: Vec::new(), cmds }, elem_ty, key, elem)
        } else {
            let decl = self.bind(&decls, ty).map_err(|e| located(self, e))?;
            (Pipe { decl, cmds }, if kind == "with" { ty } else { dot }, None, None)
        };

        let body_mark = self.vars.len();
        self.ranges += usize::from(range);
        let (then, end) = self.list(items, body_dot)?;
        self.ranges -= usize::from(range);
        self.vars.truncate(body_mark);
        let unclosed =
            |c: &Compiler| c.located(id, problem(format!("unclosed {{{{{kind}}}}}"), "add a matching {{end}}"));
        let otherwise = match end {
            Stop::End(_) => Vec::new(),
            Stop::Eof => return Err(unclosed(self)),
            Stop::Else(else_id, mut q) => match q.peek_tok(0) {
                None => {
                    let (nodes, end) = self.list(items, dot)?;
                    match end {
                        Stop::End(_) => nodes,
                        Stop::Eof => return Err(unclosed(self)),
                        Stop::Else(again, _) => {
                            return Err(self.located(
                                again,
                                format!("{{{{else}}}} after the {{{{else}}}} of {{{{{kind}}}}}").into(),
                            ));
                        }
                    }
                }
                Some(Tok::Ident(next)) if *next == kind && kind != "range" => {
                    q.next();
                    vec![self.control(kind, q, else_id, items, dot)?]
                }
                Some(_) => {
                    let e = q.finish("{{else}}").err().unwrap_or_else(|| "unexpected else".into());
                    return Err(self.located(else_id, e));
                }
            },
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(match kind {
            "if" => Node::If { pipe, then, otherwise, at: id },
            "with" => Node::With { pipe, then, otherwise, at: id },
            _ => Node::Range { pipe, key, elem, body: then, otherwise, at: id },
        })
    }

    /// Enters a block or parentheses.
    fn nest(&mut self) -> Compiled<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("blocks and parentheses nest deeper than {MAX_NESTING} levels").into());
        }
        Ok(())
    }

    fn declare(&mut self, name: &str, ty: Ty) -> usize {
        let slot = self.slots;
        self.slots += 1;
        self.vars.push(Var { name: name.to_string(), slot, ty });
        slot
    }

    fn var(&self, name: &str) -> Compiled<&Var> {
        self.vars.iter().rev().find(|v| v.name == name).ok_or_else(|| format!("undefined variable {name}").into())
    }

    /// The slots a pipeline's `$x :=` or `$x =` stores its value of type `ty` in.
    fn bind(&mut self, decls: &[(&str, bool)], ty: Ty) -> Compiled<Vec<usize>> {
        let mut slots = Vec::new();
        for (name, assign) in decls {
            if *name == "$" {
                return Err("cannot assign to $".into());
            }
            if *assign {
                let var = self.vars.iter_mut().rev().find(|v| v.name == *name);
                let var = var.ok_or_else(|| format!("undefined variable {name}"))?;
                if var.ty != ty {
                    var.ty = Ty::Any;
                }
                slots.push(var.slot);
            } else {
                slots.push(self.declare(name, ty));
            }
        }
        Ok(slots)
    }

    /// Compiles a pipeline up to the end of the action (or the closing parenthesis), returning
    /// its commands, the type of its value and its `$x :=`/`$x =` declarations, not yet bound.
    fn pipeline<'t>(&mut self, p: &mut Cursor<'t>, dot: Ty, context: &str, range: bool) -> Compiled<Piped<'t>> {
        let decls = decls(p, context, range)?;
        let mut cmds = Vec::new();
        let mut ty = Ty::Nil;
        while let Some(token) = p.peek() {
            if token.tok == Tok::RParen {
                if context == "parenthesized pipeline" {
                    break;
                }
                return Err("unexpected \")\"".into());
            }
            let fin = if cmds.is_empty() { None } else { Some(ty) };
            let (cmd, t) = self.command(p, dot, cmds.len(), fin)?;
            cmds.push(cmd);
            ty = t;
        }
        if cmds.is_empty() {
            return Err(format!("missing value for {context}").into());
        }
        Ok(Piped { cmds, ty, decls })
    }

    /// One command of a pipeline; `fin` is the type of the previous command's value, which
    /// becomes its last argument.
    fn command<'t>(&mut self, p: &mut Cursor<'t>, dot: Ty, stage: usize, fin: Option<Ty>) -> Compiled<(Cmd, Ty)> {
        let mut ops = Vec::new();
        loop {
            ops.push(self.operand(p, dot)?);
            match p.peek() {
                None => break,
                Some(t) if t.tok == Tok::RParen => break,
                Some(t) if t.tok == Tok::Pipe => {
                    p.next();
                    break;
                }
                Some(t) if t.spaced => {}
                Some(t) => return Err(format!("unexpected {:?} in operand", p.text(t.start, t.end)).into()),
            }
        }
        let mut ops = ops.into_iter();
        let head = ops.next().ok_or("empty command")?;
        if stage > 0 && matches!(head, Parsed::Value { executable: false, .. }) {
            return Err(format!("non executable command in pipeline stage {}", stage + 1).into());
        }
        let args: Vec<Arg<'t>> = ops.map(|op| self.arg(op)).collect::<Compiled<_>>()?;
        match head {
            Parsed::Call { func, text } => {
                let ty = self.check_call(func, text, &args, fin)?;
                Ok((Cmd::Call { func, args: args.into_iter().map(|a| a.operand).collect() }, ty))
            }
            Parsed::Chain { base, base_ty, names, text, base_text } => {
                let (steps, ty, layout) = self.resolve(base_ty, &names, text, base_text, &args, fin)?;
                let args = args.into_iter().map(|a| a.operand).collect();
                Ok((Cmd::Chain { chain: Chain { base, steps }, args, layout }, ty))
            }
            Parsed::Value { operand, ty, text, .. } => {
                if !args.is_empty() || fin.is_some() {
                    return Err(format!("can't give argument to non-function {text}").into());
                }
                if matches!(operand, Operand::Nil) {
                    return Err("nil is not a command".into());
                }
                Ok((Cmd::Value(operand), ty))
            }
        }
    }

    /// An operand used as an argument: a function is called without arguments, a chain's
    /// methods too.
    fn arg<'t>(&self, op: Parsed<'t>) -> Compiled<Arg<'t>> {
        Ok(match op {
            Parsed::Value { operand, ty, text, .. } => Arg { operand, ty, text },
            Parsed::Call { func, text } => {
                let ty = self.check_call(func, text, &[], None)?;
                Arg { operand: Operand::Call(func), ty, text }
            }
            Parsed::Chain { base, base_ty, names, text, base_text } => {
                let (steps, ty, _) = self.resolve(base_ty, &names, text, base_text, &[], None)?;
                Arg { operand: Operand::Chain(Box::new(Chain { base, steps })), ty, text }
            }
        })
    }

    /// One operand, with the fields chained to it.
    fn operand<'t>(&mut self, p: &mut Cursor<'t>, dot: Ty) -> Compiled<Parsed<'t>> {
        let token = p.next().ok_or("missing operand")?;
        let start = token.start;
        let text = p.text(token.start, token.end);
        let value = |operand, ty, executable| Parsed::Value { operand, ty, text, executable };
        let mut parsed = match token.tok {
            Tok::Dot => value(Operand::Dot, dot, false),
            Tok::Field(name) => {
                Parsed::Chain { base: Operand::Dot, base_ty: dot, names: vec![name], text, base_text: "" }
            }
            Tok::Var("$") => value(Operand::Root, Ty::Root, true),
            Tok::Var(name) => {
                let var = self.var(name)?;
                value(Operand::Var(var.slot), var.ty, true)
            }
            Tok::Ident(name) => match Func::named(name) {
                Some(func) => Parsed::Call { func, text },
                None => return Err(unknown_function(name)),
            },
            Tok::Str(s) => value(Operand::Str(s.into()), Ty::Str, false),
            Tok::Int(n) => value(Operand::Int(n), Ty::Int(IntTy::Int), false),
            Tok::Bool(b) => value(Operand::Bool(b), Ty::Bool, false),
            Tok::Nil => value(Operand::Nil, Ty::Nil, false),
            Tok::LParen => {
                self.nest()?;
                let Piped { cmds, ty, decls } = self.pipeline(p, dot, "parenthesized pipeline", false)?;
                self.depth -= 1;
                let close = p.next().filter(|t| t.tok == Tok::RParen).ok_or("unclosed left parenthesis")?;
                let decl = self.bind(&decls, ty)?;
                let operand = Operand::Pipe(Box::new(Pipe { decl, cmds }));
                Parsed::Value { operand, ty, text: p.text(start, close.end), executable: true }
            }
            _ => return Err(format!("unexpected {text:?} in operand").into()),
        };
        while let Some(t) = p.peek().filter(|t| !t.spaced) {
            let Tok::Field(name) = t.tok else { break };
            let end = t.end;
            p.next();
            parsed = match parsed {
                Parsed::Chain { base, base_ty, mut names, base_text, .. } => {
                    names.push(name);
                    Parsed::Chain { base, base_ty, names, text: p.text(start, end), base_text }
                }
                Parsed::Call { func, text } => {
                    let base_ty = self.check_call(func, text, &[], None)?;
                    let operand = Operand::Call(func);
                    Parsed::Chain {
                        base: operand,
                        base_ty,
                        names: vec![name],
                        text: p.text(start, end),
                        base_text: text,
                    }
                }
                Parsed::Value { operand, ty, text, executable: true } => Parsed::Chain {
                    base: operand,
                    base_ty: ty,
                    names: vec![name],
                    text: p.text(start, end),
                    base_text: text,
                },
                Parsed::Value { text, .. } => return Err(format!("unexpected . after term {text:?}").into()),
            };
        }
        Ok(parsed)
    }

    /// Resolves the fields of a chain on a value of type `base_ty`; the last one may be a method
    /// taking `args` and `fin`. Returns the steps, the type of the value and, for
    /// `.Time.Format` with a literal layout, the layout compiled.
    fn resolve(
        &self,
        base_ty: Ty,
        names: &[&str],
        text: &str,
        base_text: &str,
        args: &[Arg<'_>],
        fin: Option<Ty>,
    ) -> Compiled<Resolved> {
        let mut ty = base_ty;
        let mut steps = Vec::new();
        let mut layout = None;
        let mut prefix = base_text.to_string();
        // Where a map was entered: the map's text and the index of the key.
        let mut map_at: Option<(String, usize)> = None;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let given = if last { args.len() + usize::from(fin.is_some()) } else { 0 };
            match ty {
                Ty::Any | Ty::Nil => {
                    let member = MEMBERS.iter().find(|(n, _)| n == name).map(|(_, m)| *m);
                    steps.push(Step { name: (*name).into(), member });
                    ty = Ty::Any;
                }
                Ty::Map => {
                    if given > 0 {
                        return Err(format!("{name} is not a method but has arguments").into());
                    }
                    steps.push(Step { name: (*name).into(), member: None });
                    map_at = Some((prefix.clone(), i));
                    ty = Ty::Str;
                }
                _ => {
                    let Some((member, result, params)) = lookup(ty, name, self.dialect) else {
                        let mut e = self.unknown_field(ty, name, text, &prefix);
                        if let Some((map, key)) = &map_at {
                            // `.Labels.com.docker.compose.service` meant one key with dots.
                            let key = names[*key..].join(".");
                            e.hint = Some(format!("a key with dots needs index, as in {{{{index {map} {key:?}}}}}"));
                        }
                        return Err(e);
                    };
                    match params {
                        None if given > 0 => {
                            return Err(
                                format!("{prefix}.{name} has arguments but cannot be invoked as function").into()
                            );
                        }
                        Some(params) if params.len() != given => {
                            let what = format!(
                                "wrong number of arguments for {prefix}.{name}: want {}, got {given}",
                                params.len()
                            );
                            return Err(match member {
                                Member::Format => problem(
                                    what,
                                    "give one quoted Go layout, as in {{.Time.Format \"2006-01-02T15:04:05Z07:00\"}}",
                                ),
                                Member::ContainerNameSplitN => problem(
                                    what,
                                    "give a separator and a count, as in {{.ContainerNameSplitN \".\" 2}}",
                                ),
                                _ => what.into(),
                            });
                        }
                        Some(params) if last => {
                            for (param, arg) in params.iter().zip(args) {
                                check_param(*param, arg, self.dialect)?;
                            }
                            if let (Some(fin), Some(param)) = (fin, params.last()) {
                                check_type(*param, fin, self.dialect)?;
                            }
                            if let (Member::Format, [Arg { operand: Operand::Str(s), .. }]) = (member, args) {
                                layout = Some(compile_layout(s).into_boxed_slice());
                            }
                        }
                        _ => {}
                    }
                    steps.push(Step { name: (*name).into(), member: Some(member) });
                    ty = result;
                }
            }
            prefix.push('.');
            prefix.push_str(name);
        }
        Ok((steps, ty, layout))
    }

    fn unknown_field(&self, ty: Ty, name: &str, text: &str, prefix: &str) -> Problem {
        let syslog_only = ty == Ty::Root
            && matches!(name, "Priority" | "Timestamp" | "ContainerName" | "ContainerNameSplitN" | "Hostname");
        if syslog_only {
            return problem(
                format!("field .{name} only exists in SYSLOG_* templates"),
                format!("in RAW_FORMAT use {RAW_FIELDS}"),
            );
        }
        let hint = match (ty, prefix) {
            (Ty::Root, _) => members_of(ty, self.dialect),
            (_, "") => format!("dot {}", members_of(ty, self.dialect).trim_start_matches("it ")),
            (_, prefix) => format!("{prefix} {}", members_of(ty, self.dialect).trim_start_matches("it ")),
        };
        problem(format!("unknown field {text}"), hint)
    }

    /// Checks a call's arguments and returns the type of its value.
    fn check_call(&self, func: Func, text: &str, args: &[Arg<'_>], fin: Option<Ty>) -> Compiled<Ty> {
        let given = args.len() + usize::from(fin.is_some());
        let (min, max) = func.arity();
        if given < min || max.is_some_and(|max| given > max) {
            let want = match max {
                Some(max) if max == min => format!("{min}"),
                Some(max) => format!("{min} to {max}"),
                None => format!("at least {min}"),
            };
            return Err(format!("wrong number of arguments for {text}: want {want}, got {given}").into());
        }
        let tys: Vec<(Ty, &str)> =
            args.iter().map(|a| (a.ty, a.text)).chain(fin.map(|t| (t, "the piped value"))).collect();
        match func {
            Func::And | Func::Or => {
                let first = tys[0].0;
                Ok(if tys.iter().all(|(t, _)| *t == first) { first } else { Ty::Any })
            }
            Func::Not | Func::Eq | Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => Ok(Ty::Bool),
            Func::Len => match tys[0].0 {
                Ty::Str | Ty::Map | Ty::List | Ty::Any | Ty::Nil => Ok(Ty::Int(IntTy::Int)),
                other => Err(format!("len of type {}", other.name(self.dialect)).into()),
            },
            Func::Index => index_type(&tys, args, self.dialect),
            Func::Printf => {
                match args.first() {
                    Some(arg) => check_param(Param::Str, arg, self.dialect)?,
                    None => check_type(Param::Str, tys[0].0, self.dialect)?,
                }
                for (ty, text) in &tys[1..] {
                    printable(*ty, self.dialect, text)?;
                }
                Ok(Ty::Str)
            }
            Func::Print | Func::Println | Func::Html | Func::Js | Func::UrlQuery | Func::ToJson => {
                for (ty, text) in &tys {
                    printable(*ty, self.dialect, text)?;
                }
                Ok(Ty::Str)
            }
        }
    }

    /// The fast form of an action that prints a field of the message, if it is one.
    fn lower(&self, pipe: &Pipe, dot: Ty) -> Option<Part> {
        let [cmd] = pipe.cmds.as_slice() else { return None };
        match cmd {
            Cmd::Chain { chain, args, layout } => match (args.as_slice(), layout) {
                ([], _) => Some(Part::Print(self.root_field(chain, dot)?)),
                ([Operand::Str(_)], Some(layout)) => {
                    let on_time = self.root_names(chain, dot)? == ["Time", "Format"];
                    on_time.then(|| Part::TimeFormat(layout.to_vec()))
                }
                _ => None,
            },
            Cmd::Call { func: Func::ToJson, args } => match args.as_slice() {
                [Operand::Chain(chain)] => Some(Part::Json(self.root_field(chain, dot)?)),
                _ => None,
            },
            Cmd::Call { func: Func::Index, args } => match args.as_slice() {
                [Operand::Chain(chain), Operand::Str(key)] if self.root_field(chain, dot)? == Field::Labels => {
                    Some(Part::IndexLabel(String::from_utf8(key.to_vec()).ok()?))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The names of a chain on the message, if it is one.
    fn root_names<'c>(&self, chain: &'c Chain, dot: Ty) -> Option<Vec<&'c str>> {
        let on_root = matches!(chain.base, Operand::Root) || (matches!(chain.base, Operand::Dot) && dot == Ty::Root);
        on_root.then(|| chain.steps.iter().map(|s| &*s.name).collect())
    }

    /// The field a chain on the message names, if it is one of the fast ones.
    fn root_field(&self, chain: &Chain, dot: Ty) -> Option<Field> {
        let syslog = self.dialect == Dialect::Syslog;
        Some(match self.root_names(chain, dot)?.as_slice() {
            ["Data"] => Field::Data,
            ["Source"] => Field::Source,
            ["Time"] => Field::Time,
            ["Time", "Unix"] => Field::TimeUnix,
            ["Container", "ID"] => Field::ContainerId,
            ["Container", "Name"] => Field::ContainerName,
            ["Container", "Image"] => Field::ImageId,
            ["Container", "Config", "Image"] => Field::ConfigImage,
            ["Container", "Config", "Hostname"] => Field::ConfigHostname,
            ["Container", "Config", "Labels"] => Field::Labels,
            ["Container", "Config", "Labels", key] => Field::Label(key.to_string()),
            ["Container", "Config", "Tty"] => Field::Tty,
            ["Container", "State", "Pid"] => Field::Pid,
            ["Priority"] if syslog => Field::Priority,
            ["Timestamp"] if syslog => Field::Timestamp,
            ["ContainerName"] if syslog => Field::BareName,
            ["Hostname"] if syslog => Field::Hostname(crate::format::os_hostname().to_string()),
            _ => return None,
        })
    }
}

/// Reads a pipeline's `$x :=`, `$x =` or (in `range`) `$k, $v :=`.
fn decls<'t>(p: &mut Cursor<'t>, context: &str, range: bool) -> Compiled<Decls<'t>> {
    let mut decls = Vec::new();
    while let Some(Tok::Var(name)) = p.peek_tok(0) {
        let name = *name;
        match p.peek_tok(1) {
            Some(Tok::Declare | Tok::Assign) => {
                decls.push((name, p.peek_tok(1) == Some(&Tok::Assign)));
                p.at += 2;
                return Ok(decls);
            }
            Some(Tok::Comma) if range && decls.is_empty() => {
                decls.push((name, false));
                p.at += 2;
            }
            Some(Tok::Comma) if !range => return Err(format!("too many declarations in {context}").into()),
            _ => break,
        }
    }
    if decls.is_empty() { Ok(decls) } else { Err("range can only initialize variables".into()) }
}

fn unknown_function(name: &str) -> Problem {
    match name {
        "if" | "else" | "end" | "range" | "with" | "break" | "continue" | "define" | "template" | "block" => {
            format!("unexpected {{{{{name}}}}} inside an action").into()
        }
        "call" | "slice" => problem(format!("function {name:?} is not supported"), FUNCTIONS),
        _ => problem(format!("unknown function {name:?}"), FUNCTIONS),
    }
}

/// The types of a range's key and element over a value of type `ty`.
fn range_types(ty: Ty, vars: usize, dialect: Dialect) -> Compiled<(Ty, Ty)> {
    match ty {
        Ty::Map => Ok((Ty::Str, Ty::Str)),
        Ty::List => Ok((Ty::Int(IntTy::Int), Ty::Str)),
        Ty::Int(t) if vars > 1 => Err(format!("can't use {} to iterate over more than one variable", t.name()).into()),
        Ty::Int(t) => Ok((ty, Ty::Int(t))),
        Ty::Any | Ty::Nil => Ok((Ty::Any, Ty::Any)),
        other => Err(format!("range can't iterate over a {}", other.name(dialect)).into()),
    }
}

/// Fails for values whose printed form luaspout does not reproduce.
fn printable(ty: Ty, dialect: Dialect, what: &str) -> Compiled<()> {
    if ty.is_struct() {
        return Err(problem(
            format!("can't print {what}, a Go struct ({})", ty.name(dialect)),
            "print one of its fields instead",
        ));
    }
    Ok(())
}

/// Checks an argument against a method's (or `printf`'s format's) parameter type, as Go's
/// `evalArg` does: literals must be of the right kind, other values of the right type.
fn check_param(param: Param, arg: &Arg<'_>, dialect: Dialect) -> Compiled<()> {
    match (&arg.operand, param) {
        (Operand::Str(_), Param::Str) | (Operand::Int(_), Param::Int) => Ok(()),
        (Operand::Str(_) | Operand::Int(_) | Operand::Bool(_), _) => {
            Err(format!("expected {}; found {}", param.name(), arg.text).into())
        }
        (Operand::Nil, _) => Err(format!("cannot assign nil to {}", param.name()).into()),
        _ => check_type(param, arg.ty, dialect),
    }
}

fn check_type(param: Param, ty: Ty, dialect: Dialect) -> Compiled<()> {
    if matches!(ty, Ty::Any | Ty::Nil) || ty == param.ty() {
        Ok(())
    } else {
        Err(format!("wrong type for value; expected {}; got {}", param.name(), ty.name(dialect)).into())
    }
}

/// The type of `index item key…`, checking what can be checked.
fn index_type(tys: &[(Ty, &str)], args: &[Arg<'_>], dialect: Dialect) -> Compiled<Ty> {
    let mut ty = tys[0].0;
    for (i, (key, _)) in tys.iter().enumerate().skip(1) {
        let literal = args.get(i).map(|a| &a.operand);
        ty = match ty {
            Ty::Map => match (literal, key) {
                (Some(Operand::Int(_) | Operand::Bool(_)), _) | (_, Ty::Int(_) | Ty::Bool) => {
                    return Err(format!("value has type {}; should be string", key.name(dialect)).into());
                }
                _ => Ty::Str,
            },
            Ty::List | Ty::Str => match key {
                Ty::Int(_) | Ty::Any | Ty::Nil => {
                    if ty == Ty::Str {
                        Ty::Int(IntTy::Uint8)
                    } else {
                        Ty::Str
                    }
                }
                other => return Err(format!("cannot index slice/array with type {}", other.name(dialect)).into()),
            },
            Ty::Any | Ty::Nil => Ty::Any,
            other => return Err(format!("can't index item of type {}", other.name(dialect)).into()),
        };
    }
    Ok(ty)
}

fn push_text(nodes: &mut Vec<Node>, text: &[u8]) {
    if text.is_empty() {
        return;
    }
    if let Some(Node::Text(prev)) = nodes.last_mut() {
        let mut joined = prev.to_vec();
        joined.extend_from_slice(text);
        *prev = joined.into_boxed_slice();
    } else {
        nodes.push(Node::Text(text.into()));
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// A value while rendering. Strings are bytes, as Go's are; `Missing` is Go's invalid value
/// (a missing map key reached through a field, `nil`), which prints `<no value>` in an action
/// and `<nil>` through `fmt`.
#[derive(Debug, Clone)]
enum Value<'a> {
    Missing,
    Str(Cow<'a, [u8]>),
    Int(i64, IntTy),
    Bool(bool),
    /// Nanoseconds since the epoch, in UTC.
    Time(i64),
    Map(&'a BTreeMap<String, String>),
    /// A `[]string`, and whether it is Go's nil slice (`ContainerNameSplitN` with a count of 0).
    List(Vec<Cow<'a, [u8]>>, bool),
    /// The message, and the structs inside it; they all refer to the message being rendered.
    Root,
    Container,
    Config,
    State,
}

/// What ends the walk of a list of nodes.
enum Flow {
    Next,
    Break,
    Continue,
}

/// The state of one rendering.
struct Exec<'a> {
    t: &'a Template,
    msg: &'a Message,
    vars: Vec<Value<'a>>,
}

fn bytes(s: &str) -> Value<'_> {
    Value::Str(Cow::Borrowed(s.as_bytes()))
}

fn owned<'a>(s: Vec<u8>) -> Value<'a> {
    Value::Str(Cow::Owned(s))
}

impl<'a> Exec<'a> {
    fn located(&self, at: usize, e: String) -> String {
        let action = &self.t.actions[at];
        format!("executing {:?} at line {}, column {}: {e}", action.text, action.line, action.column)
    }

    fn walk(&mut self, nodes: &'a [Node], dot: &Value<'a>, out: &mut Vec<u8>) -> Result<Flow, String> {
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
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Next)
    }

    /// Runs `body` for each element of `value`, storing the key and the element in the `slots`
    /// of `$k, $v :=`; returns whether there was any element.
    fn range(
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

    fn pipe(&mut self, pipe: &'a Pipe, dot: &Value<'a>) -> Result<Value<'a>, String> {
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
    fn cmd(&mut self, cmd: &'a Cmd, dot: &Value<'a>, fin: Option<Value<'a>>) -> Result<Value<'a>, String> {
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

    fn operand(&mut self, operand: &'a Operand, dot: &Value<'a>) -> Result<Value<'a>, String> {
        Ok(match operand {
            Operand::Dot => dot.clone(),
            Operand::Root => Value::Root,
            Operand::Var(slot) => self.vars[*slot].clone(),
            Operand::Str(s) => Value::Str(Cow::Borrowed(s)),
            Operand::Int(n) => Value::Int(*n, IntTy::Int),
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
    fn member(
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
            _ => {}
        }
        let cant = || format!("can't evaluate field {name} in type {}", type_name(&recv, dialect));
        let member = step.member.ok_or_else(cant)?;
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
            (Value::Root, M::Data) => field(Value::Str(Cow::Borrowed(&msg.data))),
            (Value::Root, M::Source) => field(bytes(msg.source.as_str())),
            (Value::Root, M::Time) => field(Value::Time(msg.time_ns)),
            (Value::Root, M::Container) => field(Value::Container),
            (Value::Root, M::Priority) if syslog => {
                method(0).map(|_| Value::Int(priority(msg.source), IntTy::Priority))
            }
            (Value::Root, M::Timestamp) if syslog => {
                method(0)?;
                let mut s = Vec::new();
                timefmt::write_rfc3339_seconds(msg.time_ns, &mut s);
                Ok(owned(s))
            }
            (Value::Root, M::ContainerName) if syslog => method(0).map(|_| bytes(&c.name)),
            (Value::Root, M::ContainerNameSplitN) if syslog => {
                method(2)?;
                let sep = want_str(&args[0], dialect)?;
                let n = want_int(&args[1], dialect)?;
                let parts = split_n(c.name.as_bytes(), sep, n).into_iter().map(Cow::Borrowed).collect();
                Ok(Value::List(parts, n == 0))
            }
            (Value::Root, M::Hostname) if syslog => method(0).map(|_| bytes(crate::format::os_hostname())),
            (Value::Container, M::Id) => field(bytes(&c.id)),
            (Value::Container, M::Name) => field(owned(format!("/{}", c.name).into_bytes())),
            (Value::Container, M::Image) => field(bytes(&c.image_id)),
            (Value::Container, M::Config) => field(Value::Config),
            (Value::Container, M::State) => field(Value::State),
            (Value::Config, M::Hostname) => field(bytes(&c.hostname)),
            (Value::Config, M::Image) => field(bytes(&c.image)),
            (Value::Config, M::Labels) => field(Value::Map(&c.labels)),
            (Value::Config, M::Env) => {
                let env = c.env.iter().map(|(k, v)| Cow::Owned(format!("{k}={v}").into_bytes())).collect();
                field(Value::List(env, false))
            }
            (Value::Config, M::Tty) => field(Value::Bool(c.tty)),
            (Value::State, M::Pid) => field(Value::Int(c.pid, IntTy::Int)),
            (Value::Time(ns), M::Format) => {
                method(1)?;
                let mut s = Vec::new();
                match layout {
                    Some(layout) => format_time(layout, *ns, &mut s),
                    None => format_time(&compile_layout(want_str(&args[0], dialect)?), *ns, &mut s),
                }
                Ok(owned(s))
            }
            (Value::Time(ns), M::Unix) => method(0).map(|_| Value::Int(unix_seconds(*ns), IntTy::Int64)),
            (Value::Time(ns), M::UnixNano) => method(0).map(|_| Value::Int(*ns, IntTy::Int64)),
            (Value::Time(ns), M::UnixMilli) => method(0).map(|_| Value::Int(ns.div_euclid(1_000_000), IntTy::Int64)),
            (Value::Time(ns), M::UnixMicro) => method(0).map(|_| Value::Int(ns.div_euclid(1_000), IntTy::Int64)),
            (Value::Time(ns), M::Utc) => method(0).map(|_| Value::Time(*ns)),
            (Value::Time(ns), M::String) => {
                method(0)?;
                let mut s = Vec::new();
                timefmt::write_go_time_string(*ns, &mut s);
                Ok(owned(s))
            }
            _ => Err(cant()),
        }
    }

    /// Calls a function. `and` and `or` evaluate their arguments only as far as needed.
    fn call(
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
                write_json(&vals[0], dialect, &mut out)?;
                text(out)
            }
        }
    }
}

/// Go's `isTrue`: the zero value of each type, nil and missing values are false.
fn truth(v: &Value<'_>) -> bool {
    match v {
        Value::Missing => false,
        Value::Str(s) => !s.is_empty(),
        Value::Int(n, _) => *n != 0,
        Value::Bool(b) => *b,
        Value::Map(m) => !m.is_empty(),
        Value::List(l, _) => !l.is_empty(),
        Value::Time(_) | Value::Root | Value::Container | Value::Config | Value::State => true,
    }
}

/// The Go type of a value, as `%T` and error messages show it.
fn type_name(v: &Value<'_>, dialect: Dialect) -> &'static str {
    match v {
        Value::Missing => "<nil>",
        Value::Str(_) => "string",
        Value::Int(_, t) => t.name(),
        Value::Bool(_) => "bool",
        Value::Time(_) => "time.Time",
        Value::Map(_) => "map[string]string",
        Value::List(..) => "[]string",
        Value::Root => root_type_name(dialect),
        Value::Container => "*docker.Container",
        Value::Config => "*docker.Config",
        Value::State => "docker.State",
    }
}

/// A value as `%v` prints it, for error messages.
fn display(v: &Value<'_>, dialect: Dialect) -> String {
    let mut out = Vec::new();
    if Printer::new(&mut out, dialect).arg(v, 'v').is_err() {
        return type_name(v, dialect).to_string();
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Prints the value of an action, as Go's template engine does.
fn print_value(v: &Value<'_>, dialect: Dialect, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Missing => {
            out.extend_from_slice(b"<no value>");
            Ok(())
        }
        Value::Str(s) => {
            out.extend_from_slice(s);
            Ok(())
        }
        v => Printer::new(out, dialect).arg(v, 'v'),
    }
}

/// The string a `string` parameter receives, or Go's complaint.
fn want_str<'v>(v: &'v Value<'_>, dialect: Dialect) -> Result<&'v [u8], String> {
    match v {
        Value::Str(s) => Ok(s),
        Value::Missing => Err("invalid value; expected string".into()),
        other => Err(format!("wrong type for value; expected string; got {}", type_name(other, dialect))),
    }
}

/// The integer an `int` parameter receives, or Go's complaint.
fn want_int(v: &Value<'_>, dialect: Dialect) -> Result<i64, String> {
    match v {
        Value::Int(n, IntTy::Int) => Ok(*n),
        Value::Missing => Err("invalid value; expected int".into()),
        other => Err(format!("wrong type for value; expected int; got {}", type_name(other, dialect))),
    }
}

/// Go's `strings.SplitN`.
fn split_n<'s>(s: &'s [u8], sep: &[u8], n: i64) -> Vec<&'s [u8]> {
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
enum Kind {
    Invalid,
    Bool,
    Int,
    Uint,
    Str,
}

fn basic_kind(v: &Value<'_>) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_, IntTy::Uint8) => Kind::Uint,
        Value::Int(..) => Kind::Int,
        Value::Str(_) => Kind::Str,
        _ => Kind::Invalid,
    }
}

fn int_of(v: &Value<'_>) -> i64 {
    match v {
        Value::Int(n, _) => *n,
        _ => 0,
    }
}

/// Go's `eq`: whether `a` equals any of `others`.
fn eq(a: &Value<'_>, others: &[Value<'_>], dialect: Dialect) -> Result<bool, String> {
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
fn lt(a: &Value<'_>, b: &Value<'_>, dialect: Dialect) -> Result<bool, String> {
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
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        _ => Err("invalid type for comparison".into()),
    }
}

fn le(a: &Value<'_>, b: &Value<'_>, dialect: Dialect) -> Result<bool, String> {
    Ok(lt(a, b, dialect)? || eq(a, std::slice::from_ref(b), dialect)?)
}

/// Go's `len`.
fn length<'a>(v: &Value<'a>, dialect: Dialect) -> Result<Value<'a>, String> {
    let n = match v {
        Value::Str(s) => s.len(),
        Value::Map(m) => m.len(),
        Value::List(l, _) => l.len(),
        Value::Missing => return Err("reflect: call of reflect.Value.Type on zero Value".into()),
        other => return Err(format!("len of type {}", type_name(other, dialect))),
    };
    Ok(Value::Int(n as i64, IntTy::Int))
}

/// Go's `index`: `index x 1 2` is `x[1][2]`; a missing map key gives the empty string.
fn index<'a>(item: Value<'a>, keys: impl Iterator<Item = Value<'a>>, dialect: Dialect) -> Result<Value<'a>, String> {
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
            other => return Err(format!("can't index item of type {}", type_name(other, dialect))),
        };
    }
    Ok(item)
}

/// The text of `html`, `js` and `urlquery`'s arguments: a lone string as is, otherwise
/// `fmt.Sprint` of them with a missing value as `<no value>`.
fn eval_args(vals: &[Value<'_>], dialect: Dialect) -> Result<Vec<u8>, String> {
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
fn html_escape(s: &[u8], out: &mut Vec<u8>) {
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
fn js_escape(s: &[u8], out: &mut Vec<u8>) {
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
fn query_escape(s: &[u8], out: &mut Vec<u8>) {
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
fn write_json(v: &Value<'_>, dialect: Dialect, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Missing => out.extend_from_slice(b"null"),
        Value::Str(s) => write_json_string(&[s], out),
        Value::Int(n, _) => timefmt::write_i64(*n, out),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Time(ns) => {
            out.push(b'"');
            timefmt::write_rfc3339_nanos(*ns, out);
            out.push(b'"');
        }
        Value::Map(m) => {
            out.push(b'{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(&[k.as_bytes()], out);
                out.push(b':');
                write_json_string(&[v.as_bytes()], out);
            }
            out.push(b'}');
        }
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
        other => return Err(format!("toJSON of a Go struct ({}) is not supported", type_name(other, dialect))),
    }
    Ok(())
}

/// Appends the fast form of an action.
fn render_part(part: &Part, msg: &Message, out: &mut Vec<u8>) {
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

// ---------------------------------------------------------------------------------------------
// Go's fmt
// ---------------------------------------------------------------------------------------------

/// The flags, width and precision of one verb.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    wid: usize,
    wid_present: bool,
    prec: usize,
    prec_present: bool,
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    /// `%+v` and `%#v`, which print differently rather than add a sign or a prefix.
    plus_v: bool,
    sharp_v: bool,
}

/// Go's `fmt` printer (`pp` and `fmt`) for the values a template has.
struct Printer<'o> {
    buf: &'o mut Vec<u8>,
    f: Flags,
    dialect: Dialect,
}

/// Go's `fmt` refuses widths and precisions above this.
const MAX_WIDTH: usize = 1_000_000;

impl<'o> Printer<'o> {
    fn new(buf: &'o mut Vec<u8>, dialect: Dialect) -> Printer<'o> {
        Printer { buf, f: Flags::default(), dialect }
    }

    fn write_padding(&mut self, n: usize) {
        let pad = if self.f.zero && !self.f.minus { b'0' } else { b' ' };
        self.buf.resize(self.buf.len() + n, pad);
    }

    /// Writes `b` padded to the width, on the left unless `-`.
    fn pad(&mut self, b: &[u8]) {
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
    fn truncate<'s>(&self, s: &'s [u8]) -> &'s [u8] {
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

    fn fmt_s(&mut self, s: &[u8]) {
        let s = self.truncate(s);
        self.pad(s);
    }

    /// `%x` of a string: its bytes in hexadecimal.
    fn fmt_sx(&mut self, s: &[u8], upper: bool) {
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
    fn fmt_q(&mut self, s: &[u8]) {
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
    fn fmt_integer(&mut self, u: u64, base: u64, signed: bool, verb: char, upper: bool) {
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
    fn fmt_unicode(&mut self, u: u64) {
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

    fn rune(u: u64) -> char {
        u32::try_from(u).ok().and_then(char::from_u32).unwrap_or('\u{fffd}')
    }

    fn fmt_int(&mut self, v: &Value<'_>, n: i64, signed: bool, verb: char) {
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

    fn fmt_string(&mut self, s: &[u8], verb: char, v: &Value<'_>) {
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
    fn bad_verb(&mut self, verb: char, v: &Value<'_>) {
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
    fn arg(&mut self, v: &Value<'_>, verb: char) -> Result<(), String> {
        if v_is_struct(v) {
            return Err(format!("printing a Go struct ({}) is not supported", type_name(v, self.dialect)));
        }
        match (v, verb) {
            (Value::Missing, 'T' | 'v') => self.pad(b"<nil>"),
            (Value::Missing, _) => self.bad_verb(verb, v),
            (_, 'T') => self.fmt_s(type_name(v, self.dialect).as_bytes()),
            // Addresses are not reproducible; nothing prints them usefully in a log line.
            (_, 'p') => self.bad_verb(verb, v),
            (Value::Bool(b), 't' | 'v') => self.pad(if *b { b"true" } else { b"false" }),
            (Value::Bool(_), _) => self.bad_verb(verb, v),
            (Value::Int(n, t), _) => self.fmt_int(v, *n, *t != IntTy::Uint8, verb),
            (Value::Str(s), _) => self.fmt_string(s, verb, v),
            (Value::Time(ns), _) => {
                if self.f.sharp_v {
                    self.fmt_s(go_syntax_time(*ns).as_bytes());
                } else {
                    let mut s = Vec::new();
                    timefmt::write_go_time_string(*ns, &mut s);
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
            (Value::Root | Value::Container | Value::Config | Value::State, _) => unreachable!("rejected above"),
        }
        Ok(())
    }

    /// Go's `Sprint` (spaces between operands when neither is a string) or `Sprintln` (spaces
    /// always, and a newline).
    fn print(&mut self, vals: &[Value<'_>], ln: bool) -> Result<(), String> {
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
    fn printf(&mut self, format: &[u8], args: &[Value<'_>]) -> Result<(), String> {
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

fn v_is_struct(v: &Value<'_>) -> bool {
    matches!(v, Value::Root | Value::Container | Value::Config | Value::State)
}

/// Go's `parsenum`: the number at `format[start..end]`, whether there was one, and where it
/// ends (`end` if it is absurdly large).
fn parse_num(format: &[u8], start: usize, end: usize) -> (usize, bool, usize) {
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
fn arg_number(
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
fn int_from_arg(args: &[Value<'_>], arg_num: usize) -> (isize, bool, usize) {
    let Some(v) = args.get(arg_num) else { return (0, false, arg_num) };
    match v {
        Value::Int(n, _) if n.unsigned_abs() <= MAX_WIDTH as u64 => (*n as isize, true, arg_num + 1),
        _ => (0, false, arg_num + 1),
    }
}

/// `time.Time.GoString` of a UTC time.
fn go_syntax_time(ns: i64) -> String {
    let t = Civil::from_nanos(ns);
    let month = MONTHS[(t.month - 1) as usize];
    format!(
        "time.Date({}, time.{month}, {}, {}, {}, {}, {}, time.UTC)",
        t.year, t.day, t.hour, t.minute, t.second, t.nanos
    )
}

/// The character at the start of `s` and its length, as Go's `utf8.DecodeRune`: `None` (Go's
/// `RuneError`) for each byte of invalid UTF-8.
fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
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
fn rune_count(s: &[u8]) -> usize {
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
fn is_print(c: char) -> bool {
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
fn can_backquote(s: &[u8]) -> bool {
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
fn quote(s: &[u8], q: u8, ascii: bool, out: &mut Vec<u8>) {
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
fn quote_rune(c: char, ascii: bool, out: &mut Vec<u8>) {
    out.push(b'\'');
    escape_rune(c, b'\'', ascii, out);
    out.push(b'\'');
}

/// Go's `appendEscapedRune`.
fn escape_rune(c: char, q: u8, ascii: bool, out: &mut Vec<u8>) {
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

// ---------------------------------------------------------------------------------------------
// The fast forms, JSON and time layouts
// ---------------------------------------------------------------------------------------------

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
fn compile_layout(layout: &[u8]) -> Vec<LayoutItem> {
    let b = layout;
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

    fn msg_named(name: &str, data: &[u8], source: Source) -> Message {
        let labels = [("a<b", "x&y"), ("app", "web"), ("env", "prod")];
        let container = Container {
            id: "3b6ba57db54a0c7d0e2b9f7c1d7a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d".into(),
            name: name.into(),
            image: "nginx:1.25".into(),
            image_id: "sha256:abc".into(),
            hostname: "8dfafdbc3a40".into(),
            pid: 4242,
            labels: BTreeMap::from(labels.map(|(k, v)| (k.to_string(), v.to_string()))),
            env: vec![("PATH".into(), "/usr/bin".into()), ("A".into(), "1".into())],
            ..Default::default()
        };
        Message { container: Arc::new(container), source, time_ns: T, data: Bytes::copy_from_slice(data), ack: None }
    }

    fn msg(data: &[u8], source: Source) -> Message {
        msg_named("web_1", data, source)
    }

    fn compile(text: &str, dialect: Dialect) -> Template {
        Template::compile(text, dialect).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Renders and checks that nothing failed.
    fn render_at(text: &str, dialect: Dialect, m: &Message) -> Vec<u8> {
        let t = compile(text, dialect);
        let mut out = Vec::new();
        t.render(m, &mut out);
        assert_eq!(t.errors(), 0, "{text}: {:?}", t.last_error());
        out
    }

    fn raw(text: &str, data: &str) -> String {
        String::from_utf8(render_at(text, Dialect::Raw, &msg(data.as_bytes(), Source::Stdout))).unwrap()
    }

    fn compile_err(text: &str, dialect: Dialect) -> String {
        Template::compile(text, dialect).expect_err(text).to_string()
    }

    /// Renders each `(template, expected)` case against `m`, reporting every mismatch at once.
    fn check(dialect: Dialect, m: &Message, cases: &[(&str, &str)]) {
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|(text, want)| {
                let got = String::from_utf8_lossy(&render_at(text, dialect, m)).into_owned();
                (got != *want).then(|| format!("{text}\n   got {got:?}\n  want {want:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    }

    #[test]
    fn reference_raw_vectors() {
        // logspout.md §9.4, raw adapter, and the README's multiline advice.
        let quoted = r#"a <b> & "c""#;
        assert_eq!(raw("{{.Data}}\n", "hi"), "hi\n");
        assert_eq!(raw("{{toJSON .Data}}\n", quoted), "\"a \\u003cb\\u003e \\u0026 \\\"c\\\"\"\n");
        assert_eq!(raw("{{ toJSON .Data }}\n", quoted), "\"a \\u003cb\\u003e \\u0026 \\\"c\\\"\"\n");
        assert_eq!(raw("{{.Container.Config.Labels.nope}}", "x"), "<no value>");
        assert_eq!(raw(r#"{{index .Container.Config.Labels "nope"}}"#, "x"), "");
    }

    #[test]
    fn readme_full_json_template() {
        // logspout.md §5.2, byte for byte what Go prints: Name keeps its `/`, toJSON sorts the
        // labels and HTML-escapes keys and values, é stays UTF-8, the layout gives `Z` in UTC.
        let text = r#"{ "container" : "{{ .Container.Name }}", "labels": {{ toJSON .Container.Config.Labels }}, "timestamp": "{{ .Time.Format "2006-01-02T15:04:05Z07:00" }}", "source" : "{{ .Source }}", "message": {{ toJSON .Data }} }"#;
        let want = r#"{ "container" : "/web_1", "labels": {"a\u003cb":"x\u0026y","app":"web","env":"prod"}, "timestamp": "2021-12-06T15:27:06Z", "source" : "stderr", "message": "multi\nline \"é\" \u003cx\u003e" }"#;
        let m = msg("multi\nline \"é\" <x>".as_bytes(), Source::Stderr);
        let out = render_at(text, Dialect::Raw, &m);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "multi\nline \"é\" <x>");

        // The same through the general evaluator.
        let general = r#"{ "container" : "{{ (.Container.Name) }}", "labels": {{ .Container.Config.Labels | toJSON }}, "timestamp": "{{ "2006-01-02T15:04:05Z07:00" | .Time.Format }}", "source" : "{{ $.Source | print }}", "message": {{ (toJSON .Data) }} }"#;
        assert_eq!(String::from_utf8(render_at(general, Dialect::Raw, &m)).unwrap(), want);
    }

    #[test]
    fn fast_forms_print_what_the_evaluator_prints() {
        let fields = [
            ".Data",
            ".Source",
            ".Time",
            ".Time.Unix",
            ".Container.ID",
            ".Container.Name",
            ".Container.Image",
            ".Container.Config.Image",
            ".Container.Config.Hostname",
            ".Container.Config.Labels",
            ".Container.Config.Labels.env",
            ".Container.Config.Labels.nope",
            ".Container.Config.Tty",
            ".Container.State.Pid",
        ];
        let mut exprs: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
        exprs.extend(fields.iter().map(|f| format!("toJSON {f}")));
        exprs.extend([
            r#"index .Container.Config.Labels "env""#.to_string(),
            r#"index .Container.Config.Labels "nope""#.to_string(),
            r#"index $.Container.Config.Labels "a<b""#.to_string(),
            r#".Time.Format "Mon Jan _2 15:04:05.000 MST 2006""#.to_string(),
        ]);
        let syslog = [".Priority", ".Timestamp", ".ContainerName", ".Hostname"];
        let cases = exprs
            .iter()
            .map(|e| (Dialect::Raw, e.clone()))
            .chain(syslog.iter().flat_map(|f| [f.to_string(), format!("toJSON {f}")]).map(|e| (Dialect::Syslog, e)));
        for source in [Source::Stdout, Source::Stderr] {
            let m = msg(b"tab\t\xff <\xe2\x80\xa8>", source);
            for (dialect, expr) in cases.clone() {
                let fast = compile(&format!("{{{{{expr}}}}}"), dialect);
                assert!(matches!(fast.nodes.as_slice(), [Node::Part(_)]), "{expr} is not a fast form");
                let general = compile(&format!("{{{{({expr})}}}}"), dialect);
                assert!(matches!(general.nodes.as_slice(), [Node::Action { .. }]));
                let (mut a, mut b) = (Vec::new(), Vec::new());
                fast.render(&m, &mut a);
                general.render(&m, &mut b);
                assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{expr}");
                assert_eq!(general.errors(), 0, "{expr}: {:?}", general.last_error());
            }
        }
    }

    #[test]
    fn default_templates_take_the_fast_path() {
        // logspout's defaults: RAW_FORMAT and the SYSLOG_* variables.
        let defaults = [
            (Dialect::Raw, "{{.Data}}\n"),
            (Dialect::Syslog, "{{.Priority}}"),
            (Dialect::Syslog, "{{.Timestamp}}"),
            (Dialect::Syslog, "{{.Container.Config.Hostname}}"),
            (Dialect::Syslog, "{{.ContainerName}}.db"),
            (Dialect::Syslog, "{{.Container.State.Pid}}"),
            (Dialect::Syslog, "{{.Data}}"),
            (Dialect::Syslog, "-"),
        ];
        for (dialect, text) in defaults {
            let t = compile(text, dialect);
            assert!(t.nodes.iter().all(|n| matches!(n, Node::Text(_) | Node::Part(_))), "{text}");
            assert_eq!(t.slots, 0);
        }
    }

    #[test]
    fn fields_print_as_go_does() {
        let m = msg(b"hello", Source::Stdout);
        check(
            Dialect::Raw,
            &m,
            &[
                (
                    "{{.Source}} {{.Container.ID}}",
                    "stdout 3b6ba57db54a0c7d0e2b9f7c1d7a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d",
                ),
                (
                    "{{.Container.Name}} {{.Container.Image}} {{.Container.Config.Image}}",
                    "/web_1 sha256:abc nginx:1.25",
                ),
                (
                    "{{.Container.Config.Hostname}} {{.Container.State.Pid}} {{.Container.Config.Tty}}",
                    "8dfafdbc3a40 4242 false",
                ),
                ("{{.Container.Config.Labels}}", "map[a<b:x&y app:web env:prod]"),
                ("{{.Container.Config.Labels.env}}", "prod"),
                (r#"{{index .Container.Config.Labels "a<b"}}"#, "x&y"),
                ("{{.Container.Config.Env}}", "[PATH=/usr/bin A=1]"),
                ("{{toJSON .Container.Config.Env}}", r#"["PATH=/usr/bin","A=1"]"#),
                ("{{.Time}}", "2021-12-06 15:27:06.123456789 +0000 UTC"),
                ("{{.Time.String}}", "2021-12-06 15:27:06.123456789 +0000 UTC"),
                ("{{.Time.Unix}} {{.Time.UnixNano}}", "1638804426 1638804426123456789"),
                ("{{.Time.UnixMilli}} {{.Time.UnixMicro}}", "1638804426123 1638804426123456"),
                (
                    r#"{{.Time.UTC.Format "15:04"}} {{(.Time).Format "2006"}} {{"Jan" | .Time.Format}}"#,
                    "15:27 2021 Dec",
                ),
                ("<{{.Data}}>", "<hello>"),
                ("{{$.Data}} {{$.Container.Config.Labels.app}}", "hello web"),
            ],
        );
    }

    #[test]
    fn data_bytes_are_written_raw() {
        let m = msg(b"\xff\x00ok", Source::Stdout);
        assert_eq!(render_at("{{.Data}}", Dialect::Raw, &m), b"\xff\x00ok");
        assert_eq!(render_at("{{toJSON .Data}}", Dialect::Raw, &m), b"\"\\ufffd\\u0000ok\"");
        assert_eq!(
            render_at("{{printf \"%s|%q|%x\" .Data .Data .Data}}", Dialect::Raw, &m),
            b"\xff\x00ok|\"\\xff\\x00ok\"|ff006f6b"
        );
    }

    #[test]
    fn to_json_matches_go() {
        let m = msg(b"", Source::Stdout);
        check(
            Dialect::Raw,
            &m,
            &[
                ("{{toJSON .Container.Name}} {{toJSON .Source}}", r#""/web_1" "stdout""#),
                ("{{toJSON .Container.Config.Labels}}", r#"{"a\u003cb":"x\u0026y","app":"web","env":"prod"}"#),
                ("{{toJSON .Container.Config.Labels.env}} {{toJSON .Container.Config.Labels.nope}}", r#""prod" null"#),
                ("{{toJSON .Time}} {{toJSON .Time.Unix}}", r#""2021-12-06T15:27:06.123456789Z" 1638804426"#),
                ("{{toJSON .Container.State.Pid}} {{toJSON .Container.Config.Tty}}", "4242 false"),
                ("{{toJSON 1}} {{toJSON true}} {{toJSON nil}} {{toJSON (len .Data)}}", "1 true null 0"),
                ("{{toJSON (index .Container.Config.Env 1)}}", r#""A=1""#),
            ],
        );
        for (data, want) in [
            ("tab\there\r\n\u{1b}\u{7f}", "\"tab\\there\\r\\n\\u001b\u{7f}\""),
            ("a\u{2028}b\u{2029}é€😀", "\"a\\u2028b\\u2029é€😀\""),
            ("\\", r#""\\""#),
        ] {
            assert_eq!(raw("{{toJSON .Data}}", data), want);
            assert_eq!(raw("{{.Data | toJSON}}", data), want);
        }
        // Each byte of a broken sequence is its own U+FFFD, as Go decodes it.
        let m = msg(b"\xe2\x82 \xed\xa0\x80 \xc0\xaf", Source::Stdout);
        assert_eq!(
            String::from_utf8(render_at("{{toJSON .Data}}", Dialect::Raw, &m)).unwrap(),
            r#""\ufffd\ufffd \ufffd\ufffd\ufffd \ufffd\ufffd""#
        );
        let mut m = msg(b"", Source::Stdout);
        Arc::make_mut(&mut m.container).image = "a\"b".into();
        Arc::make_mut(&mut m.container).labels.clear();
        Arc::make_mut(&mut m.container).env.clear();
        let text = "{{toJSON .Container.Config.Image}} {{toJSON .Container.Config.Labels}} {{.Container.Config.Labels}} \
                    {{.Container.Config.Env}} {{toJSON .Container.Config.Env}}";
        assert_eq!(render_at(text, Dialect::Raw, &m), br#""a\"b" {} map[] [] []"#);
    }

    #[test]
    fn syslog_fields() {
        let m = msg_named("svc.1.abcdef", b"hi", Source::Stderr);
        let hostname = crate::format::os_hostname();
        check(
            Dialect::Syslog,
            &m,
            &[
                ("{{.Priority}} {{.Timestamp}} {{.ContainerName}}", "11 2021-12-06T15:27:06Z svc.1.abcdef"),
                (
                    "{{toJSON .Priority}} {{toJSON .Timestamp}} {{toJSON .ContainerName}}",
                    r#"11 "2021-12-06T15:27:06Z" "svc.1.abcdef""#,
                ),
                (r#"{{.Time.Format "Jan _2 15:04:05"}}"#, "Dec  6 15:27:06"),
                ("{{.Hostname}}", hostname),
                ("{{(.Hostname)}}", hostname),
                (r#"{{ index (.ContainerNameSplitN "." 2) 0 }}"#, "svc"),
                (r#"{{ index (.ContainerNameSplitN "." 2) 1 }}"#, "1.abcdef"),
                (r#"{{ .ContainerNameSplitN "." -1 }}"#, "[svc 1 abcdef]"),
                (r#"{{ .ContainerNameSplitN "." 0 }} {{ toJSON (.ContainerNameSplitN "." 0) }}"#, "[] null"),
                (
                    r#"{{ .ContainerNameSplitN "" 3 }} {{ .ContainerNameSplitN "_" 5 }}"#,
                    "[s v c.1.abcdef] [svc.1.abcdef]",
                ),
                (r#"{{ .ContainerNameSplitN ".1." 9 }} {{ len (.ContainerNameSplitN "." -1) }}"#, "[svc abcdef] 3"),
                (r#"{{ range .ContainerNameSplitN "." -1 }}<{{.}}>{{ end }}"#, "<svc><1><abcdef>"),
                (r#"{{ $parts := .ContainerNameSplitN "." 2 }}{{ index $parts 0 }}"#, "svc"),
                (r#"{{ index (.ContainerNameSplitN "." 2) 0 | printf "%.2s" }}"#, "sv"),
                (r#"{{ range (.ContainerNameSplitN "." 0) }}x{{ else }}none{{ end }}"#, "none"),
                (
                    r#"{{ printf "%d|%v|%T|%q" .Priority .Priority .Priority .Priority }}"#,
                    "11|11|syslog.Priority|'\\v'",
                ),
                ("{{ if eq .Priority 11 }}err{{ end }}{{ if lt .Priority 12 }}<12{{ end }}", "err<12"),
            ],
        );
        assert_eq!(
            String::from_utf8(render_at("{{.Priority}}", Dialect::Syslog, &msg(b"", Source::Stdout))).unwrap(),
            "14"
        );
        assert!(!hostname.contains("{{"), "quirk Q12 fixed: not the template text");
        for field in ["Priority", "Timestamp", "ContainerName", "ContainerNameSplitN", "Hostname"] {
            let e = compile_err(&format!("{{{{.{field}}}}}"), Dialect::Raw);
            assert!(
                e.starts_with(&format!("field .{field} only exists in SYSLOG_* templates in \"{{{{.{field}}}}}\"")),
                "{e}"
            );
        }
    }

    #[test]
    fn control_structures() {
        let m = msg(b"hello", Source::Stdout);
        check(
            Dialect::Raw,
            &m,
            &[
                (r#"{{if eq .Source "stderr"}}ERR{{else}}OUT{{end}}"#, "OUT"),
                (
                    r#"{{if .Container.Config.Labels.nope}}a{{else if .Container.Config.Labels.app}}b{{else}}c{{end}}"#,
                    "b",
                ),
                (r#"{{if false}}a{{else if 0}}b{{else if ""}}c{{else}}d{{end}}"#, "d"),
                ("{{with .Container.Config.Labels.app}}app={{.}}{{end}}", "app=web"),
                ("{{with .Container.Config.Labels.nope}}x{{else}}none{{end}}", "none"),
                (
                    "{{with .Container.Config.Labels.nope}}x{{else with .Container.Config.Labels.env}}{{.}}{{end}}",
                    "prod",
                ),
                ("{{with $x := .Container.Config.Labels.env}}{{$x}}/{{.}}{{end}}", "prod/prod"),
                ("{{with .Container}}{{.Name}} {{.Config.Hostname}} {{$.Data}}{{end}}", "/web_1 8dfafdbc3a40 hello"),
                ("{{range $k, $v := .Container.Config.Labels}}{{$k}}={{$v}};{{end}}", "a<b=x&y;app=web;env=prod;"),
                ("{{range .Container.Config.Labels}}[{{.}}]{{end}}", "[x&y][web][prod]"),
                ("{{range $v := .Container.Config.Labels}}{{$v}}{{end}}", "x&ywebprod"),
                ("{{range $i, $e := .Container.Config.Env}}{{$i}}:{{$e}} {{end}}", "0:PATH=/usr/bin 1:A=1 "),
                (r#"{{range .Container.Config.Env}}{{if eq . "A=1"}}{{break}}{{end}}{{.}},{{end}}"#, "PATH=/usr/bin,"),
                (r#"{{range .Container.Config.Env}}{{if ne . "A=1"}}{{continue}}{{end}}{{.}},{{end}}"#, "A=1,"),
                ("{{range 3}}{{.}}{{end}}|{{range 0}}x{{else}}empty{{end}}", "012|empty"),
                (
                    "{{range $k, $v := .Container.Config.Labels}}{{range $.Container.Config.Env}}{{$k}}{{end}}{{end}}",
                    "a<ba<bappappenvenv",
                ),
                ("{{$n := 0}}{{range .Container.Config.Labels}}{{$n = .}}{{end}}{{$n}}", "prod"),
                ("{{$x := .Source}}{{$x}} {{$x := 1}}{{$x}}", "stdout 1"),
                ("{{if true}}{{$x := 1}}{{$x}}{{end}}{{$x := 2}}{{$x}}", "12"),
                ("{{- if true -}}  yes  {{- end -}}", "yes"),
                ("a{{/* comment */}}b{{- /* trimmed */ -}} c", "abc"),
                ("{{if and .Data (not .Container.Config.Tty)}}tty-off{{end}}", "tty-off"),
                (
                    r#"{{or .Container.Config.Labels.nope "default"}} {{and .Data .Source}} [{{and "" .Source}}]"#,
                    "default stdout []",
                ),
                (r#"{{if or (eq .Source "stdout") (eq .Source "stderr")}}std{{end}}"#, "std"),
                (r#"{{.Data | or ""}} {{"" | and 1}}."#, "hello ."),
                ("{{and .Container.Config.Labels.nope 1}}", "<no value>"),
            ],
        );
        let m = msg(b"hello", Source::Stderr);
        check(Dialect::Raw, &m, &[(r#"{{if eq .Source "stderr"}}ERR{{else}}OUT{{end}}"#, "ERR")]);
    }

    #[test]
    fn functions() {
        let m = msg(b"hello", Source::Stdout);
        check(
            Dialect::Raw,
            &m,
            &[
                (
                    r#"{{eq .Source "a" "b" "stdout"}} {{eq 1 2}} {{eq .Container.Config.Labels.nope "x"}}"#,
                    "true false false",
                ),
                (
                    r#"{{eq .Container.Config.Labels.nope nil}} {{ne .Data "x"}} {{eq 'h' (index .Data 0)}}"#,
                    "true true true",
                ),
                (r#"{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}}"#, "true true true true false"),
                ("{{eq .Container.State.Pid 4242}} {{lt .Time.Unix 0}} {{eq .Time .Time}}", "true false true"),
                (
                    "{{len .Data}} {{len .Container.Config.Labels}} {{len .Container.Config.Env}} {{len \"é\"}}",
                    "5 3 2 2",
                ),
                (
                    "{{index .Container.Config.Env 1}} {{index .Data 0}} {{index .Container.Config.Labels \"app\"}}",
                    "A=1 104 web",
                ),
                ("{{index .Container.Config.Env 1 0}} {{index .Container.Config.Env}}", "65 [PATH=/usr/bin A=1]"),
                ("{{not .Data}} {{not 0}} {{not .Container.Config.Labels.nope}}", "false true true"),
                (r#"{{.Data | printf "%s!"}}"#, "hello!"),
                (r#"{{printf "%-6s|%q" .Source .Data}}"#, r#"stdout|"hello""#),
                (r#"{{.Data | printf "%q" | printf "%s."}}"#, r#""hello"."#),
                (r#"{{(printf "%s-%s" .Source .Data) | len}} {{"a" | printf "%s%s" "b"}}"#, "12 ba"),
                (r#"{{print .Data 1 2 "x" 3 nil}}|{{println .Data 1}}"#, "hello1 2x3 <nil>|hello 1\n"),
                (
                    r#"{{html "<a href='x'>&</a>"}} {{html 1 "a" 2}} {{html .Container.Config.Labels.nope}}"#,
                    "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt; 1a2 &lt;no value&gt;",
                ),
                (r#"{{js "it's <b> = \"x\"\n"}}"#, r#"it\'s \u003Cb\u003E \u003D \"x\"\u000A"#),
                (r#"{{urlquery "a b&c=d/é~"}}"#, "a+b%26c%3Dd%2F%C3%A9~"),
                (
                    r#"{{printf "%v|%s" nil .Container.Config.Labels.nope}} {{print .Container.Config.Labels.nope}}"#,
                    "<nil>|%!s(<nil>) <nil>",
                ),
                (
                    "{{ 'a' }} {{ 0x1F }} {{ -0b101 }} {{ 0o17 }} {{ 017 }} {{ 1_000 }} {{ +7 }}",
                    "97 31 -5 15 15 1000 7",
                ),
                (
                    "{{ \"\\u00e9\\x41\\101\" }} {{ `raw\\n` }} {{ '\\n' }} {{ '\\'' }} {{ 'é' }}",
                    "éAA raw\\n 10 39 233",
                ),
                ("{{ true }} {{ \"text\" }} {{ 42 }} {{ .Data | len }}", "true text 42 5"),
                ("{{.Data |}}", "hello"),
            ],
        );
    }

    #[test]
    fn printf_verbs() {
        let m = msg(b"hello", Source::Stdout);
        check(
            Dialect::Raw,
            &m,
            &[
                (r#"{{printf "%05d|%-5d|%5d|%+d|% d|%d" 42 42 42 42 42 -42}}"#, "00042|42   |   42|+42| 42|-42"),
                (
                    r#"{{printf "%x %X %o %O %b %#x %#o %#b %x" 255 255 8 8 5 255 8 5 -255}}"#,
                    "ff FF 10 0o10 101 0xff 010 0b101 -ff",
                ),
                (r#"{{printf "%c %q %U %#U %q" 233 233 233 233 10}}"#, r#"é 'é' U+00E9 U+00E9 'é' '\n'"#),
                (
                    r#"{{printf "%.3s|%-10s|%10s|%05s|%.1s" "abcdef" "ab" "ab" "ab" "éa"}}"#,
                    "abc|ab        |        ab|000ab|é",
                ),
                ("{{printf \"%q %+q %#q %#q\" \"é\\n\" \"é\" \"ab\" \"a`b\"}}", "\"é\\n\" \"\\u00e9\" `ab` \"a`b\""),
                (
                    r#"{{printf "%x|% x|%X|%#x|% #x|%6x|%-6x|" "hi" "hi" "hi" "hi" "hi" "hi" "hi"}}"#,
                    "6869|68 69|6869|0x6869|0x68 0x69|  6869|6869  |",
                ),
                (r#"{{printf "%v %t %v %5t|%-7v|" true true false true false}}"#, "true true false  true|false  |"),
                (r#"{{printf "%d %s %t" "x" 5 1}}"#, "%!d(string=x) %!s(int=5) %!t(int=1)"),
                (r#"{{printf "%d"}}|{{printf "%d" 1 2 "x"}}"#, "%!d(MISSING)|1%!(EXTRA int=2, string=x)"),
                (
                    r#"{{printf "%[2]d %[1]d" 1 2}}|{{printf "%[3]d" 1}}|{{printf "%[2]*[1]d|" 5 3}}"#,
                    "2 1|%!d(BADINDEX)|  5|",
                ),
                (r#"{{printf "%*d|%-*d|%.*d|%*d" 5 1 4 2 3 7 "x" 1}}"#, "    1|2   |007|%!(BADWIDTH)1"),
                (r#"{{printf "%-*d|" -4 1}}{{printf "%*d|" -4 1}}"#, "1   |1   |"),
                (
                    r#"{{printf "100%%"}}|{{printf "%"}}|{{printf "%!"}}|{{printf "%z" 1}}"#,
                    "100%|%!(NOVERB)|%!!(MISSING)|%!z(int=1)",
                ),
                (
                    r#"{{printf "%6.2f|%08.3d|%-08d|%+.3d|%.0d|" 3 5 5 5 0}}"#,
                    "%!f(int=    03)|     005|5       |+005||",
                ),
                (r#"{{printf "%v|%d|%s" nil nil 'x'}}"#, "<nil>|%!d(<nil>)|%!s(int=120)"),
                (r#"{{printf "%v" .Container.Config.Labels}}"#, "map[a<b:x&y app:web env:prod]"),
                (
                    r#"{{printf "%q" .Container.Config.Env}} {{printf "%5v" .Container.Config.Env}}"#,
                    r#"["PATH=/usr/bin" "A=1"] [PATH=/usr/bin   A=1]"#,
                ),
                (r#"{{printf "%#v" .Container.Config.Env}}"#, r#"[]string{"PATH=/usr/bin", "A=1"}"#),
                (
                    r#"{{printf "%#v" .Container.Config.Labels}}"#,
                    r#"map[string]string{"a<b":"x&y", "app":"web", "env":"prod"}"#,
                ),
                (
                    r#"{{printf "%d" .Container.Config.Labels}}"#,
                    "map[%!d(string=a<b):%!d(string=x&y) %!d(string=app):%!d(string=web) %!d(string=env):%!d(string=prod)]",
                ),
                (
                    r#"{{printf "%s|%v|%d" .Time .Time.Unix .Container.State.Pid}}"#,
                    "2021-12-06 15:27:06.123456789 +0000 UTC|1638804426|4242",
                ),
                (r#"{{printf "%#v" .Time}}"#, "time.Date(2021, time.December, 6, 15, 27, 6, 123456789, time.UTC)"),
                (r#"{{printf "%.10s|%q" .Time .Time}}"#, "2021-12-06|\"2021-12-06 15:27:06.123456789 +0000 UTC\""),
                (
                    r#"{{printf "%T %T %T %T %T %T %T" .Data 1 .Time .Container.Config.Labels .Container.Config.Env .Time.Unix nil}}"#,
                    "string int time.Time map[string]string []string int64 <nil>",
                ),
                (r#"{{printf "%#v %#v %+v %v" .Data (index .Data 0) 5 'x'}}"#, r#""hello" 0x68 5 120"#),
                (
                    "{{printf \"%s\" \"\\x00\\u200b\\u00a0\"}}|{{printf \"%q\" \"\\x00\\u200b\\u00a0\\U0001F600\\x7f\"}}",
                    "\u{0}\u{200b}\u{a0}|\"\\x00\\u200b\\u00a0😀\\x7f\"",
                ),
            ],
        );
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
        assert_eq!(raw("{{if true}}\n  {{- .Data}}\n{{- end}}", "x"), "x");
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
        // A layout that is not a literal is compiled when rendering.
        assert_eq!(raw(r#"{{$l := "15:04"}}{{.Time.Format $l}}"#, ""), "15:27");

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
    fn compile_errors_name_the_action_and_its_place() {
        let cases: &[(&str, Dialect, &str)] = &[
            (
                "{{foo .Data}}",
                Dialect::Raw,
                r#"unknown function "foo" in "{{foo .Data}}" at line 1, column 1; supported functions are and, or"#,
            ),
            (
                "a\n  {{.Container.Foo}}",
                Dialect::Raw,
                r#"unknown field .Container.Foo in "{{.Container.Foo}}" at line 2, column 3; .Container has .ID, .Name, .Image, .Config and .State"#,
            ),
            (
                "{{.Nope}}",
                Dialect::Syslog,
                r#"unknown field .Nope in "{{.Nope}}" at line 1, column 1; known fields are .Data, .Source"#,
            ),
            (
                "é{{if .Data}}x",
                Dialect::Raw,
                r#"unclosed {{if}} in "{{if .Data}}" at line 1, column 2; add a matching {{end}}"#,
            ),
            (
                "{{range .Container.Config.Labels}}{{if .}}x{{end}}",
                Dialect::Raw,
                "unclosed {{range}} in \"{{range .Container.Config.Labels}}\"",
            ),
            ("{{with .Data}}{{else with .Source}}", Dialect::Raw, "unclosed {{with}} in \"{{else with .Source}}\""),
            ("x{{end}}", Dialect::Raw, r#"unexpected {{end}} in "{{end}}" at line 1, column 2"#),
            ("{{else}}", Dialect::Raw, "unexpected {{else}} in \"{{else}}\""),
            (
                "{{if .Data}}a{{else}}b{{else}}c{{end}}",
                Dialect::Raw,
                "{{else}} after the {{else}} of {{if}} in \"{{else}}\" at line 1, column 23",
            ),
            ("{{range .Container.Config.Env}}{{else if .Data}}{{end}}", Dialect::Raw, "unexpected \"if\" in {{else}}"),
            ("{{end 1}}", Dialect::Raw, "unexpected \"1\" in {{end}}"),
            (
                "{{.Container}}",
                Dialect::Raw,
                "can't print .Container, a Go struct (*docker.Container) in \"{{.Container}}\" at line 1, column 1; print one of its fields instead",
            ),
            ("{{ $ }}", Dialect::Syslog, "can't print $, a Go struct (*syslog.Message)"),
            ("{{toJSON .Container.State}}", Dialect::Raw, "can't print .Container.State, a Go struct (docker.State)"),
            (
                "{{printf \"%v\" .Container.Config}}",
                Dialect::Raw,
                "can't print .Container.Config, a Go struct (*docker.Config)",
            ),
            ("{{template \"x\"}}", Dialect::Raw, "{{template}} is not supported in"),
            ("{{define \"x\"}}{{end}}", Dialect::Raw, "{{define}} is not supported in"),
            ("{{call .Data}}", Dialect::Raw, "function \"call\" is not supported in"),
            ("{{slice .Data 1}}", Dialect::Raw, "function \"slice\" is not supported in"),
            (
                "{{printf \"%.2f\" 3.14}}",
                Dialect::Raw,
                "floating-point and complex constants such as 3.14 are not supported",
            ),
            ("{{ 1e3 }}", Dialect::Raw, "floating-point and complex constants such as 1e3 are not supported"),
            ("{{ 9223372036854775808 }}", Dialect::Raw, "9223372036854775808 overflows int"),
            (
                "{{.Time.Format}}",
                Dialect::Raw,
                "wrong number of arguments for .Time.Format: want 1, got 0 in \"{{.Time.Format}}\" at line 1, column 1; give one quoted Go layout",
            ),
            ("{{.Time.Format \"a\" \"b\"}}", Dialect::Raw, "wrong number of arguments for .Time.Format: want 1, got 2"),
            ("{{.Time.Format 2006}}", Dialect::Raw, "expected string; found 2006"),
            ("{{.Time.Format .Time}}", Dialect::Raw, "wrong type for value; expected string; got time.Time"),
            ("{{.Time.Unix 1}}", Dialect::Raw, "wrong number of arguments for .Time.Unix: want 0, got 1"),
            ("{{.Data \"x\"}}", Dialect::Raw, ".Data has arguments but cannot be invoked as function"),
            ("{{.Container.Config.Labels.a \"x\"}}", Dialect::Raw, "a is not a method but has arguments"),
            (
                "{{.Container.Config.Labels.a.b}}",
                Dialect::Raw,
                "unknown field .Container.Config.Labels.a.b in \"{{.Container.Config.Labels.a.b}}\" at line 1, column 1; a key with dots needs index, as in {{index .Container.Config.Labels \"a.b\"}}",
            ),
            (
                "{{.Data.Foo}}",
                Dialect::Raw,
                "unknown field .Data.Foo in \"{{.Data.Foo}}\" at line 1, column 1; .Data is a string and has no fields",
            ),
            (
                "{{.Container.Config.Labels.com.docker.compose.service}}",
                Dialect::Raw,
                "unknown field .Container.Config.Labels.com.docker.compose.service in \"{{.Container.Config.Labels.com.docker.compose.service}}\" at line 1, column 1; a key with dots needs index, as in {{index .Container.Config.Labels \"com.docker.compose.service\"}}",
            ),
            (
                "{{with .Container}}{{.Nope}}{{end}}",
                Dialect::Raw,
                "unknown field .Nope in \"{{.Nope}}\" at line 1, column 20; dot has .ID, .Name",
            ),
            ("{{$x}}", Dialect::Raw, "undefined variable $x in"),
            ("{{$x = 1}}", Dialect::Raw, "undefined variable $x in"),
            ("{{if true}}{{$x := 1}}{{else}}{{$x}}{{end}}", Dialect::Raw, "undefined variable $x in \"{{$x}}\""),
            ("{{$ := 1}}", Dialect::Raw, "cannot assign to $"),
            ("{{$a, $b := 1}}", Dialect::Raw, "too many declarations in command"),
            (
                "{{range $a, $b, $c := .Container.Config.Env}}{{end}}",
                Dialect::Raw,
                "range can only initialize variables",
            ),
            ("{{range $i, $v := 3}}{{end}}", Dialect::Raw, "can't use int to iterate over more than one variable"),
            ("{{range .Data}}{{end}}", Dialect::Raw, "range can't iterate over a string"),
            ("{{eq .Data}}", Dialect::Raw, "wrong number of arguments for eq: want at least 2, got 1"),
            ("{{len}}", Dialect::Raw, "wrong number of arguments for len: want 1, got 0"),
            ("{{.Data | not 1}}", Dialect::Raw, "wrong number of arguments for not: want 1, got 2"),
            ("{{len .Time}}", Dialect::Raw, "len of type time.Time"),
            ("{{printf 1}}", Dialect::Raw, "expected string; found 1"),
            ("{{index .Container.Config.Labels 1}}", Dialect::Raw, "value has type int; should be string"),
            ("{{index .Container.Config.Env \"a\"}}", Dialect::Raw, "cannot index slice/array with type string"),
            ("{{index .Container.State.Pid 1}}", Dialect::Raw, "can't index item of type int"),
            ("{{.Data | \"x\"}}", Dialect::Raw, "non executable command in pipeline stage 2"),
            ("{{\"x\" .Data}}", Dialect::Raw, "can't give argument to non-function \"x\""),
            ("{{.Data | $}}", Dialect::Raw, "can't give argument to non-function $"),
            ("{{nil}}", Dialect::Raw, "nil is not a command"),
            ("{{(.Data}}", Dialect::Raw, "unclosed left parenthesis"),
            ("{{.Data)}}", Dialect::Raw, "unexpected \")\""),
            ("{{printf \"%s\"(.Data)}}", Dialect::Raw, "unexpected \"(\" in operand"),
            ("{{\"a\".Data}}", Dialect::Raw, "unexpected . after term \"\\\"a\\\"\""),
            ("{{break}}", Dialect::Raw, "{{break}} outside {{range}}"),
            (
                "{{range .Container.Config.Env}}{{else}}{{continue}}{{end}}",
                Dialect::Raw,
                "{{continue}} outside {{range}}",
            ),
            ("{{if}}{{end}}", Dialect::Raw, "missing value for if"),
            ("{{ }}", Dialect::Raw, "missing value for command"),
            ("{{.Data\"x\"}}", Dialect::Raw, "bad character '\"' after \".Data\""),
            ("{{ 'ab' }}", Dialect::Raw, "malformed character constant"),
            ("{{ \"\\q\" }}", Dialect::Raw, "invalid escape in string"),
            ("{{ # }}", Dialect::Raw, "unexpected character '#'"),
            ("{{ if }}", Dialect::Raw, "missing value for if"),
            ("{{ printf \"%v\" if }}", Dialect::Raw, "unexpected {{if}} inside an action"),
            (
                "{{ .ContainerNameSplitN \".\" }}",
                Dialect::Syslog,
                "wrong number of arguments for .ContainerNameSplitN: want 2, got 1",
            ),
            ("{{ .ContainerNameSplitN 1 2 }}", Dialect::Syslog, "expected string; found 1"),
            ("{{ .ContainerNameSplitN \".\" \"2\" }}", Dialect::Syslog, "expected int; found \"2\""),
            (
                "{{ .ContainerNameSplitN \".\" .Time.Unix }}",
                Dialect::Syslog,
                "wrong type for value; expected int; got int64",
            ),
            ("{{ .ContainerNameSplitN \".\" nil }}", Dialect::Syslog, "cannot assign nil to int"),
            ("a {{.Data", Dialect::Raw, "unclosed action \"{{.Data\" at line 1, column 3: add the closing }}"),
            ("{{.Time.Format \"x}}", Dialect::Raw, "unclosed action"),
            ("{{/* x }}", Dialect::Raw, "unclosed action"),
            ("{{/* x */ }}", Dialect::Raw, "comment in \"{{/* x */ }}\" at line 1, column 1 must end with */}}"),
        ];
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|(text, dialect, want)| match Template::compile(text, *dialect) {
                Ok(_) => Some(format!("{text}: compiled")),
                Err(e) => (!e.to_string().starts_with(want) && !e.to_string().contains(want))
                    .then(|| format!("{text}\n   got {e}\n  want {want}")),
            })
            .collect();
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
        let deep = format!("{}.Data{}", "(".repeat(101), ")".repeat(101));
        assert!(
            compile_err(&format!("{{{{{deep}}}}}"), Dialect::Raw).starts_with("blocks and parentheses nest deeper")
        );
        let deep = format!("{}{}", "{{if true}}".repeat(101), "{{end}}".repeat(101));
        assert!(compile_err(&deep, Dialect::Raw).starts_with("blocks and parentheses nest deeper"));
        let fine = format!("{}.Data{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(raw(&format!("{{{{if true}}}}{{{{{fine}}}}}{{{{end}}}}"), "x"), "x");
        let long = format!("{{{{if {}}}}}", "x".repeat(100));
        assert!(compile_err(&long, Dialect::Raw).len() < 400, "long actions are shortened");
    }

    #[test]
    fn render_errors_are_counted_and_keep_the_output_before_them() {
        let m = msg(b"hello", Source::Stdout);
        let cases: &[(&str, &str, &str)] = &[
            (
                "a{{index .Container.Config.Env 5}}b",
                "a",
                "executing \"{{index .Container.Config.Env 5}}\" at line 1, column 2: error calling index: index out of range: 5",
            ),
            (
                "{{.Data}}{{index .Container.Config.Env 2}}",
                "hello",
                "error calling index: reflect: slice index out of range",
            ),
            ("{{index .Data -1}}", "", "error calling index: index out of range: -1"),
            ("x{{lt .Data 1}}", "x", "error calling lt: incompatible types for comparison: string and int"),
            ("{{eq .Source 1}}", "", "error calling eq: incompatible types for comparison: string and int"),
            ("{{lt .Container.Config.Labels.nope 1}}", "", "error calling lt: invalid type for comparison"),
            (
                "{{eq .Container.Config.Labels .Container.Config.Labels}}",
                "",
                "error calling eq: non-comparable type map[a<b:x&y app:web env:prod]: map[string]string",
            ),
            ("{{len .Container.Config.Labels.nope}}", "", "error calling len: "),
            ("{{index .Container.Config.Labels.nope 0}}", "", "error calling index: index of untyped nil"),
            (
                "{{index .Container.Config.Labels nil}}",
                "",
                "error calling index: value is nil; should be of type string",
            ),
            ("{{range (or 0 \"s\")}}{{end}}", "", "range can't iterate over s"),
            (
                "{{$x := 1}}{{range .Container.Config.Labels}}{{$x = .}}{{end}}{{$x.Foo}}",
                "",
                "can't evaluate field Foo in type string",
            ),
            ("{{(or 0 \"x\").Name}}", "", "can't evaluate field Name in type string"),
            (
                "{{$f := \"2006\"}}{{range 1}}{{$f = 1}}{{end}}{{.Time.Format $f}}",
                "",
                "wrong type for value; expected string; got int",
            ),
            ("{{printf (or 1 \"x\")}}", "", "wrong type for value; expected string; got int"),
            (
                "ok {{if true}}in {{index .Data 5}}{{end}} never",
                "ok in ",
                "error calling index: reflect: string index out of range",
            ),
        ];
        for (text, want_out, want_err) in cases {
            let t = compile(text, Dialect::Raw);
            let mut out = Vec::new();
            t.render(&m, &mut out);
            assert_eq!(String::from_utf8_lossy(&out), *want_out, "{text}");
            assert_eq!(t.errors(), 1, "{text}");
            let e = t.last_error().unwrap_or_default();
            assert!(e.contains(want_err), "{text}\n   got {e}\n  want {want_err}");
            t.render(&m, &mut out);
            assert_eq!(t.errors(), 2, "{text}");
            assert_eq!(t.clone().errors(), 2, "{text}: a clone keeps the count");
        }
        // An error inside a block names its own action.
        let t = compile("{{range .Container.Config.Env}}{{if .}}{{index . 99}}{{end}}{{end}}", Dialect::Raw);
        t.render(&m, &mut Vec::new());
        let e = t.last_error().unwrap();
        assert!(e.starts_with("executing \"{{index . 99}}\" at line 1, column 40: error calling index"), "{e}");
        // With a missing map key `eq` compares as unequal, as Go 1.18 and later do.
        assert_eq!(raw("{{eq .Container.Config.Labels.nope 1}}", ""), "false");
    }

    #[test]
    fn source_is_kept_and_templates_are_shareable() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Template>();
        let t = Template::compile("{{.Data}}\n", Dialect::Raw).unwrap();
        assert_eq!(t.source(), "{{.Data}}\n");
        assert_eq!(t.clone().source(), "{{.Data}}\n");
        assert_eq!((t.errors(), t.last_error()), (0, None));
    }
}
