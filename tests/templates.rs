//! `RAW_FORMAT` templates that logspout renders through go-dockerclient's `docker.Container` and
//! Go's `text/template`, against the real dockerd. Each expectation says where in Go's
//! documented behaviour it comes from; values that depend on the container are read back with
//! `docker inspect`.

mod util;

use std::thread;

use util::*;

fn raw_tcp(rx: &TcpReceiver, name: &str) -> String {
    format!("raw+tcp://{}?filter.name={name}", rx.addr())
}

fn settled_lines(rx: &TcpReceiver, n: usize) -> Vec<String> {
    rx.wait_for_lines(n, ARRIVE);
    thread::sleep(SETTLE);
    rx.lines()
}

/// Go's `time.Time.String()` of a UTC RFC 3339 timestamp as Docker writes it (RFC3339Nano:
/// the fraction already without trailing zeros).
fn go_time_string(rfc3339: &str) -> String {
    let t = rfc3339.strip_suffix('Z').expect("Docker writes UTC");
    format!("{} +0000 UTC", t.replacen('T', " ", 1))
}

/// The keys of a JSON object's top level, in the order they are written.
fn top_level_keys(json: &str) -> Vec<String> {
    let (mut keys, mut depth, mut in_str, mut escaped, mut start) = (Vec::new(), 0, false, false, 0);
    for (i, c) in json.char_indices() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_str = false;
                    if depth == 1 && json[i + 1..].starts_with(':') {
                        keys.push(json[start..i].to_string());
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => (in_str, start) = (true, i + 1),
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ => {}
        }
    }
    keys
}

