//! Templates over the container's whole inspect, `toJSON` of the message and its structs, and
//! printing them; expectations from Go's `fmt`, `text/template` and `encoding/json` docs.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::*;
use crate::message::Container;

/// 2021-12-06T15:27:06.123456789Z.
const T: i64 = 1_638_804_426_123_456_789;

/// A container as Docker 20.10 inspects it (trimmed), with a health check and a network.
fn inspected() -> Message {
    let json = serde_json::json!({
        "Id": "3b6ba57db54a",
        "Created": "2026-12-06T16:00:00.1234Z",
        "Path": "/bin/busybox",
        "Args": ["sh", "-c", "echo hi"],
        "State": {
            "Status": "running", "Running": true, "Paused": false, "Pid": 4242, "ExitCode": 0, "Error": "",
            "StartedAt": "2026-12-06T16:00:01Z", "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}
        },
        "Image": "sha256:abc",
        "Name": "/web_1",
        "RestartCount": 0,
        "Mounts": [
            {"Type": "bind", "Source": "/a", "Destination": "/x", "Mode": "", "RW": true, "Propagation": "rprivate"},
            {"Type": "volume", "Name": "v", "Source": "/var/lib/docker/volumes/v/_data", "Destination": "/y",
             "Driver": "local", "Mode": "z", "RW": false}
        ],
        "HostConfig": {
            "NetworkMode": "default", "Privileged": false, "PidsLimit": null, "OomKillDisable": false, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {}}, "CpuShares": 0, "Dns": [], "Binds": null,
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
        },
        "Config": {
            "Hostname": "3b6ba57db54a", "Tty": false, "Env": ["PATH=/bin"], "Cmd": ["sh", "-c", "echo hi"],
            "Image": "busybox", "Entrypoint": null, "Labels": {"app": "web"}, "ExposedPorts": {"80/tcp": {}},
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30_000_000_000u64, "Timeout": 1_500_000_000u64}
        },
        "NetworkSettings": {
            "Networks": {"bridge": {"IPAddress": "172.17.0.2", "IPPrefixLen": 16, "Aliases": null}},
            "Ports": {"80/tcp": null}
        }
    });
    let container = Container {
        id: "3b6ba57db54a".into(),
        name: "web_1".into(),
        image: "busybox".into(),
        image_id: "sha256:abc".into(),
        hostname: "3b6ba57db54a".into(),
        pid: 4242,
        labels: [("app".to_string(), "web".to_string())].into(),
        env: vec![("PATH".into(), "/bin".into())],
        inspect: OnceLock::from(Arc::new(json)),
        ..Default::default()
    };
    Message { container: Arc::new(container), source: Source::Stdout, time_ns: T, data: Bytes::from("hi"), ack: None }
}

