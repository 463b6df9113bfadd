//! The subset of Go's `text/template` that logspout users put in `RAW_FORMAT` and the
//! `SYSLOG_*` variables, compiled once when a route is created.
//!
//! # The subset
//!
//! - Text, comments (`{{/* … */}}`) and the `{{-`/`-}}` trim markers.
//! - Actions holding a pipeline: `{{.Data | printf "%q"}}`, parenthesised sub-pipelines,
//!   string literals with Go's quoting (`"…"`, `` `…` ``), integer, character and
//!   floating-point constants (`3.14`, `1e3`: a `float64`, as Go's template engine takes a
//!   constant with a `.` or an exponent), `true`, `false`, `nil`, `.`, `$` and variables
//!   (`{{$x := …}}`, `{{$x = …}}`).
//! - Control structures: `{{if}}`/`{{else if}}`/`{{else}}`, `{{with}}`/`{{else with}}`,
//!   `{{range}}` over maps (sorted keys), slices and integers, with `$k, $v :=`, `{{break}}`
//!   and `{{continue}}`, all closed by `{{end}}`.
//! - Named templates: `{{define "name"}}…{{end}}` (outside any other action),
//!   `{{template "name"}}`, `{{template "name" pipeline}}` and `{{block "name" pipeline}}…{{end}}`;
//!   a called template has its own variables, and its dot and `$` are the value passed.
//! - Fields of the message, as Go names them: `.`, `.Data`, `.Source`, `.Time` (with the
//!   methods `.Format "layout"`, `.Unix`, `.UnixNano`, `.UnixMilli`, `.UnixMicro`, `.UTC`,
//!   `.String`), `.Container` and every field of go-dockerclient's `docker.Container` under its
//!   Go name (`.Container.ID`, `.Container.State.Running`, `.Container.Created`,
//!   `.Container.HostConfig.NetworkMode`…, see [`schema`]), map keys as fields
//!   (`.Container.Config.Labels.app`, `.Container.NetworkSettings.Networks.bridge.IPAddress`)
//!   and, in `SYSLOG_*` templates, `.Priority`, `.Timestamp`, `.ContainerName`,
//!   `.ContainerNameSplitN SEP N` and `.Hostname`.
//! - The functions `and`, `or`, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`, `index`,
//!   `slice`, `printf`, `print`, `println`, `html`, `js`, `urlquery` and logspout's `toJSON`.
//!
//! Anything else fails to compile with a message that quotes the action and its position:
//! `call`, complex and hexadecimal floating-point constants, unknown functions and fields, and a
//! `{{template}}` of a name nothing defines. Fields are checked against the message's shape (go-dockerclient's types for
//! `.Container`) at compile time, so a misspelt field fails at startup rather than printing
//! `<no value>` forever; only map keys, and fields inside `{{define}}` and `{{block}}` bodies
//! (whose dot can be anything), are looked up when rendering.
//!
//! # How it runs
//!
//! Compiling parses the text into a tree in which field paths, function names and literal time
//! layouts are resolved. Actions that only print a field of the message (the defaults
//! `{{.Data}}`, `{{.Priority}}`, `{{.Container.Config.Hostname}}`… and the README's `toJSON`,
//! `index` and `.Time.Format` forms) become `Part`s that append to the caller's buffer with no
//! allocation. Everything else runs through a small evaluator over `Value`s, which may
//! allocate. The rest of `.Container` is read from Docker's inspect JSON, kept once per
//! container ([`Container::inspect`]), by go-dockerclient's JSON keys (`ID` is `Id`,
//! `CPUShares` is `CpuShares`), decoded as Go decodes it: a field that is absent or `null` is
//! its type's zero value, a time is a `time.Time`.
//!
//! Values print as Go prints them: `.Container.Name` keeps Docker's leading `/`; a missing label
//! prints `<no value>` through a field and nothing through `index`; `{{.Container.Config.Labels}}`
//! prints `map[k:v]` (sorted keys), a slice `[a b]`, a struct `{f1 f2}` (`%+v`: `{F1:f1 F2:f2}`),
//! a nil pointer `<nil>`, a `time.Duration` `1m30s`; `toJSON` is Go's `json.Marshal` with its
//! HTML escaping, and of `.` or `.Container` writes logspout's `Message` (`Container`,
//! `Source`, `Data`, `Time`) and go-dockerclient's `Container` JSON (its field order and keys,
//! `omitempty`); `printf` follows Go's `fmt` verbs, flags, widths and `%!verb(type=value)`
//! complaints.
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
//! - A pointer inside a printed struct (the container in `{{.}}`, `.Config` in `{{.Container}}`)
//!   and a pointer to a number given to `printf` print what they point to (`&{…}`, `5`), where
//!   Go prints an address; `%#v` of these structs prints as `%v`; `{{.}}` and `toJSON .` print
//!   logspout's `Message` in `SYSLOG_*` templates too. `{{.Container.State}}` prints
//!   go-dockerclient's `State.String()` (`Up 5 minutes`), as Go's engine calls it; of the
//!   methods of the container's types only `.Container.State.String` and `.StateString` can be
//!   called (not `Port.Proto`…).
//! - `.Container` has the fields of go-dockerclient's v1.7-era struct that Docker's API (as
//!   luaspout's client reads it) fills; times in the inspect are UTC, as Docker writes them.
//! - Fields are typed at compile time, so `{{.Container.Config.Labels.app.x}}` is an error even
//!   for containers without an `app` label, where Go would print `<no value>`; `eq` needs two
//!   arguments at compile time rather than failing when rendering.
//! - `%q`, `%U` and `js` decide which characters are printable without Unicode's tables:
//!   unassigned code points count as printable.
//! - `%p`, and verbs other than `%v %s %x %X %q` on a time, print `%!p(…)`/`%!d(time.Time=…)`
//!   rather than Go's addresses and struct fields; `%b`, `%x` and `%X` of a float print
//!   `%!x(float64=…)` rather than Go's binary and hexadecimal exponent forms.
//! - `slice` takes a slice's capacity to be its length (Go's decoder may leave room beyond it).
//! - Blocks and parentheses nest at most 100 deep, and so do `{{template}}` calls, each counting
//!   one level plus the nesting of its body (Go allows 100,000 calls): the bound keeps a
//!   recursive template from exhausting the stack.
//! - Two non-empty definitions of one name are an error, as within one Go `Parse`; there is
//!   no later `Parse` to redefine a `{{block}}` with.