#[test]
fn inspect_field_paths_print_as_go_prints_them() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let template = concat!(
        // bool and string fields: fmt's %v (`true`, the string as is).
        "{{.Container.State.Running}}|{{.Container.State.Status}}|",
        // []string: `[a b c]`; len of a slice.
        "{{.Container.Config.Cmd}}|{{.Container.Path}}|{{len .Container.Args}}|{{index .Container.Config.Entrypoint 0}}|",
        // time.Time: its String method; Docker's zero FinishedAt is Go's zero time.
        "{{.Container.Created}}|{{.Container.State.FinishedAt}}|{{.Container.Created.Format \"2006\"}}|",
        "{{.Container.HostConfig.NetworkMode}}|{{.Container.HostConfig.LogConfig.Type}}|",
        // Fields Docker leaves empty: zero values; a nil *SwarmNode prints <nil>.
        "{{.Container.HostConfig.Privileged}}|{{.Container.HostConfig.Memory}}|{{.Container.Node}}|",
        // Structs `{f1 f2}`, maps `map[k:v]` with sorted keys.
        "{{.Container.HostConfig.RestartPolicy}}|{{.Container.Config.Labels}}|{{.Container.HostConfig.PortBindings}}|",
        // Map keys as fields.
        "{{.Container.NetworkSettings.Networks.bridge.IPAddress}}|{{.Container.State.Pid}}|",
        // map[Port]struct{} and [2]int, through Docker's JSON as luaspout's client reads it.
        "{{.Container.Config.ExposedPorts}}|{{toJSON .Container.Config.ExposedPorts}}|{{.Container.HostConfig.ConsoleSize}}\n",
    );
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("RAW_FORMAT", template).start();
    let c = run_named(
        &name,
        &["--label", "b=2", "--label", "a=1", "--restart", "on-failure:3", "-p", "127.0.0.1::80"],
        "echo hi; sleep 60",
    );
    let lines = settled_lines(&rx, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let created = c.inspect("{{.Created}}");
    let host_port = c.inspect(r#"{{(index (index .HostConfig.PortBindings "80/tcp") 0).HostPort}}"#);
    let want = [
        "true".to_string(),
        "running".into(),
        "[sh -c echo hi; sleep 60]".into(),
        "/bin/busybox".into(),
        "3".into(),
        "/bin/busybox".into(),
        go_time_string(&created),
        "0001-01-01 00:00:00 +0000 UTC".into(),
        created[..4].to_string(),
        c.inspect("{{.HostConfig.NetworkMode}}"),
        "json-file".into(),
        "false".into(),
        "0".into(),
        "<nil>".into(),
        "{on-failure 3}".into(),
        "map[a:1 b:2]".into(),
        format!("map[80/tcp:[{{127.0.0.1 {host_port}}}]]"),
        c.inspect("{{.NetworkSettings.Networks.bridge.IPAddress}}"),
        c.pid().to_string(),
        "map[80/tcp:{}]".into(),
        r#"{"80/tcp":{}}"#.into(),
        "[0 0]".into(),
    ]
    .join("|");
    assert_eq!(lines[0], want);
}

#[test]
fn to_json_of_the_message_and_the_container_and_printing_dot() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    let template = "{{toJSON .}}\n{{toJSON .Container}}\n{{toJSON .Container.State}}\n{{.}}\n{{.Container.State}}\n";
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("RAW_FORMAT", template).start();
    let c = run_named(&name, &["--label", "x=<y>"], "echo 'a \"b\" <c>'; sleep 60");
    let lines = settled_lines(&rx, 5);
    assert_eq!(lines.len(), 5, "{lines:?}");
    let (message, container, state, dot) = (&lines[0], &lines[1], &lines[2], &lines[3]);

    // logspout's router.Message has no JSON tags: Container, Source, Data, Time, in that order;
    // Go's encoder escapes <, > and & as \u003c…
    assert!(message.starts_with(&format!("{{\"Container\":{container},\"Source\":\"stdout\",\"Data\":")), "{message}");
    assert!(message.contains(r#","Data":"a \"b\" \u003cc\u003e","Time":""#), "{message}");
    let v: serde_json::Value = serde_json::from_str(message).expect("valid JSON");
    assert_eq!(v["Container"]["Id"], c.id());
    assert_eq!(v["Container"]["Name"], format!("/{name}"));
    assert_eq!(v["Container"]["Config"]["Labels"]["x"], "<y>");

    // go-dockerclient's Container: its fields in declaration order under their JSON keys
    // (`Id`), empty `omitempty` fields left out.
    let keys = top_level_keys(container);
    let want: Vec<&str> = vec!["Id", "Created", "Path", "Args", "Config", "State", "Image", "NetworkSettings"];
    assert_eq!(keys[..want.len()], want, "go-dockerclient's order: {container}");
    let rest =
        ["ResolvConfPath", "HostnamePath", "HostsPath", "LogPath", "Name", "Driver", "HostConfig", "GraphDriver"];
    let at: Vec<usize> = rest.iter().map(|k| keys.iter().position(|x| x == k).expect(k)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "go-dockerclient's order: {keys:?}");
    assert!(!container.contains("\"RestartCount\":0"), "omitempty drops zeros: {container}");

    // State: Go writes the struct's fields in order, drops empty omitempty ones, always writes
    // times (FinishedAt: the zero time) and the Health struct.
    let want_state = format!(
        r#"{{"Status":"running","Running":true,"Pid":{},"StartedAt":"{}","FinishedAt":"0001-01-01T00:00:00Z","Health":{{}}}}"#,
        c.pid(),
        c.inspect("{{.State.StartedAt}}")
    );
    assert_eq!(state, &want_state);

    // {{.Container.State}}: text/template calls (*docker.State).String, go-dockerclient's
    // "Up " and docker/go-units' HumanDuration since StartedAt (the container just started).
    let up = &lines[4];
    assert!(
        up == "Up Less than a second" || up == "Up 1 second" || (up.starts_with("Up ") && up.ends_with(" seconds")),
        "{up}"
    );

    // {{.}}: Go prints the message struct's fields {Container Source Data Time}.
    assert!(dot.starts_with(&format!("{{&{{{} ", c.id())), "{dot}");
    assert!(dot.contains(&format!(" /{name} ")), "{dot}");
    assert!(dot.contains("} stdout a \"b\" <c> "), "{dot}");
    assert!(dot.ends_with(" +0000 UTC}"), "{dot}");
}

#[test]
fn define_template_and_block() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    // text/template: `{{template "name" pipeline}}` runs the named template with dot (and $)
    // set to the pipeline's value; `{{block}}` defines a template and runs it in place.
    let template = concat!(
        r#"{{define "src"}}[{{.}}]{{end}}"#,
        r#"{{define "who"}}{{.Container.Name}}/{{template "src" .Source}}{{end}}"#,
        r#"{{template "who" .}} {{block "msg" .Data}}<{{.}}>{{end}} {{template "msg" .Container.State.Status}}"#,
        "\n",
    );
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("RAW_FORMAT", template).start();
    let _c = run_named(&name, &[], "echo hello; sleep 0.2; echo oops >&2; sleep 60");
    let mut lines = settled_lines(&rx, 2);
    lines.sort();
    assert_eq!(
        lines,
        vec![format!("/{name}/[stderr] <oops> <running>"), format!("/{name}/[stdout] <hello> <running>")]
    );
}

#[test]
fn slice_and_floating_point_constants() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    // fmt: `%.2f` rounds to two decimals; `%v` of float64 1e3 is %g's shortest form, `1000`;
    // text/template: `slice x 1 3` is x[1:3] (bytes of a string, elements of a slice).
    let template = concat!(
        r#"{{printf "%.2f" 3.14159}}|{{printf "%v" 1e3}}|{{1e6}}|{{printf "%6.1f" 2.25}}|"#,
        r#"{{slice .Data 1 3}}|{{slice .Container.Args 1}}|{{index (slice .Container.Config.Cmd 2) 0}}|"#,
        // A slice of go-dockerclient's Mount structs.
        r#"{{len .Container.Mounts}} {{with index (slice .Container.Mounts 0 1) 0}}{{.Destination}} {{.RW}}{{end}}"#,
        "\n",
    );
    let _ls = Luaspout::builder().arg(raw_tcp(&rx, &name)).env("RAW_FORMAT", template).start();
    let _c = run_named(&name, &["-v", "/tmp:/mnt/x:ro"], "echo abcdef; sleep 60");
    let lines = settled_lines(&rx, 1);
    assert_eq!(
        lines,
        vec!["3.14|1000|1e+06|   2.2|bc|[-c echo abcdef; sleep 60]|echo abcdef; sleep 60|1 /mnt/x false".to_string()]
    );
}

