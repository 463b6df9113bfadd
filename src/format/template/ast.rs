//! The compiled form of a template: the tree of nodes, field paths and values it is made of.

use super::*;

/// One element of a compiled template.
#[derive(Debug, Clone)]
pub(super) enum Node {
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
    /// `{{template "name" pipeline}}` (and `{{block}}`): runs `Template::defines[index]` with
    /// dot and `$` set to the pipeline's value (nil without one).
    Template {
        index: usize,
        pipe: Option<Pipe>,
        at: usize,
    },
}

/// The fast forms of the common actions.
#[derive(Debug, Clone)]
pub(super) enum Part {
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
pub(super) enum Field {
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
pub(super) struct Pipe {
    pub(super) decl: Vec<usize>,
    pub(super) cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub(super) enum Cmd {
    /// `fn arg…`.
    Call { func: Func, args: Vec<Operand> },
    /// `.A.B arg…`: the last element may be a method taking the arguments; `layout` is
    /// `.Time.Format`'s literal layout, compiled.
    Chain { chain: Chain, args: Vec<Operand>, layout: Option<Box<[LayoutItem]>> },
    /// A value that is not a function: a literal, `.`, a variable, `( … )`.
    Value(Operand),
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    Dot,
    /// `$`: the message.
    Root,
    Var(usize),
    Str(Box<[u8]>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Pipe(Box<Pipe>),
    Chain(Box<Chain>),
    /// A function used as an argument: called without arguments.
    Call(Func),
}

/// `.A.B`, `$x.A`, `(pipeline).A`.
#[derive(Debug, Clone)]
pub(super) struct Chain {
    pub(super) base: Operand,
    pub(super) steps: Vec<Step>,
}

/// One `.Name` of a chain: a member of a struct, or a key when the value is a map.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) name: Box<str>,
    pub(super) member: Option<Member>,
}

/// Every field and method name the message model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Member {
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
    /// `docker.State`'s method.
    StateString,
    /// Any other field of go-dockerclient's container, resolved by name when rendering.
    Inspect,
}

pub(super) const MEMBERS: [(&str, Member); 26] = [
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
    ("StateString", Member::StateString),
];

/// The functions a template may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
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
    Slice,
    Printf,
    Print,
    Println,
    Html,
    Js,
    UrlQuery,
    ToJson,
}

pub(super) const FUNCS: [(&str, Func); 19] = [
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
    ("slice", Func::Slice),
    ("printf", Func::Printf),
    ("print", Func::Print),
    ("println", Func::Println),
    ("html", Func::Html),
    ("js", Func::Js),
    ("urlquery", Func::UrlQuery),
    ("toJSON", Func::ToJson),
];

/// What every unknown-function message offers instead.
pub(super) const FUNCTIONS: &str = "supported functions are and, or, not, eq, ne, lt, le, gt, ge, len, index, slice, \
     printf, print, println, html, js, urlquery and toJSON";

/// The fields a template may name from the message, for messages.
pub(super) const RAW_FIELDS: &str = ".Data, .Source, .Time (with .Format \"layout\", .Unix, .UnixNano), .Container.ID, \
     .Container.Name, .Container.Image, .Container.Config.Hostname, .Container.Config.Image, \
     .Container.Config.Labels, .Container.Config.Labels.KEY, .Container.Config.Env, .Container.Config.Tty, \
     .Container.State.Pid and every other field of go-dockerclient's container (.Container.State.Running, \
     .Container.HostConfig.NetworkMode…)";
pub(super) const SYSLOG_FIELDS: &str =
    ".Priority, .Timestamp, .ContainerName, .ContainerNameSplitN \"SEP\" N, .Hostname";

impl Func {
    pub(super) fn named(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub(super) fn name(self) -> &'static str {
        FUNCS.iter().find(|(_, f)| *f == self).map_or("?", |(n, _)| n)
    }

    /// The least and most arguments it takes (`eq` needs two to compare anything).
    pub(super) fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::And | Func::Or | Func::Index | Func::Printf => (1, None),
            Func::Not | Func::Len | Func::ToJson => (1, Some(1)),
            Func::Slice => (1, Some(4)),
            Func::Eq => (2, None),
            Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge => (2, Some(2)),
            Func::Print | Func::Println | Func::Html | Func::Js | Func::UrlQuery => (0, None),
        }
    }
}