use crate::timefmt::{MONTHS, WEEKDAYS};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

mod ast;
mod compile;
mod exec;
mod float;
mod inspect;
mod layout;
mod lex;
mod printf;
mod scan;
mod schema;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_go;

use ast::*;
use compile::*;
use exec::*;
use float::*;
use inspect::*;
use layout::*;
use lex::*;
use printf::*;
use scan::*;
use schema::*;

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
    /// The bodies of `{{define}}` and `{{block}}`, by [`Node::Template`]'s index, with how
    /// deeply blocks nest in each.
    defines: Vec<(Vec<Node>, usize)>,
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
            defines: self.defines.clone(),
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
        let mut c = Compiler {
            dialect,
            actions: Vec::new(),
            vars: Vec::new(),
            slots: 0,
            ranges: 0,
            depth: 0,
            in_define: false,
            templates: Vec::new(),
            deepest: 0,
        };
        let mut items = c.scan(text)?.into_iter();
        let (nodes, end) = c.list(&mut items, Ty::Root)?;
        match end {
            Stop::Eof => {}
            Stop::End(id) => return Err(c.located(id, "unexpected {{end}}".into())),
            Stop::Else(id, _) => return Err(c.located(id, "unexpected {{else}}".into())),
        }
        let mut defines = Vec::new();
        for named in std::mem::take(&mut c.templates) {
            match (named.body, named.used_at) {
                (Some(body), _) => defines.push((body, named.nesting)),
                (None, Some(id)) => {
                    let what = format!("no template {:?} is defined", named.name);
                    return Err(c.located(id, problem(what, format!("define it with {{{{define {:?}}}}}", named.name))));
                }
                (None, None) => defines.push((Vec::new(), 0)),
            }
        }
        Ok(Template {
            source: text.to_string(),
            dialect,
            nodes,
            defines,
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
        let mut exec = Exec { t: self, msg, vars: Vec::new(), root: Value::Root(msg), depth: 0 };
        if self.slots > 0 {
            exec.vars.resize(self.slots, Value::Missing);
        }
        if let Err(e) = exec.walk(&self.nodes, &Value::Root(msg), out) {
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