#[test]
fn syslog_templates_take_the_same_forms() {
    let rx = TcpReceiver::start();
    let name = unique_name();
    // The same engine compiles SYSLOG_*: a named template, inspect fields, a float, slice.
    let data = concat!(
        r#"{{define "d"}}[{{.}}]{{end}}{{template "d" .Data}} running={{.Container.State.Running}} "#,
        r#"net={{.Container.HostConfig.NetworkMode}} {{printf "%.1f" 2.55}} {{slice .ContainerName 0 6}}"#,
    );
    let _ls = Luaspout::builder()
        .arg(format!("syslog+tcp://{}?filter.name={name}", rx.addr()))
        .env("SYSLOG_TAG", "{{.Container.Config.Labels.svc}}")
        .env("SYSLOG_DATA", data)
        .start();
    let c = run_named(&name, &["--label", "svc=api"], "echo hi; sleep 60");
    let lines: Vec<String> = settled_lines(&rx, 1).iter().map(|l| mask_syslog_timestamp(l)).collect();
    // fmt: 2.55 is 2.54999… in binary, so %.1f rounds it down.
    let want = format!(
        "<14>1 TS {} api {} - - [hi] running=true net={} 2.5 lstest",
        c.short_id(),
        c.pid(),
        c.inspect("{{.HostConfig.NetworkMode}}")
    );
    assert_eq!(lines, vec![want]);
}