fn check(dialect: Dialect, m: &Message, cases: &[(&str, &str)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(text, want)| {
            let t = match Template::compile(text, dialect) {
                Ok(t) => t,
                Err(e) => return Some(format!("{text}\n  compile error {e}")),
            };
            let mut out = Vec::new();
            t.render(m, &mut out);
            let got = String::from_utf8_lossy(&out).into_owned();
            (got != *want || t.errors() > 0)
                .then(|| format!("{text}\n   got {got:?} ({:?})\n  want {want:?}", t.last_error()))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn any_field_of_the_inspect_prints_as_go_prints_it() {
    check(
        Dialect::Raw,
        &inspected(),
        &[
            // Booleans, strings and numbers: fmt's %v.
            ("{{.Container.State.Running}} {{.Container.State.Status}} {{.Container.State.Pid}}", "true running 4242"),
            // Slices print as [a b], `len` counts them.
            ("{{.Container.Config.Cmd}} {{.Container.Path}} {{len .Container.Args}}", "[sh -c echo hi] /bin/busybox 3"),
            // time.Time's String; the zero time is Docker's "never".
            ("{{.Container.Created}}", "2026-12-06 16:00:00.1234 +0000 UTC"),
            ("{{.Container.State.FinishedAt}}", "0001-01-01 00:00:00 +0000 UTC"),
            (
                "{{.Container.State.FinishedAt.Unix}} {{.Container.State.FinishedAt.Format \"Mon 2006\"}}",
                "-62135596800 Mon 0001",
            ),
            ("{{.Container.Created.Format \"2006-01-02\"}} {{.Container.Created.Unix}}", "2026-12-06 1796572800"),
            // Go names differ from the JSON keys: ID/Id, CPUShares/CpuShares, DNS/Dns, HostIP/HostIp.
            (
                "{{.Container.ID}} {{.Container.HostConfig.CPUShares}} {{.Container.HostConfig.DNS}}",
                "3b6ba57db54a 0 []",
            ),
            ("{{(index .Container.HostConfig.PortBindings \"80/tcp\" 0).HostIP}}|", "|"),
            (
                "{{range $p, $b := .Container.HostConfig.PortBindings}}{{$p}}->{{(index $b 0).HostPort}}{{end}}",
                "80/tcp->8080",
            ),
            ("{{.Container.HostConfig.NetworkMode}}", "default"),
            // Absent or null fields are Go's zero values.
            (
                "{{.Container.HostConfig.Privileged}} {{.Container.HostConfig.Memory}} {{.Container.HostConfig.Binds}}",
                "false 0 []",
            ),
            ("{{.Container.Node}} {{.Container.GraphDriver}} {{.Container.Config.Entrypoint}}", "<nil> <nil> []"),
            ("{{if .Container.Node}}x{{else}}no node{{end}}", "no node"),
            // Pointers to numbers and bools print what they point to, or <nil>; arrays have
            // their length.
            ("{{.Container.HostConfig.PidsLimit}} {{.Container.HostConfig.OOMKillDisable}}", "<nil> false"),
            (
                "{{if .Container.HostConfig.OOMKillDisable}}set{{end}} {{.Container.HostConfig.ConsoleSize}} {{len .Container.HostConfig.ConsoleSize}}",
                "set [0 0] 2",
            ),
            // Structs print their fields in order, maps as map[k:v] with sorted keys.
            ("{{.Container.HostConfig.RestartPolicy}}", "{no 0}"),
            ("{{.Container.HostConfig.LogConfig}}", "{json-file map[]}"),
            ("{{.Container.Config.ExposedPorts}}", "map[80/tcp:{}]"),
            ("{{.Container.State.Health}}", "{healthy 0 []}"),
            ("{{printf \"%+v\" .Container.HostConfig.RestartPolicy}}", "{Name:no MaximumRetryCount:0}"),
            ("{{printf \"%v\" .Container.HostConfig.RestartPolicy}}", "{no 0}"),
            ("{{printf \"%#v\" .Container.HostConfig.RestartPolicy}}", "{no 0}"),
            // A map's keys as fields; a missing one is <no value>.
            ("{{.Container.NetworkSettings.Networks.bridge.IPAddress}}", "172.17.0.2"),
            ("{{.Container.NetworkSettings.Networks.nope}}", "<no value>"),
            ("{{range $k, $v := .Container.NetworkSettings.Networks}}{{$k}}={{$v.IPPrefixLen}}{{end}}", "bridge=16"),
            ("{{index .Container.HostConfig.LogConfig.Config \"max-size\"}}|", "|"),
            // time.Duration prints with its String method, and as a number with %d.
            ("{{.Container.Config.Healthcheck.Interval}} {{.Container.Config.Healthcheck.Timeout}}", "30s 1.5s"),
            (
                "{{printf \"%d %T\" .Container.Config.Healthcheck.Interval .Container.Config.Healthcheck.Interval}}",
                "30000000000 time.Duration",
            ),
            (
                "{{printf \"%T %T\" .Container.HostConfig .Container.NetworkSettings.Networks}}",
                "*docker.HostConfig map[string]docker.ContainerNetwork",
            ),
            ("{{len .Container.NetworkSettings.Networks}} {{len .Container.Config.ExposedPorts}}", "1 1"),
            // eq: structs by their fields, pointers by identity.
            (
                "{{eq .Container.HostConfig.RestartPolicy .Container.HostConfig.RestartPolicy}} {{eq .Container.Node .Container.Node}}",
                "true true",
            ),
            (
                "{{eq .Container.HostConfig .Container.HostConfig}} {{eq .Container.State.Health .Container.State.Health}}",
                "true true",
            ),
        ],
    );
}

#[test]
fn nil_pointers_fail_where_go_fails() {
    let t = Template::compile("a{{.Container.Node.Name}}", Dialect::Raw).unwrap();
    let mut out = Vec::new();
    t.render(&inspected(), &mut out);
    assert_eq!(out, b"a");
    assert!(t.last_error().unwrap().contains("nil pointer evaluating *docker.SwarmNode.Name"), "{:?}", t.last_error());
}

#[test]
fn misspelt_inspect_fields_fail_at_compile_time() {
    let e = Template::compile("{{.Container.HostConfig.NetworkMod}}", Dialect::Raw).unwrap_err().to_string();
    assert!(e.starts_with("unknown field .Container.HostConfig.NetworkMod in"), "{e}");
    assert!(e.contains(".Container.HostConfig has .Binds, .CapAdd"), "{e}");
    let e = Template::compile("{{.Container.State.running}}", Dialect::Raw).unwrap_err().to_string();
    assert!(e.contains("unknown field .Container.State.running"), "{e}");
}

#[test]
fn to_json_of_the_container_is_go_dockerclient_json() {
    let m = inspected();
    // encoding/json: fields in go-dockerclient's order under their JSON keys, `omitempty` ones
    // left out when empty, structs (State, Health, RestartPolicy) and times always written.
    let container = concat!(
        r#"{"Id":"3b6ba57db54a","Created":"2026-12-06T16:00:00.1234Z","Path":"/bin/busybox","Args":["sh","-c","echo hi"],"#,
        r#""Config":{"Hostname":"3b6ba57db54a","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin"],"Cmd":["sh","-c","echo hi"],"#,
        r#""Healthcheck":{"Test":["CMD","true"],"Interval":30000000000,"Timeout":1500000000},"Image":"busybox","#,
        r#""Entrypoint":null,"Labels":{"app":"web"}},"#,
        r#""State":{"Status":"running","Running":true,"Pid":4242,"StartedAt":"2026-12-06T16:00:01Z","#,
        r#""FinishedAt":"0001-01-01T00:00:00Z","Health":{"Status":"healthy"}},"Image":"sha256:abc","#,
        r#""NetworkSettings":{"Networks":{"bridge":{"IPPrefixLen":16,"IPAddress":"172.17.0.2"}},"Ports":{"80/tcp":null}},"#,
        // Mount has no JSON tags: every field, under its Go name. An array ([2]int) is never
        // empty; a pointer (*bool) only when nil.
        r#""Name":"/web_1","Mounts":[{"Name":"","Source":"/a","Destination":"/x","Driver":"","Mode":"","RW":true},"#,
        r#"{"Name":"v","Source":"/var/lib/docker/volumes/v/_data","Destination":"/y","Driver":"local","Mode":"z","RW":false}],"#,
        r#""HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8080"}]},"NetworkMode":"default","#,
        r#""ConsoleSize":[0,0],"RestartPolicy":{"Name":"no"},"LogConfig":{"Type":"json-file"},"OomKillDisable":false}}"#
    );
    let message =
        format!(r#"{{"Container":{container},"Source":"stdout","Data":"hi","Time":"2021-12-06T15:27:06.123456789Z"}}"#);
    check(
        Dialect::Raw,
        &m,
        &[
            ("{{toJSON .Container}}", container),
            ("{{toJSON .}}", &message),
            ("{{toJSON $}}", &message),
            ("{{toJSON .Container.State.Health}}", r#"{"Status":"healthy"}"#),
            ("{{toJSON .Container.Node}} {{toJSON .Container.Config.Entrypoint}}", "null null"),
            ("{{with .Container}}{{toJSON .HostConfig.RestartPolicy}}{{end}}", r#"{"Name":"no"}"#),
        ],
    );
    check(Dialect::Syslog, &m, &[("{{toJSON .}}", &message)]);
}

#[test]
fn printing_the_message_and_its_structs() {
    let m = inspected();
    let mut out = Vec::new();
    Template::compile("{{.}}", Dialect::Raw).unwrap().render(&m, &mut out);
    let s = String::from_utf8(out).unwrap();
    // Go prints *router.Message's fields in order: {Container Source Data Time}, the container
    // being a pointer (an address in Go, what it points to here).
    assert!(
        s.starts_with(
            "{&{3b6ba57db54a 2026-12-06 16:00:00.1234 +0000 UTC /bin/busybox [sh -c echo hi] &{3b6ba57db54a  "
        ),
        "{s}"
    );
    assert!(s.ends_with("} stdout hi 2021-12-06 15:27:06.123456789 +0000 UTC}"), "{s}");
    check(
        Dialect::Raw,
        &m,
        &[
            (
                // fmt of a State value (a copy, as printf gets it): its fields.
                "{{printf \"%v\" .Container.State}}",
                "{running true false false false false false 4242 0  2026-12-06 16:00:01 +0000 UTC 0001-01-01 00:00:00 +0000 UTC {healthy 0 []}}",
            ),
            ("{{with .Container.Config}}{{.Hostname}}{{end}}", "3b6ba57db54a"),
        ],
    );
    let mut a = Vec::new();
    Template::compile("{{.Container}}", Dialect::Raw).unwrap().render(&m, &mut a);
    assert!(a.starts_with(b"{3b6ba57db54a 2026-12-06"), "{}", String::from_utf8_lossy(&a));
    let mut b = Vec::new();
    Template::compile("{{printf \"%v\" .Container}}", Dialect::Raw).unwrap().render(&m, &mut b);
    assert_eq!(b[0], b'&');
    assert_eq!(&b[1..], &a[..]);
}

#[test]
fn containers_without_an_inspect_have_the_fields_luaspout_keeps() {
    let m = Message {
        container: Arc::new(Container { id: "abc".into(), name: "db".into(), pid: 7, ..Default::default() }),
        source: Source::Stderr,
        time_ns: T,
        data: Bytes::from("x"),
        ack: None,
    };
    check(
        Dialect::Raw,
        &m,
        &[
            ("{{.Container.State.Pid}} {{.Container.State.Running}} {{.Container.Path}}|", "7 false |"),
            (
                "{{toJSON .Container.State}}",
                r#"{"Pid":7,"StartedAt":"0001-01-01T00:00:00Z","FinishedAt":"0001-01-01T00:00:00Z","Health":{}}"#,
            ),
        ],
    );
}

#[test]
fn define_template_and_block() {
    let m = inspected();
    check(
        Dialect::Raw,
        &m,
        &[
            // text/template's doc: "Nested template definitions".
            (
                r#"{{define "T1"}}ONE{{end}}{{define "T2"}}TWO{{end}}{{define "T3"}}{{template "T1"}} {{template "T2"}}{{end}}{{template "T3"}}"#,
                "ONE TWO",
            ),
            // Dot and $ are the value passed; without one, dot is nil.
            (
                r#"{{define "c"}}[{{.}}]{{end}}{{template "c" .Data}}{{template "c" .Container.State.Pid}}"#,
                "[hi][4242]",
            ),
            (
                r#"{{define "m"}}{{.Source}}:{{$.Data}}:{{.Container.State.Status}}{{end}}{{template "m" .}}"#,
                "stdout:hi:running",
            ),
            (r#"{{define "n"}}{{.}}{{end}}{{template "n"}}"#, "<no value>"),
            (r#"{{template "later" .Source}}|{{define "later"}}<{{.}}>{{end}}"#, "<stdout>|"),
            // A block is a define plus a template call at its place.
            (r#"a{{block "b" .Data}}<{{.}}>{{end}}z{{template "b" "x"}}"#, "a<hi>z<x>"),
            // Each call has its own variables; the caller's are back afterwards.
            (r#"{{$x := 1}}{{define "v"}}{{$x := 2}}{{$x}}{{end}}{{template "v"}}{{$x}}"#, "21"),
            (
                r#"{{range $i, $e := .Container.Args}}{{template "e" $e}}{{end}}{{define "e"}}({{.}}){{end}}"#,
                "(sh)(-c)(echo hi)",
            ),
            (
                r#"{{define "j"}}{{toJSON .}}{{end}}{{template "j" .Container.HostConfig.RestartPolicy}}"#,
                r#"{"Name":"no"}"#,
            ),
            // An empty redefinition leaves the first one.
            (r#"{{define "e"}}x{{end}}{{define "e"}} {{end}}{{template "e"}}"#, "x"),
        ],
    );
    let e = |text: &str| Template::compile(text, Dialect::Raw).unwrap_err().to_string();
    assert!(e(r#"{{define "a"}}x{{end}}{{define "a"}}y{{end}}"#).contains("multiple definition of template \"a\""));
    assert!(e(r#"{{$x := 1}}{{define "v"}}{{$x}}{{end}}"#).contains("undefined variable $x"));
    assert!(e(r#"{{define "v"}}x"#).contains("unclosed template definition"));
    assert!(e(r#"{{define "v"}}{{break}}{{end}}"#).contains("{{break}} outside {{range}}"));
    assert!(e(r#"{{template "nope" .}}"#).starts_with("no template \"nope\" is defined in"));
    // Go's limit on recursion is a render error; luaspout's depth is 100.
    let t = Template::compile(r#"{{define "r"}}.{{template "r" .}}{{end}}{{template "r" .}}"#, Dialect::Raw).unwrap();
    let mut out = Vec::new();
    t.render(&m, &mut out);
    assert_eq!(out.len(), 100);
    assert!(t.last_error().unwrap().contains("exceeded maximum template depth (100)"));
    // A call costs one level plus the nesting of its body: here 1 + 1.
    let t =
        Template::compile(r#"{{define "r"}}{{if .}}.{{template "r" .}}{{end}}{{end}}{{template "r" .}}"#, Dialect::Raw)
            .unwrap();
    let mut out = Vec::new();
    t.render(&m, &mut out);
    assert_eq!(out.len(), 50);
    assert!(t.last_error().unwrap().contains("exceeded maximum template depth (100)"));
}

#[test]
fn floating_point_constants_print_as_go_fmt_prints_them() {
    check(
        Dialect::Raw,
        &inspected(),
        &[
            // fmt: %v of a float64 is %g with the shortest digits, %e from an exponent of 6 up
            // or below -4 (strconv's 'g' with precision -1).
            (r#"{{printf "%.2f" 3.14159}} {{printf "%v" 1e3}}"#, "3.14 1000"),
            (
                "{{1e6}} {{3.0}} {{0.1}} {{-2.5}} {{1e21}} {{0.00001}} {{0.0001}} {{123456.7}} {{.5}}",
                "1e+06 3 0.1 -2.5 1e+21 1e-05 0.0001 123456.7 0.5",
            ),
            (r#"{{printf "%e|%E|%.2e" 1234.5678 0.000123 0.0}}"#, "1.234568e+03|1.230000E-04|0.00e+00"),
            (
                r#"{{printf "%g|%g|%.3g|%.3g|%G|%.0f" 100000.0 1000000.0 3.14159 1234.0 1e-10 2.5}}"#,
                "100000|1e+06|3.14|1.23e+03|1E-10|2",
            ),
            (
                r#"{{printf "%8.3f|%-8.2f|%+.1f|%08.3f|% .1f" 3.14159 2.5 2.0 -3.14159 1.0}}"#,
                "   3.142|2.50    |+2.0|-003.142| 1.0",
            ),
            (r#"{{printf "%.1f %.2f %5.1f%%" 0.25 2.675 99.44}}"#, "0.2 2.67  99.4%"),
            (r#"{{printf "%T %d %s" 1.5 1.5 1.5}}"#, "float64 %!d(float64=1.5) %!s(float64=1.5)"),
            ("{{print 1.5 2.0}} {{1_000.5}}", "1.5 2 1000.5"),
            // encoding/json: shortest digits, an exponent below 1e-6 and from 1e21 (e-7, not e-07).
            (
                "{{toJSON 1e21}} {{toJSON 0.0000001}} {{toJSON 1.5}} {{toJSON 100.0}} {{toJSON -0.000001}}",
                "1e+21 1e-7 1.5 100 -0.000001",
            ),
            ("{{eq 1.5 1.5}} {{lt 1.5 2.5}} {{if 0.0}}x{{else}}zero{{end}}", "true true zero"),
        ],
    );
}

#[test]
fn slice_of_strings_and_slices() {
    let m = inspected();
    // text/template's slice: `slice x 1 2` is x[1:2].
    check(
        Dialect::Raw,
        &m,
        &[
            ("{{slice .Data 1}}|{{slice .Data 0 1}}|{{slice .Data}}|{{slice .Data 2 2}}|", "i|h|hi||"),
            (
                "{{slice .Container.Args 1}} {{slice .Container.Args 0 1 2}} {{index (slice .Container.Args 1) 0}}",
                "[-c echo hi] [sh] -c",
            ),
            ("{{len (slice .Container.Config.Env 0 0)}} {{slice .Container.Config.Cmd 1 3 3}}", "0 [-c echo hi]"),
            (r#"{{slice "héllo" 1 3}}"#, "é"),
            (r#"{{range slice .Container.Args 1}}<{{.}}>{{end}}"#, "<-c><echo hi>"),
            // A slice of structs.
            ("{{.Container.Mounts}}", "[{ /a /x   true} {v /var/lib/docker/volumes/v/_data /y local z false}]"),
            ("{{slice .Container.Mounts 1}}", "[{v /var/lib/docker/volumes/v/_data /y local z false}]"),
            ("{{len (slice .Container.Mounts 1)}} {{(index (slice .Container.Mounts 1) 0).Destination}}", "1 /y"),
            (
                "{{range slice .Container.Mounts 0 1}}{{.Source}}{{end}}|{{slice .Container.Mounts 2}}|{{if slice .Container.Mounts 2}}x{{end}}",
                "/a|[]|",
            ),
            (
                "{{toJSON (slice .Container.Mounts 1 2)}}",
                r#"[{"Name":"v","Source":"/var/lib/docker/volumes/v/_data","Destination":"/y","Driver":"local","Mode":"z","RW":false}]"#,
            ),
            ("{{slice (slice .Container.Mounts 1) 0 1 | len}} {{slice .Container.ExecIDs}}", "1 []"),
        ],
    );
    let fails = |text: &str, want: &str| {
        let t = Template::compile(text, Dialect::Raw).unwrap();
        t.render(&m, &mut Vec::new());
        let e = t.last_error().unwrap_or_default();
        assert!(e.contains(want), "{text}: {e}");
    };
    fails("{{slice .Data 2 1}}", "error calling slice: invalid slice index: 2 > 1");
    fails("{{slice .Data 9}}", "error calling slice: index out of range: 9");
    fails("{{slice .Container.Args 0 2 1}}", "error calling slice: invalid slice index: 2 > 1");
}

#[test]
fn state_prints_with_go_dockerclients_string_method() {
    // text/template calls String on an addressable value whose pointer has it: *docker.State.
    let m = inspected();
    let mut out = Vec::new();
    Template::compile("{{.Container.State}}|{{with .Container.State}}{{.}}{{end}}", Dialect::Raw)
        .unwrap()
        .render(&m, &mut out);
    let s = String::from_utf8(out).unwrap();
    let (a, b) = s.split_once('|').unwrap();
    assert!(a.starts_with("Up ") && a == b, "{s}");
    let mut out = Vec::new();
    Template::compile("{{.Container.State.String}}|{{.Container.State.StateString}}", Dialect::Raw)
        .unwrap()
        .render(&m, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), format!("{a}|running"));
    let started = 1_796_572_801_000_000_000; // 2026-12-06T16:00:01Z
    assert_eq!(state_string(&m.container, started + 90_000_000_000), "Up About a minute");
    // docker/go-units' HumanDuration.
    let s = 1_000_000_000i64;
    let cases = [
        (0, "Less than a second"),
        (s, "1 second"),
        (59 * s, "59 seconds"),
        (60 * s, "About a minute"),
        (59 * 60 * s, "59 minutes"),
        (90 * 60 * s, "2 hours"),
        (47 * 3600 * s, "47 hours"),
        (48 * 3600 * s, "2 days"),
        (20 * 86400 * s, "2 weeks"),
        (100 * 86400 * s, "3 months"),
        (800 * 86400 * s, "2 years"),
    ];
    for (ns, want) in cases {
        assert_eq!(human_duration(ns), want, "{ns}");
    }
    let stopped = serde_json::json!({"State": {"Running": false, "ExitCode": 3,
        "StartedAt": "2026-12-06T16:00:01Z", "FinishedAt": "2026-12-06T16:00:11Z"}});
    let c = Container { inspect: OnceLock::from(Arc::new(stopped)), ..Default::default() };
    assert_eq!(state_string(&c, started + 3 * 3600 * s), "Exited (3) 3 hours ago");
    let created = serde_json::json!({"State": {"StartedAt": "0001-01-01T00:00:00Z"}});
    let c = Container { inspect: OnceLock::from(Arc::new(created)), ..Default::default() };
    assert_eq!(state_string(&c, started), "Created");
}

#[test]
fn deep_templates_fit_a_threads_stack() {
    // The worst a template can nest: 99 blocks, inside them a recursive template whose body
    // nests as deep as the budget lets it recurse. Rendering it on a 2 MiB stack (a tokio
    // worker's) stops with an error rather than overflowing.
    let open: String = "{{if 1}}".repeat(49);
    let close: String = "{{end}}".repeat(49);
    let text = format!(
        r#"{{{{define "r"}}}}{open}{{{{template "r" .}}}}{close}{{{{end}}}}{}{{{{template "r" .}}}}{}"#,
        "{{with .}}".repeat(99),
        "{{end}}".repeat(99)
    );
    let t = Template::compile(&text, Dialect::Raw).unwrap();
    let done = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let mut out = Vec::new();
            t.render(&inspected(), &mut out);
            t.last_error()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(done.unwrap().contains("exceeded maximum template depth"));
}
