//! Compiling the tokens of each action into the tree of [`super::ast`], resolving fields, functions and time layouts.

use super::*;

/// A compile-time problem; the caller adds the action and its position.
pub(super) struct Problem {
    pub(super) what: String,
    pub(super) hint: Option<String>,
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

pub(super) fn problem(what: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem { what: what.into(), hint: Some(hint.into()) }
}

pub(super) type Compiled<T> = Result<T, Problem>;

/// A resolved chain: its steps, the type of its value and `.Time.Format`'s literal layout.
pub(super) type Resolved = (Vec<Step>, Ty, Option<Box<[LayoutItem]>>);

/// A pipeline's `$x :=` (false) and `$x =` (true), before they are bound to slots.
pub(super) type Decls<'t> = Vec<(&'t str, bool)>;

/// A compiled pipeline before its declarations are bound: its commands and the type of its
/// value.
pub(super) struct Piped<'t> {
    pub(super) cmds: Vec<Cmd>,
    pub(super) ty: Ty,
    pub(super) decls: Decls<'t>,
}

/// A variable in scope.
pub(super) struct Var {
    pub(super) name: String,
    pub(super) slot: usize,
    pub(super) ty: Ty,
}

/// How a list of nodes ended.
pub(super) enum Stop<'t> {
    Eof,
    /// `{{end}}`, at that action.
    End(usize),
    /// `{{else …}}`, at that action, with its tokens.
    Else(usize, Cursor<'t>),
}

/// The tokens of one action and a position in them.
pub(super) struct Cursor<'t> {
    pub(super) body: &'t str,
    pub(super) toks: Vec<Token<'t>>,
    pub(super) at: usize,
}

impl<'t> Cursor<'t> {
    pub(super) fn peek(&self) -> Option<&Token<'t>> {
        self.toks.get(self.at)
    }

    pub(super) fn peek_tok(&self, n: usize) -> Option<&Tok<'t>> {
        self.toks.get(self.at + n).map(|t| &t.tok)
    }

    pub(super) fn next(&mut self) -> Option<Token<'t>> {
        let token = self.toks.get(self.at).cloned();
        if token.is_some() {
            self.at += 1;
        }
        token
    }

    pub(super) fn text(&self, start: usize, end: usize) -> &'t str {
        &self.body[start..end]
    }

    /// Fails unless every token has been used.
    pub(super) fn finish(&self, what: &str) -> Compiled<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!("unexpected {:?} in {what}", &self.body[t.start..t.end]).into()),
        }
    }
}

