//! Templates against Go's documented behaviour and logspout's test vectors.

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
    // logspout's raw adapter test vectors (docs/logspout-compat.md), and its README's multiline advice.
    let quoted = r#"a <b> & "c""#;
    assert_eq!(raw("{{.Data}}\n", "hi"), "hi\n");
    assert_eq!(raw("{{toJSON .Data}}\n", quoted), "\"a \\u003cb\\u003e \\u0026 \\\"c\\\"\"\n");
    assert_eq!(raw("{{ toJSON .Data }}\n", quoted), "\"a \\u003cb\\u003e \\u0026 \\\"c\\\"\"\n");
    assert_eq!(raw("{{.Container.Config.Labels.nope}}", "x"), "<no value>");
    assert_eq!(raw(r#"{{index .Container.Config.Labels "nope"}}"#, "x"), "");
}

#[test]
fn readme_full_json_template() {
    // logspout's raw adapter with its README's JSON template, byte for byte what Go prints: Name keeps its `/`, toJSON sorts the
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
            ("{{.Container.Name}} {{.Container.Image}} {{.Container.Config.Image}}", "/web_1 sha256:abc nginx:1.25"),
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
            (r#"{{.Time.UTC.Format "15:04"}} {{(.Time).Format "2006"}} {{"Jan" | .Time.Format}}"#, "15:27 2021 Dec"),
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
            (r#"{{ .ContainerNameSplitN "" 3 }} {{ .ContainerNameSplitN "_" 5 }}"#, "[s v c.1.abcdef] [svc.1.abcdef]"),
            (r#"{{ .ContainerNameSplitN ".1." 9 }} {{ len (.ContainerNameSplitN "." -1) }}"#, "[svc abcdef] 3"),
            (r#"{{ range .ContainerNameSplitN "." -1 }}<{{.}}>{{ end }}"#, "<svc><1><abcdef>"),
            (r#"{{ $parts := .ContainerNameSplitN "." 2 }}{{ index $parts 0 }}"#, "svc"),
            (r#"{{ index (.ContainerNameSplitN "." 2) 0 | printf "%.2s" }}"#, "sv"),
            (r#"{{ range (.ContainerNameSplitN "." 0) }}x{{ else }}none{{ end }}"#, "none"),
            (r#"{{ printf "%d|%v|%T|%q" .Priority .Priority .Priority .Priority }}"#, "11|11|syslog.Priority|'\\v'"),
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
            (r#"{{if .Container.Config.Labels.nope}}a{{else if .Container.Config.Labels.app}}b{{else}}c{{end}}"#, "b"),
            (r#"{{if false}}a{{else if 0}}b{{else if ""}}c{{else}}d{{end}}"#, "d"),
            ("{{with .Container.Config.Labels.app}}app={{.}}{{end}}", "app=web"),
            ("{{with .Container.Config.Labels.nope}}x{{else}}none{{end}}", "none"),
            ("{{with .Container.Config.Labels.nope}}x{{else with .Container.Config.Labels.env}}{{.}}{{end}}", "prod"),
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
            ("{{len .Data}} {{len .Container.Config.Labels}} {{len .Container.Config.Env}} {{len \"é\"}}", "5 3 2 2"),
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
            ("{{ 'a' }} {{ 0x1F }} {{ -0b101 }} {{ 0o17 }} {{ 017 }} {{ 1_000 }} {{ +7 }}", "97 31 -5 15 15 1000 7"),
            ("{{ \"\\u00e9\\x41\\101\" }} {{ `raw\\n` }} {{ '\\n' }} {{ '\\'' }} {{ 'é' }}", "éAA raw\\n 10 39 233"),
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
            (r#"{{printf "%6.2f|%08.3d|%-08d|%+.3d|%.0d|" 3 5 5 5 0}}"#, "%!f(int=    03)|     005|5       |+005||"),
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
            r#"unknown field .Container.Foo in "{{.Container.Foo}}" at line 2, column 3; .Container has .ID, .Created, .Path, .Args, .Config, .State"#,
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
        ("{{template \"x\"}}", Dialect::Raw, "no template \"x\" is defined in \"{{template \\\"x\\\"}}\""),
        ("{{if 1}}{{define \"x\"}}{{end}}{{end}}", Dialect::Raw, "{{define}} must be outside any other action"),
        ("{{call .Data}}", Dialect::Raw, "function \"call\" is not supported in"),
        ("{{slice .Data 1 2 3}}", Dialect::Raw, "cannot 3-index slice a string in"),
        ("{{slice .Container.State.Pid 1}}", Dialect::Raw, "can't slice item of type int in"),
        ("{{ 1i }}", Dialect::Raw, "complex constants such as 1i are not supported"),
        ("{{ 0x1p4 }}", Dialect::Raw, "hexadecimal floating-point constants such as 0x1p4 are not supported"),
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
            "unknown field .Nope in \"{{.Nope}}\" at line 1, column 20; dot has .ID, .Created",
        ),
        ("{{$x}}", Dialect::Raw, "undefined variable $x in"),
        ("{{$x = 1}}", Dialect::Raw, "undefined variable $x in"),
        ("{{if true}}{{$x := 1}}{{else}}{{$x}}{{end}}", Dialect::Raw, "undefined variable $x in \"{{$x}}\""),
        ("{{$ := 1}}", Dialect::Raw, "cannot assign to $"),
        ("{{$a, $b := 1}}", Dialect::Raw, "too many declarations in command"),
        ("{{range $a, $b, $c := .Container.Config.Env}}{{end}}", Dialect::Raw, "range can only initialize variables"),
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
        ("{{range .Container.Config.Env}}{{else}}{{continue}}{{end}}", Dialect::Raw, "{{continue}} outside {{range}}"),
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
    assert!(compile_err(&format!("{{{{{deep}}}}}"), Dialect::Raw).starts_with("blocks and parentheses nest deeper"));
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
        ("{{index .Container.Config.Labels nil}}", "", "error calling index: value is nil; should be of type string"),
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