/// The static type of a value, as far as the compiler knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// Only known when rendering (the result of `and`/`or` over different types…).
    Any,
    /// The `nil` constant.
    Nil,
    Str,
    Int(IntTy),
    Float,
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
    /// Another value of the container's inspect, of that go-dockerclient type.
    Go(TyId),
}

/// Go's integer types among the values, which `%T`, `%!d(…)` and comparisons tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IntTy {
    Int,
    Int64,
    Uint8,
    /// `log/syslog.Priority`: `.Priority`.
    Priority,
    /// `time.Duration`, which prints as `1m30s`.
    Duration,
}

impl IntTy {
    pub(super) fn name(self) -> &'static str {
        match self {
            IntTy::Int => "int",
            IntTy::Int64 => "int64",
            IntTy::Uint8 => "uint8",
            IntTy::Priority => "syslog.Priority",
            IntTy::Duration => "time.Duration",
        }
    }
}

impl Ty {
    pub(super) fn name(self, dialect: Dialect) -> &'static str {
        match self {
            Ty::Any => "interface {}",
            Ty::Nil => "nil",
            Ty::Str => "string",
            Ty::Int(t) => t.name(),
            Ty::Float => "float64",
            Ty::Bool => "bool",
            Ty::Time => "time.Time",
            Ty::Map => "map[string]string",
            Ty::List => "[]string",
            Ty::Root => root_type_name(dialect),
            Ty::Container => "*docker.Container",
            Ty::Config => "*docker.Config",
            Ty::State => "docker.State",
            Ty::Go(id) => schema().name(id),
        }
    }

    /// The go-dockerclient type of the container's structs and inspect values.
    pub(super) fn go(self) -> Option<TyId> {
        let s = schema();
        match self {
            Ty::Container => Some(s.container),
            Ty::Config => Some(s.config),
            Ty::State => Some(s.state),
            Ty::Go(id) => Some(id),
            _ => None,
        }
    }
}

pub(super) fn root_type_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Raw => "*router.Message",
        Dialect::Syslog => "*syslog.Message",
    }
}

/// The type of a method's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    Str,
    Int,
}

impl Param {
    pub(super) fn name(self) -> &'static str {
        match self {
            Param::Str => "string",
            Param::Int => "int",
        }
    }

    pub(super) fn ty(self) -> Ty {
        match self {
            Param::Str => Ty::Str,
            Param::Int => Ty::Int(IntTy::Int),
        }
    }
}

/// What `name` is on a value of type `ty`: the member, the type of its value and, for a method,
/// its parameters.
pub(super) fn lookup(ty: Ty, name: &str, dialect: Dialect) -> Option<(Member, Ty, Option<&'static [Param]>)> {
    use Member as M;
    let known = MEMBERS.iter().find(|(n, _)| *n == name).and_then(|(_, member)| lookup_member(ty, *member, dialect));
    known.or_else(|| {
        let f = schema().field(ty.go()?, name)?;
        Some((M::Inspect, ty_of(f.ty), None))
    })
}

/// [`lookup`] among the members luaspout has shortcuts for.
fn lookup_member(ty: Ty, member: Member, dialect: Dialect) -> Option<(Member, Ty, Option<&'static [Param]>)> {
    use Member as M;
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
        (Ty::State, M::String | M::StateString) => (Ty::Str, Some(&[])),
        _ => return None,
    };
    Some((member, ty, params))
}

/// The members of a struct type, for messages.
pub(super) fn members_of(ty: Ty, dialect: Dialect) -> String {
    match ty {
        Ty::Root if dialect == Dialect::Syslog => format!("known fields are {RAW_FIELDS}, {SYSLOG_FIELDS}"),
        Ty::Root => format!("known fields are {RAW_FIELDS}"),
        Ty::Container | Ty::Config | Ty::State => format!("it has {}", schema().field_names(ty.go().unwrap_or(0))),
        Ty::Go(id) if !schema().field_names(id).is_empty() => format!("it has {}", schema().field_names(id)),
        Ty::Time => "it has .Format \"layout\", .Unix, .UnixNano, .UnixMilli, .UnixMicro, .UTC and .String".into(),
        other => format!("it is a {} and has no fields", other.name(dialect)),
    }
}