/// An operand as parsed, before it is known to be a command's head or an argument.
pub(super) enum Parsed<'t> {
    /// A literal, `.`, `$x`, `( … )`: `executable` is false for literals and `.`, which cannot
    /// start a later command of a pipeline.
    Value { operand: Operand, ty: Ty, text: &'t str, executable: bool },
    /// A function name.
    Call { func: Func, text: &'t str },
    /// A field chain on a base value.
    Chain { base: Operand, base_ty: Ty, names: Vec<&'t str>, text: &'t str, base_text: &'t str },
}

/// A compiled argument and what the checks need to know of it.
pub(super) struct Arg<'t> {
    pub(super) operand: Operand,
    pub(super) ty: Ty,
    pub(super) text: &'t str,
}

pub(super) struct Compiler {
    pub(super) dialect: Dialect,
    pub(super) actions: Vec<ActionInfo>,
    pub(super) vars: Vec<Var>,
    pub(super) slots: usize,
    /// How many `{{range}}` bodies enclose the current action.
    pub(super) ranges: usize,
    /// How many blocks and parentheses enclose it, bounded by [`MAX_NESTING`].
    pub(super) depth: usize,
    /// Whether it is in the body of a `{{define}}` or `{{block}}`, where dot and `$` are the
    /// value the template is called with, known only when rendering.
    pub(super) in_define: bool,
    /// The named templates, defined or called.
    pub(super) templates: Vec<Named>,
    /// The deepest nesting reached, for the cost of a `{{template}}` call.
    pub(super) deepest: usize,
}

/// A template named by `{{define}}`, `{{block}}` or `{{template}}`.
pub(super) struct Named {
    pub(super) name: String,
    pub(super) body: Option<Vec<Node>>,
    /// How deeply blocks and parentheses nest in the body.
    pub(super) nesting: usize,
    /// The first `{{template}}` that calls it, for the message if it is never defined.
    pub(super) used_at: Option<usize>,
}

/// How deeply blocks and parentheses may nest. Compiling and rendering recurse once per level;
/// the bound keeps a pathological template from exhausting a thread's stack.
pub(super) const MAX_NESTING: usize = 100;

impl Compiler {
    pub(super) fn located(&self, id: usize, p: Problem) -> TemplateError {
        let mut s = format!("{} in {}", p.what, self.actions[id].describe());
        if let Some(hint) = p.hint {
            s.push_str("; ");
            s.push_str(&hint);
        }
        TemplateError(s)
    }

    /// Splits the source into text and actions, applying trim markers and dropping comments.
    pub(super) fn scan<'t>(&mut self, text: &'t str) -> Result<Vec<Item<'t>>, TemplateError> {
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
    pub(super) fn list<'t>(
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
                    p.next();
                    if let Some(node) = self.named(kind, p, id, items, dot)? {
                        nodes.push(node);
                    }
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
    pub(super) fn action(&mut self, p: &mut Cursor<'_>, id: usize, dot: Ty) -> Compiled<Node> {
        let Piped { cmds, ty, decls } = self.pipeline(p, dot, "command", false)?;
        p.finish("command")?;
        let decl = self.bind(&decls, ty)?;
        let pipe = Pipe { decl, cmds };
        if pipe.decl.is_empty()
            && let Some(part) = self.lower(&pipe, dot)
        {
            return Ok(Node::Part(part));
        }
        Ok(Node::Action { pipe, at: id })
    }

    /// `{{if}}`, `{{with}}` or `{{range}}` (whose keyword `p` has consumed) up to its
    /// `{{end}}`.
    pub(super) fn control<'t>(
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

    /// `{{define "name"}}…{{end}}`, `{{template "name" pipeline}}` or
    /// `{{block "name" pipeline}}…{{end}}`, whose keyword `p` has consumed.
    pub(super) fn named<'t>(
        &mut self,
        kind: &str,
        mut p: Cursor<'t>,
        id: usize,
        items: &mut std::vec::IntoIter<Item<'t>>,
        dot: Ty,
    ) -> Result<Option<Node>, TemplateError> {
        let located = |c: &Compiler, e: Problem| c.located(id, e);
        let name = match p.next().map(|t| t.tok) {
            Some(Tok::Str(name)) => String::from_utf8_lossy(&name).into_owned(),
            _ => return Err(located(self, format!("{{{{{kind}}}}} needs a quoted template name").into())),
        };
        if kind == "define" {
            p.finish("{{define}}").map_err(|e| located(self, e))?;
            if self.depth > 0 || self.in_define {
                return Err(located(self, "{{define}} must be outside any other action".into()));
            }
            let body = self.define_body(id, items)?;
            self.define(name, body, id)?;
            return Ok(None);
        }
        let pipe = if p.peek().is_some() || kind == "block" {
            let Piped { cmds, ty, decls } = self.pipeline(&mut p, dot, kind, false).map_err(|e| located(self, e))?;
            p.finish(kind).map_err(|e| located(self, e))?;
            let decl = self.bind(&decls, ty).map_err(|e| located(self, e))?;
            Some(Pipe { decl, cmds })
        } else {
            None
        };
        if kind == "block" {
            let body = self.define_body(id, items)?;
            self.define(name.clone(), body, id)?;
        }
        let index = self.template(&name);
        self.templates[index].used_at.get_or_insert(id);
        Ok(Some(Node::Template { index, pipe, at: id }))
    }

    /// The body of a `{{define}}` or `{{block}}` up to its `{{end}}`: a template of its own, with
    /// its own variables and a dot of any type.
    pub(super) fn define_body<'t>(
        &mut self,
        id: usize,
        items: &mut std::vec::IntoIter<Item<'t>>,
    ) -> Result<(Vec<Node>, usize), TemplateError> {
        let vars = std::mem::take(&mut self.vars);
        let ranges = std::mem::replace(&mut self.ranges, 0);
        let in_define = std::mem::replace(&mut self.in_define, true);
        let deepest = std::mem::replace(&mut self.deepest, self.depth);
        let body = self.list(items, Ty::Any);
        let nesting = self.deepest - self.depth;
        self.deepest = self.deepest.max(deepest);
        self.vars = vars;
        self.ranges = ranges;
        self.in_define = in_define;
        match body? {
            (nodes, Stop::End(_)) => Ok((nodes, nesting)),
            (_, Stop::Eof) => Err(self.located(id, problem("unclosed template definition", "add a matching {{end}}"))),
            (_, Stop::Else(at, _)) => Err(self.located(at, "unexpected {{else}}".into())),
        }
    }

    /// The index of the template called `name`.
    pub(super) fn template(&mut self, name: &str) -> usize {
        if let Some(i) = self.templates.iter().position(|t| t.name == name) {
            return i;
        }
        self.templates.push(Named { name: name.to_string(), body: None, nesting: 0, used_at: None });
        self.templates.len() - 1
    }

    /// Defines `name`; as in Go, a second definition that is not empty is an error.
    pub(super) fn define(
        &mut self,
        name: String,
        (body, nesting): (Vec<Node>, usize),
        id: usize,
    ) -> Result<(), TemplateError> {
        let index = self.template(&name);
        let empty = |nodes: &[Node]| nodes.iter().all(|n| matches!(n, Node::Text(t) if t.iter().all(|&b| is_space(b))));
        match &self.templates[index].body {
            Some(old) if !empty(old) && !empty(&body) => {
                Err(self.located(id, format!("template: multiple definition of template {name:?}").into()))
            }
            Some(old) if empty(&body) && !old.is_empty() => Ok(()),
            _ => {
                self.templates[index].body = Some(body);
                self.templates[index].nesting = nesting;
                Ok(())
            }
        }
    }

    /// Enters a block or parentheses.
    pub(super) fn nest(&mut self) -> Compiled<()> {
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        if self.depth > MAX_NESTING {
            return Err(format!("blocks and parentheses nest deeper than {MAX_NESTING} levels").into());
        }
        Ok(())
    }

    pub(super) fn declare(&mut self, name: &str, ty: Ty) -> usize {
        let slot = self.slots;
        self.slots += 1;
        self.vars.push(Var { name: name.to_string(), slot, ty });
        slot
    }

    pub(super) fn var(&self, name: &str) -> Compiled<&Var> {
        self.vars.iter().rev().find(|v| v.name == name).ok_or_else(|| format!("undefined variable {name}").into())
    }

    /// The slots a pipeline's `$x :=` or `$x =` stores its value of type `ty` in.
    pub(super) fn bind(&mut self, decls: &[(&str, bool)], ty: Ty) -> Compiled<Vec<usize>> {
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
    pub(super) fn pipeline<'t>(
        &mut self,
        p: &mut Cursor<'t>,
        dot: Ty,
        context: &str,
        range: bool,
    ) -> Compiled<Piped<'t>> {
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
    pub(super) fn command<'t>(
        &mut self,
        p: &mut Cursor<'t>,
        dot: Ty,
        stage: usize,
        fin: Option<Ty>,
    ) -> Compiled<(Cmd, Ty)> {
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
    pub(super) fn arg<'t>(&self, op: Parsed<'t>) -> Compiled<Arg<'t>> {
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
    pub(super) fn operand<'t>(&mut self, p: &mut Cursor<'t>, dot: Ty) -> Compiled<Parsed<'t>> {
        let token = p.next().ok_or("missing operand")?;
        let start = token.start;
        let text = p.text(token.start, token.end);
        let value = |operand, ty, executable| Parsed::Value { operand, ty, text, executable };
        let mut parsed = match token.tok {
            Tok::Dot => value(Operand::Dot, dot, false),
            Tok::Field(name) => {
                Parsed::Chain { base: Operand::Dot, base_ty: dot, names: vec![name], text, base_text: "" }
            }
            Tok::Var("$") => value(Operand::Root, if self.in_define { Ty::Any } else { Ty::Root }, true),
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
            Tok::Float(f) => value(Operand::Float(f), Ty::Float, false),
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
    pub(super) fn resolve(
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
                Ty::Go(id) if matches!(schema().ty(id), GoTy::Map(..)) => {
                    if given > 0 {
                        return Err(format!("{name} is not a method but has arguments").into());
                    }
                    steps.push(Step { name: (*name).into(), member: None });
                    map_at = Some((prefix.clone(), i));
                    ty = elem_ty(id).unwrap_or(Ty::Any);
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

    pub(super) fn unknown_field(&self, ty: Ty, name: &str, text: &str, prefix: &str) -> Problem {
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
    pub(super) fn check_call(&self, func: Func, text: &str, args: &[Arg<'_>], fin: Option<Ty>) -> Compiled<Ty> {
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
                Ty::Go(id) if elem_ty(id).is_some() => Ok(Ty::Int(IntTy::Int)),
                other => Err(format!("len of type {}", other.name(self.dialect)).into()),
            },
            Func::Index => index_type(&tys, args, self.dialect),
            Func::Slice => {
                for (ty, _) in &tys[1..] {
                    if !matches!(ty, Ty::Int(_) | Ty::Any | Ty::Nil) {
                        return Err(format!("cannot index slice/array with type {}", ty.name(self.dialect)).into());
                    }
                }
                match tys[0].0 {
                    Ty::Str if tys.len() == 4 => Err("cannot 3-index slice a string".into()),
                    ty @ (Ty::Str | Ty::List | Ty::Any | Ty::Nil) => Ok(ty),
                    Ty::Go(id) if matches!(schema().ty(id), GoTy::Slice(_)) => Ok(Ty::Go(id)),
                    other => Err(format!("can't slice item of type {}", other.name(self.dialect)).into()),
                }
            }
            Func::Printf => {
                match args.first() {
                    Some(arg) => check_param(Param::Str, arg, self.dialect)?,
                    None => check_type(Param::Str, tys[0].0, self.dialect)?,
                }
                Ok(Ty::Str)
            }
            Func::Print | Func::Println | Func::Html | Func::Js | Func::UrlQuery | Func::ToJson => Ok(Ty::Str),
        }
    }

    /// The fast form of an action that prints a field of the message, if it is one.
    pub(super) fn lower(&self, pipe: &Pipe, dot: Ty) -> Option<Part> {
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
    pub(super) fn root_names<'c>(&self, chain: &'c Chain, dot: Ty) -> Option<Vec<&'c str>> {
        let on_root = (matches!(chain.base, Operand::Root) && !self.in_define)
            || (matches!(chain.base, Operand::Dot) && dot == Ty::Root);
        on_root.then(|| chain.steps.iter().map(|s| &*s.name).collect())
    }

    /// The field a chain on the message names, if it is one of the fast ones.
    pub(super) fn root_field(&self, chain: &Chain, dot: Ty) -> Option<Field> {
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
pub(super) fn decls<'t>(p: &mut Cursor<'t>, context: &str, range: bool) -> Compiled<Decls<'t>> {
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

pub(super) fn unknown_function(name: &str) -> Problem {
    match name {
        "if" | "else" | "end" | "range" | "with" | "break" | "continue" | "define" | "template" | "block" => {
            format!("unexpected {{{{{name}}}}} inside an action").into()
        }
        "call" => problem(format!("function {name:?} is not supported"), FUNCTIONS),
        _ => problem(format!("unknown function {name:?}"), FUNCTIONS),
    }
}

/// The types of a range's key and element over a value of type `ty`.
pub(super) fn range_types(ty: Ty, vars: usize, dialect: Dialect) -> Compiled<(Ty, Ty)> {
    match ty {
        Ty::Map => Ok((Ty::Str, Ty::Str)),
        Ty::List => Ok((Ty::Int(IntTy::Int), Ty::Str)),
        Ty::Int(t) if vars > 1 => Err(format!("can't use {} to iterate over more than one variable", t.name()).into()),
        Ty::Int(t) => Ok((ty, Ty::Int(t))),
        Ty::Any | Ty::Nil => Ok((Ty::Any, Ty::Any)),
        Ty::Go(id) if matches!(schema().ty(id), GoTy::Slice(_) | GoTy::Array(..)) => {
            Ok((Ty::Int(IntTy::Int), elem_ty(id).unwrap_or(Ty::Any)))
        }
        Ty::Go(id) if matches!(schema().ty(id), GoTy::Map(..)) => Ok((Ty::Str, elem_ty(id).unwrap_or(Ty::Any))),
        other => Err(format!("range can't iterate over a {}", other.name(dialect)).into()),
    }
}

/// Checks an argument against a method's (or `printf`'s format's) parameter type, as Go's
/// `evalArg` does: literals must be of the right kind, other values of the right type.
pub(super) fn check_param(param: Param, arg: &Arg<'_>, dialect: Dialect) -> Compiled<()> {
    match (&arg.operand, param) {
        (Operand::Str(_), Param::Str) | (Operand::Int(_), Param::Int) => Ok(()),
        (Operand::Str(_) | Operand::Int(_) | Operand::Float(_) | Operand::Bool(_), _) => {
            Err(format!("expected {}; found {}", param.name(), arg.text).into())
        }
        (Operand::Nil, _) => Err(format!("cannot assign nil to {}", param.name()).into()),
        _ => check_type(param, arg.ty, dialect),
    }
}

pub(super) fn check_type(param: Param, ty: Ty, dialect: Dialect) -> Compiled<()> {
    if matches!(ty, Ty::Any | Ty::Nil) || ty == param.ty() {
        Ok(())
    } else {
        Err(format!("wrong type for value; expected {}; got {}", param.name(), ty.name(dialect)).into())
    }
}

/// The type of `index item key…`, checking what can be checked.
pub(super) fn index_type(tys: &[(Ty, &str)], args: &[Arg<'_>], dialect: Dialect) -> Compiled<Ty> {
    let mut ty = tys[0].0;
    for (i, (key, _)) in tys.iter().enumerate().skip(1) {
        let literal = args.get(i).map(|a| &a.operand);
        ty = match ty {
            Ty::Map => match (literal, key) {
                (Some(Operand::Int(_) | Operand::Float(_) | Operand::Bool(_)), _)
                | (_, Ty::Int(_) | Ty::Float | Ty::Bool) => {
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
            Ty::Go(id) if elem_ty(id).is_some() => elem_ty(id).unwrap_or(Ty::Any),
            other => return Err(format!("can't index item of type {}", other.name(dialect)).into()),
        };
    }
    Ok(ty)
}

pub(super) fn push_text(nodes: &mut Vec<Node>, text: &[u8]) {
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

/// The type of the elements of an inspect slice or map.
pub(super) fn elem_ty(id: TyId) -> Option<Ty> {
    match schema().ty(id) {
        GoTy::Slice(e) | GoTy::Array(e, _) | GoTy::Map(_, e) => Some(ty_of(e)),
        _ => None,
    }
}
