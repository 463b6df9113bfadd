//! The deployment examples in `examples/` are checked, not just shipped:
//!
//! - `examples/docker-compose.yml` (luaspout in front of an ELK stack): it uses only keys of
//!   the Compose Specification, every service has an image, the ELK images are pinned, every
//!   service but luaspout sets `LOGSPOUT=ignore` (list or map form), luaspout mounts the Docker
//!   socket, every relative bind mount exists, the route points at a service of the file on the
//!   port the Logstash pipeline listens on, and `docker compose config -q` (or `docker-compose`)
//!   accepts the file when either is installed.
//! - `examples/swarm-stack.yml` (a `docker stack deploy` file): luaspout is a global service
//!   that mounts the socket and `/etc/hostname` as `/etc/host_hostname`, has resource limits,
//!   and the file uses only keys from the set below that swarm honours; `docker stack config`
//!   accepts it when the docker CLI has that command.
//! - `examples/kubernetes.yml` (a ConfigMap and a DaemonSet): only keys of the Kubernetes API
//!   in the parts it uses, the selector matches the pod's labels, the pod tolerates every
//!   taint, mounts the socket, the containers directory read-only at the same path, the
//!   ConfigMap whole at `/etc/luaspout` (a `subPath` mount would never see an update) and a
//!   host directory for the cursors, has requests, a memory limit and a liveness probe that
//!   runs `/luaspout health`, keeps the HTTP API off the cluster network, sets only variables
//!   luaspout or its `routes.lua` reads, and its `routes.lua` passes `luaspout check` with the
//!   pod's environment (the Secret's values as the file's header creates it). tests/e2e.rs
//!   runs the pod itself.
//! - In the compose and stack files, the route URIs (the command, or `ROUTE_URIS`, after compose's `${VAR:-default}`
//!   substitution) are accepted by the real binary (`luaspout check`), with the service's own
//!   environment, through the embedded default config and through a mounted `routes.lua`; and
//!   every variable set on the luaspout service is one luaspout documents.
//!
//! Each check returns a list of problems rather than asserting, so that the `broken_*` tests
//! can break the real files in memory and show that every check does catch what it is for.
//! Needs no Docker daemon (neither `config` command talks to one): the external tools are used
//! only when installed, with a printed note when they are not; the YAML checks always run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use yaml_rust2::{Yaml, YamlLoader};

const LUASPOUT: &str = env!("CARGO_BIN_EXE_luaspout");

/// The variables luaspout reads, as README.md documents them: its Environment section, plus
/// the `MULTILINE_*` defaults (Multiline section) and `RUST_LOG` (Logs section). A variable
/// set on the luaspout service that is not here is a typo or a logspout-only variable, and
/// would be silently ignored; add it here when the README documents it.
const DOCUMENTED_ENV: &[&str] = &[
    "PORT",
    "HTTP_PORT",
    "HTTP_BIND_ADDRESS",
    "ROUTE_URIS",
    "BACKLOG",
    "TAIL",
    "ALLOW_TTY",
    "EXCLUDE_LABEL",
    "EXCLUDE_LABELS",
    "RAW_FORMAT",
    "SYSLOG_FORMAT",
    "SYSLOG_PRIORITY",
    "SYSLOG_TIMESTAMP",
    "SYSLOG_HOSTNAME",
    "SYSLOG_TAG",
    "SYSLOG_PID",
    "SYSLOG_STRUCTURED_DATA",
    "SYSLOG_DATA",
    "SYSLOG_TCP_FRAMING",
    "DEBUG",
    "DOCKER_HOST",
    "LUASPOUT_CONFIG",
    "LUASPOUT_WORKERS",
    "LUASPOUT_SOURCE",
    "LUASPOUT_CONTAINERS_DIR",
    "MULTILINE_ENABLE_DEFAULT",
    "MULTILINE_MATCH",
    "MULTILINE_PATTERN",
    "MULTILINE_FLUSH_AFTER",
    "MULTILINE_SEPARATOR",
    "RUST_LOG",
];

/// Where dockerd keeps the containers' json-file logs, which luaspout reads directly when
/// mounted (docs/deploy.md).
const CONTAINERS_DIR: &str = "/var/lib/docker/containers";

/// Where the image reads its config when one is mounted (README, contract).
const DEFAULT_CONFIG_IN_IMAGE: &str = "/etc/luaspout/routes.lua";

// ---------------------------------------------------------------------------------------------
// Keys a stack file may use (what `docker stack deploy` honours for this kind of service).

/// A schema of allowed keys: `Any` accepts any value, `Map` only the listed keys (each with
/// its own schema), `Names` only the listed keys (any values), `Each` a mapping of user-chosen
/// names whose values all follow one schema.
enum Keys {
    Any,
    Map(&'static [(&'static str, Keys)]),
    Names(&'static [&'static str]),
    Each(&'static Keys),
    /// A list whose items all follow one schema.
    List(&'static Keys),
}

const STACK_FILE: Keys = Keys::Map(&[
    ("version", Keys::Any),
    ("services", Keys::Each(&STACK_SERVICE)),
    ("networks", Keys::Any),
    ("volumes", Keys::Any),
    ("configs", Keys::Any),
]);

const STACK_SERVICE: Keys = Keys::Map(&[
    ("image", Keys::Any),
    ("command", Keys::Any),
    ("environment", Keys::Any),
    ("volumes", Keys::Any),
    (
        "deploy",
        Keys::Map(&[
            ("mode", Keys::Any),
            (
                "resources",
                Keys::Map(&[
                    ("limits", Keys::Map(&[("cpus", Keys::Any), ("memory", Keys::Any), ("pids", Keys::Any)])),
                    (
                        "reservations",
                        Keys::Map(&[("cpus", Keys::Any), ("memory", Keys::Any), ("generic_resources", Keys::Any)]),
                    ),
                ]),
            ),
            (
                "restart_policy",
                Keys::Map(&[
                    ("condition", Keys::Any),
                    ("delay", Keys::Any),
                    ("max_attempts", Keys::Any),
                    ("window", Keys::Any),
                ]),
            ),
            (
                "placement",
                Keys::Map(&[
                    ("constraints", Keys::Any),
                    ("preferences", Keys::Any),
                    ("max_replicas_per_node", Keys::Any),
                ]),
            ),
        ]),
    ),
    ("networks", Keys::Any),
    ("ports", Keys::Any),
    (
        "healthcheck",
        Keys::Map(&[
            ("test", Keys::Any),
            ("interval", Keys::Any),
            ("timeout", Keys::Any),
            ("retries", Keys::Any),
            ("start_period", Keys::Any),
            ("disable", Keys::Any),
        ]),
    ),
]);

/// A compose file for `docker compose`: the top-level and service keys of the Compose
/// Specification (plus `version`, obsolete but accepted), so that a misspelt key fails here
/// even where no compose tool is installed to run `config -q`.
const COMPOSE_FILE: Keys = Keys::Map(&[
    ("version", Keys::Any),
    ("name", Keys::Any),
    ("include", Keys::Any),
    ("services", Keys::Each(&COMPOSE_SERVICE)),
    ("networks", Keys::Any),
    ("volumes", Keys::Any),
    ("configs", Keys::Any),
    ("secrets", Keys::Any),
    ("models", Keys::Any),
]);

#[rustfmt::skip]
const COMPOSE_SERVICE: Keys = Keys::Names(&[
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent", "command",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
    "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on", "deploy", "develop",
    "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname", "driver_opts", "entrypoint",
    "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add",
    "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels", "label_file", "links", "logging",
    "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "models", "network_mode",
    "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start",
    "pre_stop", "privileged", "profiles", "provider", "pull_policy", "pull_refresh_after", "read_only", "restart",
    "runtime", "scale", "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
    "storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes",
    "volumes_from", "working_dir",
]);

// ---------------------------------------------------------------------------------------------
// Keys of the Kubernetes objects a manifest may use, as the API defines them (core/v1 ConfigMap,
// apps/v1 DaemonSet, in the parts a log router's DaemonSet uses): the API server drops or
// refuses a misspelt field, so it fails here first.

const CONFIG_MAP: Keys = Keys::Map(&[
    ("apiVersion", Keys::Any),
    ("kind", Keys::Any),
    ("metadata", OBJECT_META),
    ("data", Keys::Any),
    ("binaryData", Keys::Any),
    ("immutable", Keys::Any),
]);

const OBJECT_META: Keys = Keys::Names(&["name", "namespace", "labels", "annotations"]);

const DAEMON_SET: Keys = Keys::Map(&[
    ("apiVersion", Keys::Any),
    ("kind", Keys::Any),
    ("metadata", OBJECT_META),
    (
        "spec",
        Keys::Map(&[
            ("selector", Keys::Names(&["matchLabels", "matchExpressions"])),
            (
                "updateStrategy",
                Keys::Map(&[("type", Keys::Any), ("rollingUpdate", Keys::Names(&["maxUnavailable", "maxSurge"]))]),
            ),
            ("minReadySeconds", Keys::Any),
            ("revisionHistoryLimit", Keys::Any),
            ("template", Keys::Map(&[("metadata", OBJECT_META), ("spec", POD_SPEC)])),
        ]),
    ),
]);

#[rustfmt::skip]
const POD_SPEC: Keys = Keys::Map(&[
    ("containers", Keys::List(&CONTAINER)),
    ("initContainers", Keys::List(&CONTAINER)),
    ("volumes", Keys::List(&VOLUME)),
    ("tolerations", Keys::List(&Keys::Names(&["key", "operator", "value", "effect", "tolerationSeconds"]))),
    ("activeDeadlineSeconds", Keys::Any), ("affinity", Keys::Any), ("automountServiceAccountToken", Keys::Any),
    ("dnsConfig", Keys::Any), ("dnsPolicy", Keys::Any), ("enableServiceLinks", Keys::Any),
    ("hostAliases", Keys::Any), ("hostIPC", Keys::Any), ("hostNetwork", Keys::Any), ("hostPID", Keys::Any),
    ("hostUsers", Keys::Any), ("hostname", Keys::Any), ("imagePullSecrets", Keys::Any), ("nodeName", Keys::Any),
    ("nodeSelector", Keys::Any), ("os", Keys::Any), ("priority", Keys::Any), ("priorityClassName", Keys::Any),
    ("restartPolicy", Keys::Any), ("runtimeClassName", Keys::Any), ("schedulerName", Keys::Any),
    ("securityContext", Keys::Any), ("serviceAccountName", Keys::Any), ("shareProcessNamespace", Keys::Any),
    ("terminationGracePeriodSeconds", Keys::Any), ("topologySpreadConstraints", Keys::Any),
]);

#[rustfmt::skip]
const CONTAINER: Keys = Keys::Map(&[
    ("name", Keys::Any), ("image", Keys::Any), ("imagePullPolicy", Keys::Any), ("command", Keys::Any),
    ("args", Keys::Any), ("workingDir", Keys::Any), ("ports", Keys::Any), ("envFrom", Keys::Any),
    ("env", Keys::List(&ENV_VAR)),
    ("resources", Keys::Map(&[
        ("requests", Keys::Names(&["cpu", "memory", "ephemeral-storage"])),
        ("limits", Keys::Names(&["cpu", "memory", "ephemeral-storage"])),
    ])),
    ("volumeMounts", Keys::List(&Keys::Names(&[
        "name", "mountPath", "readOnly", "subPath", "subPathExpr", "mountPropagation", "recursiveReadOnly",
    ]))),
    ("livenessProbe", PROBE), ("readinessProbe", PROBE), ("startupProbe", PROBE), ("lifecycle", Keys::Any),
    ("securityContext", Keys::Names(&[
        "allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged", "procMount",
        "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser", "seLinuxOptions", "seccompProfile",
    ])),
    ("terminationMessagePath", Keys::Any), ("terminationMessagePolicy", Keys::Any), ("resizePolicy", Keys::Any),
]);

const ENV_VAR: Keys = Keys::Map(&[
    ("name", Keys::Any),
    ("value", Keys::Any),
    (
        "valueFrom",
        Keys::Map(&[
            ("secretKeyRef", Keys::Names(&["name", "key", "optional"])),
            ("configMapKeyRef", Keys::Names(&["name", "key", "optional"])),
            ("fieldRef", Keys::Names(&["fieldPath", "apiVersion"])),
            ("resourceFieldRef", Keys::Names(&["containerName", "resource", "divisor"])),
        ]),
    ),
]);

#[rustfmt::skip]
const PROBE: Keys = Keys::Map(&[
    ("exec", Keys::Names(&["command"])), ("httpGet", Keys::Any), ("tcpSocket", Keys::Any), ("grpc", Keys::Any),
    ("initialDelaySeconds", Keys::Any), ("periodSeconds", Keys::Any), ("timeoutSeconds", Keys::Any),
    ("successThreshold", Keys::Any), ("failureThreshold", Keys::Any),
]);

/// The volume kinds a log router's pod has a use for; any other is flagged for a look.
const VOLUME: Keys = Keys::Map(&[
    ("name", Keys::Any),
    ("hostPath", Keys::Names(&["path", "type"])),
    ("configMap", Keys::Names(&["name", "items", "defaultMode", "optional"])),
    ("secret", Keys::Names(&["secretName", "items", "defaultMode", "optional"])),
    ("emptyDir", Keys::Names(&["medium", "sizeLimit"])),
]);

/// Every key of `doc` that `schema` does not allow, as dotted paths (`services.luaspout.x`).
fn unsupported_keys(doc: &Yaml, schema: &Keys, path: &str, out: &mut Vec<String>) {
    unsupported_keys_in(doc, schema, path, false, out)
}

/// [`unsupported_keys`], where `extensions` also allows compose's `x-…` keys anywhere.
fn unsupported_keys_in(doc: &Yaml, schema: &Keys, path: &str, extensions: bool, out: &mut Vec<String>) {
    if let Keys::Any = schema {
        return;
    }
    if let Keys::List(item) = schema {
        match doc {
            Yaml::Array(items) => {
                for (i, y) in items.iter().enumerate() {
                    unsupported_keys_in(y, item, &format!("{path}[{i}]"), extensions, out);
                }
            }
            _ => out.push(format!("{path}: expected a list")),
        }
        return;
    }
    let Yaml::Hash(map) = doc else {
        out.push(format!("{}: expected a mapping", if path.is_empty() { "(top level)" } else { path }));
        return;
    };
    for (k, v) in map {
        let key = scalar(k).unwrap_or_else(|| format!("{k:?}"));
        let full = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let sub = match schema {
            Keys::Each(each) => Some(*each),
            Keys::Map(allowed) => allowed.iter().find(|(name, _)| *name == key).map(|(_, s)| s),
            Keys::Names(allowed) => allowed.contains(&key.as_str()).then_some(&Keys::Any),
            Keys::Any | Keys::List(_) => None,
        };
        match sub {
            Some(sub) => unsupported_keys_in(v, sub, &full, extensions, out),
            None if extensions && key.starts_with("x-") => {}
            None => out.push(full),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a compose file.

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn read_example(name: &str) -> String {
    let path = examples_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The one YAML document of a compose file, which must be a mapping.
fn parse(text: &str) -> Result<Yaml, String> {
    let mut docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    if docs.len() != 1 {
        return Err(format!("expected one YAML document, found {}", docs.len()));
    }
    let doc = docs.remove(0);
    if doc.as_hash().is_none() {
        return Err("the top level is not a mapping".into());
    }
    Ok(doc)
}

/// A scalar as compose reads it (a string; numbers and booleans in their YAML spelling).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compose's variable substitution as a deploy with none of the variables set sees it:
/// `${V:-default}` and `${V-default}` give the default, `${V}` and `$V` the empty string,
/// `$$` a literal `$`; `${V:?message}` is an error (the test could not check the value).
fn interpolate(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let expr = &r[..end];
            let name_len = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
            let op = &expr[name_len..];
            if let Some(default) = op.strip_prefix(":-").or_else(|| op.strip_prefix('-')) {
                out.push_str(&interpolate(default)?);
            } else if op.starts_with(":?") || op.starts_with('?') {
                return Err(format!("{s:?} requires ${{{}}} to be set: give it a default instead", &expr[..name_len]));
            } else if !(op.is_empty() || op.starts_with(":+") || op.starts_with('+')) {
                return Err(format!("unsupported substitution ${{{expr}}} in {s:?}"));
            }
            rest = &r[end + 1..];
        } else {
            let name_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if name_len == 0 {
                return Err(format!("a lone $ in {s:?}: write $$ for a literal $"));
            }
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The `environment:` of a service, in either form (`KEY: value` or `- KEY=value`), values
/// interpolated. A variable without a value (`- KEY`, `KEY:`) is passed through from the
/// deploying shell by compose; here it has `None`.
fn environment(service: &Yaml) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    match &service["environment"] {
        Yaml::BadValue | Yaml::Null => {}
        Yaml::Hash(map) => {
            for (k, v) in map {
                let key = scalar(k).ok_or_else(|| format!("environment key {k:?} is not a scalar"))?;
                let value = match v {
                    Yaml::Null => None,
                    v => Some(interpolate(&scalar(v).ok_or_else(|| format!("environment {key}: not a scalar"))?)?),
                };
                out.push((key, value));
            }
        }
        Yaml::Array(items) => {
            for item in items {
                let item = item.as_str().ok_or_else(|| format!("environment item {item:?} is not a string"))?;
                match item.split_once('=') {
                    Some((k, v)) => out.push((k.to_string(), Some(interpolate(v)?))),
                    None => out.push((item.to_string(), None)),
                }
            }
        }
        other => return Err(format!("environment is neither a mapping nor a list: {other:?}")),
    }
    Ok(out)
}

/// One mount of a service: `source:target[:mode]` or the long form.
struct Mount {
    source: String,
    target: String,
    /// `:ro` (among the short form's options) or `read_only: true`.
    read_only: bool,
}

fn mounts(service: &Yaml) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    let Some(items) = service["volumes"].as_vec() else { return Ok(out) };
    for item in items {
        match item {
            Yaml::String(s) => {
                let s = interpolate(s)?;
                let mut parts = s.splitn(3, ':');
                let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
                    // An anonymous volume (`/data`): no source.
                    continue;
                };
                let read_only = parts.next().is_some_and(|mode| mode.split(',').any(|o| o == "ro"));
                out.push(Mount { source: source.into(), target: target.into(), read_only });
            }
            Yaml::Hash(_) => {
                let field = |k: &str| item[k].as_str().map(interpolate).transpose();
                if let (Some(source), Some(target)) = (field("source")?, field("target")?) {
                    let read_only = item["read_only"].as_bool() == Some(true);
                    out.push(Mount { source, target, read_only });
                }
            }
            other => return Err(format!("volumes: unexpected item {other:?}")),
        }
    }
    Ok(out)
}

/// `command:` as a list of words: a list as is, a string split as a shell would (quotes and
/// backslashes, no expansion), as compose does.
fn command(service: &Yaml) -> Result<Vec<String>, String> {
    match &service["command"] {
        Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
        Yaml::Array(items) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| format!("command item {i:?}")).and_then(|s| interpolate(&s)))
            .collect(),
        y => shell_words(&interpolate(&scalar(y).ok_or("command is neither a string nor a list")?)?),
    }
}

fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => word.get_or_insert_default().push(c),
                    None => return Err(format!("unclosed ' in command {s:?}")),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => word.get_or_insert_default().extend(chars.next()),
                    Some(c) => word.get_or_insert_default().push(c),
                    None => return Err(format!("unclosed \" in command {s:?}")),
                }
            },
            '\\' => word.get_or_insert_default().extend(chars.next()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The repository name of an image reference: `registry:5000/org/luaspout:1.2@sha256:…` →
/// `luaspout`.
fn image_name(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last)
}

/// Whether an image reference names a fixed version: a digest, or a tag other than `latest`.
fn is_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    matches!(last.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

fn services(doc: &Yaml) -> Result<Vec<(String, &Yaml)>, String> {
    let map = doc["services"].as_hash().ok_or("no `services:` mapping")?;
    if map.is_empty() {
        return Err("`services:` is empty".into());
    }
    Ok(map.iter().map(|(k, v)| (scalar(k).unwrap_or_else(|| format!("{k:?}")), v)).collect())
}

// ---------------------------------------------------------------------------------------------
// The luaspout service.

/// What `luaspout check` says about a config and URI list: `Ok(stdout)` or `Err(stderr)`.
fn luaspout_check(config: &Path, uris: &str, env: &[(String, String)]) -> Result<String, String> {
    let out = Command::new(LUASPOUT)
        .arg("check")
        .arg(config)
        .arg(uris)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {LUASPOUT}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() { Ok(stdout) } else { Err(format!("{}: {}", out.status, stderr.trim())) }
}

/// The `host:port` of a route URI (`adapter+transport://host:port?query`).
fn uri_address(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.split_once("://")?.1;
    let addr = rest.split(['/', '?']).next()?;
    addr.rsplit_once(':')
}

/// Everything that makes the luaspout service `name` of a file at `dir` wrong; returns the
/// problems and the route URIs it found.
fn check_luaspout_service(name: &str, service: &Yaml, dir: &Path, problems: &mut Vec<String>) -> Vec<String> {
    let mut problem = |p: String| problems.push(format!("service {name}: {p}"));

    // The socket, where the image looks for it.
    let mounts = match mounts(service) {
        Ok(m) => m,
        Err(e) => {
            problem(e);
            Vec::new()
        }
    };
    if !mounts.iter().any(|m| {
        m.source == "/var/run/docker.sock" && (m.target == "/var/run/docker.sock" || m.target == "/tmp/docker.sock")
    }) {
        problem("does not mount the Docker socket (/var/run/docker.sock:/var/run/docker.sock)".into());
    }
    // The json-file logs, read-only at the same path (luaspout finds them from DockerRootDir).
    if !mounts.iter().any(|m| m.source == CONTAINERS_DIR && m.target == CONTAINERS_DIR && m.read_only) {
        problem(format!("does not mount {CONTAINERS_DIR}:{CONTAINERS_DIR}:ro (the json-file logs)"));
    }

    // Its environment: only variables luaspout reads.
    let env = match environment(service) {
        Ok(env) => env,
        Err(e) => {
            problem(e);
            Vec::new()
        }
    };
    for (k, _) in &env {
        if !DOCUMENTED_ENV.contains(&k.as_str()) {
            problem(format!("sets {k}, which luaspout does not read (documented: {})", DOCUMENTED_ENV.join(", ")));
        }
    }
    let env: Vec<(String, String)> = env.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    let env_get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());

    // The command line: `[--config PATH] [URIS]`, URIS falling back to ROUTE_URIS.
    let words = match command(service) {
        Ok(w) => w,
        Err(e) => {
            problem(e);
            Vec::new()
        }
    };
    let mut config_in_container = env_get("LUASPOUT_CONFIG");
    let mut positional = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        if w == "--config" {
            config_in_container = words.next();
        } else if let Some(path) = w.strip_prefix("--config=") {
            config_in_container = Some(path.to_string());
        } else if w.starts_with('-') {
            problem(format!("unknown option {w:?} in command"));
        } else {
            positional.push(w);
        }
    }
    if positional.len() > 1 {
        problem(format!("command has {} arguments; luaspout takes one comma-separated URI list", positional.len()));
    }
    let uris = positional.into_iter().next().or_else(|| env_get("ROUTE_URIS")).unwrap_or_default();
    let uri_list: Vec<String> = uris.split(',').filter(|u| !u.is_empty()).map(String::from).collect();
    if uri_list.is_empty() {
        problem("gives no route URI (command or ROUTE_URIS): it would send nothing".into());
        return uri_list;
    }

    // The URIs as the binary takes them, with the service's environment (SYSLOG_*, RAW_FORMAT…
    // are checked along), through the embedded default config (lua/default.lua).
    let check_env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != "LUASPOUT_CONFIG").cloned().collect();
    let embedded = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua/default.lua");
    match luaspout_check(&embedded, &uris, &check_env) {
        Ok(out) if out.contains(&format!("ok, {} route(s)", uri_list.len())) => {}
        Ok(out) => problem(format!("`luaspout check` of {uris:?} did not give {} route(s): {out}", uri_list.len())),
        Err(e) => problem(format!("`luaspout check` refuses {uris:?}: {e}")),
    }

    // And through the config the container would load, when one is mounted.
    let config_in_container = config_in_container.unwrap_or_else(|| DEFAULT_CONFIG_IN_IMAGE.into());
    let mounted =
        mounts.iter().find(|m| m.target == config_in_container).map(|m| dir.join(m.source.trim_start_matches("./")));
    match mounted {
        Some(config) => match luaspout_check(&config, &uris, &check_env) {
            Ok(_) => {}
            Err(e) => problem(format!("`luaspout check {} {uris}` fails: {e}", config.display())),
        },
        None if config_in_container != DEFAULT_CONFIG_IN_IMAGE => {
            problem(format!("the config {config_in_container} is not a file mounted into the container"))
        }
        None => {}
    }
    uri_list
}

/// Every relative bind mount of every service must exist next to the file (a typo in
/// `./logstash/logstash.conf` would make Docker create an empty directory there).
fn check_bind_sources(services: &[(String, &Yaml)], dir: &Path, problems: &mut Vec<String>) {
    for (name, service) in services {
        for m in mounts(service).unwrap_or_default() {
            if (m.source.starts_with("./") || m.source.starts_with("../")) && !dir.join(&m.source).exists() {
                problems.push(format!("service {name}: mounts {} which does not exist", m.source));
            }
        }
    }
}

fn luaspout_services<'a>(services: &[(String, &'a Yaml)]) -> Vec<(String, &'a Yaml)> {
    services
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| image_name(i) == "luaspout"))
        .map(|(n, s)| (n.clone(), *s))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The two files.

/// The problems of `examples/docker-compose.yml` (its text given, so tests can break it).
fn compose_problems(text: &str) -> Vec<String> {
    let dir = examples_dir();
    let doc = match parse(text) {
        Ok(doc) => doc,
        Err(e) => return vec![e],
    };
    let services = match services(&doc) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    unsupported_keys_in(&doc, &COMPOSE_FILE, "", true, &mut unknown);
    if !unknown.is_empty() {
        problems.push(format!("keys the Compose Specification does not have: {}", unknown.join(", ")));
    }
    for (name, service) in &services {
        match service["image"].as_str() {
            None | Some("") => problems.push(format!("service {name}: has no image")),
            Some(image) if image_name(image) != "luaspout" && !is_pinned(image) => {
                problems.push(format!("service {name}: image {image} is not pinned to a version"))
            }
            Some(_) => {}
        }
    }
    check_bind_sources(&services, &dir, &mut problems);

    let ours = luaspout_services(&services);
    if ours.len() != 1 {
        problems.push(format!("expected one luaspout service (image: luaspout), found {}", ours.len()));
    }
    for (name, service) in &services {
        if ours.iter().any(|(n, _)| n == name) {
            continue;
        }
        // luaspout compares the value case-insensitively, the key exactly.
        let ignored = environment(service).is_ok_and(|env| {
            env.iter().any(|(k, v)| k == "LOGSPOUT" && v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("ignore")))
        });
        if !ignored {
            problems
                .push(format!("service {name}: no LOGSPOUT=ignore in its environment: luaspout would ship its logs"));
        }
    }
    for (name, service) in &ours {
        for uri in check_luaspout_service(name, service, &dir, &mut problems) {
            // The route must reach the receiver of this file: a service name, on the port the
            // Logstash pipeline listens on.
            let Some((host, port)) = uri_address(&uri) else {
                problems.push(format!("route {uri}: no host:port"));
                continue;
            };
            if !services.iter().any(|(n, _)| n == host) {
                problems.push(format!("route {uri}: {host} is not a service of this file"));
            }
            if host == "logstash" {
                let conf = std::fs::read_to_string(dir.join("logstash/logstash.conf")).unwrap_or_default();
                let conf = conf.split_whitespace().collect::<Vec<_>>().join(" ");
                if !conf.contains(&format!("port => {port} ")) {
                    problems.push(format!("route {uri}: logstash/logstash.conf has no input on port {port}"));
                }
            }
        }
    }
    problems
}

/// The problems of `examples/swarm-stack.yml`.
fn swarm_problems(text: &str) -> Vec<String> {
    let dir = examples_dir();
    let doc = match parse(text) {
        Ok(doc) => doc,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut unsupported = Vec::new();
    unsupported_keys(&doc, &STACK_FILE, "", &mut unsupported);
    if !unsupported.is_empty() {
        problems.push(format!("keys not in the supported set for stack files: {}", unsupported.join(", ")));
    }
    let services = match services(&doc) {
        Ok(s) => s,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    for (name, service) in &services {
        if service["image"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("service {name}: has no image"));
        }
    }
    check_bind_sources(&services, &dir, &mut problems);
    let ours = luaspout_services(&services);
    if ours.len() != 1 {
        problems.push(format!("expected one luaspout service (image: luaspout), found {}", ours.len()));
    }
    for (name, service) in &ours {
        let deploy = &service["deploy"];
        if deploy["mode"].as_str() != Some("global") {
            problems.push(format!("service {name}: not `deploy: mode: global` (one task per node)"));
        }
        for kind in ["limits", "reservations"] {
            for what in ["cpus", "memory"] {
                if scalar(&deploy["resources"][kind][what]).is_none() {
                    problems.push(format!("service {name}: no deploy.resources.{kind}.{what}"));
                }
            }
        }
        if !mounts(service)
            .unwrap_or_default()
            .iter()
            .any(|m| m.source == "/etc/hostname" && m.target == "/etc/host_hostname")
        {
            problems.push(format!("service {name}: does not mount /etc/hostname:/etc/host_hostname"));
        }
        check_luaspout_service(name, service, &dir, &mut problems);
    }
    problems
}

/// Where the ConfigMap must be mounted: its `routes.lua` is then the image's default config.
const CONFIG_DIR_IN_IMAGE: &str = "/etc/luaspout";

/// What the header's `kubectl create secret generic NAME --from-literal=KEY=VALUE…` commands
/// create: `(secret, key, value)`. Its lines continue after a `\`.
fn secrets_in_header(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut commands = vec![String::new()];
    for line in text.lines().map_while(|l| l.strip_prefix('#')) {
        let current = commands.last_mut().unwrap();
        match line.trim().strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line.trim());
                commands.push(String::new());
            }
        }
    }
    let mut out = Vec::new();
    for command in commands.iter().filter(|c| c.contains("create secret generic ")) {
        let words = shell_words(command)?;
        let at = words.iter().position(|w| w == "generic").unwrap();
        let name = words.get(at + 1).ok_or("`create secret generic` without a name")?;
        for literal in words.iter().filter_map(|w| w.strip_prefix("--from-literal=")) {
            let (key, value) = literal.split_once('=').ok_or_else(|| format!("--from-literal={literal}: no ="))?;
            out.push((name.clone(), key.to_string(), value.to_string()));
        }
    }
    Ok(out)
}

/// The pod's environment as the kubelet gives it: `value`s as they are, a Secret's key from
/// what the header creates, `spec.nodeName` as `node_name`.
fn pod_environment(
    container: &Yaml,
    secrets: &[(String, String, String)],
    node_name: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for var in container["env"].as_vec().map(Vec::as_slice).unwrap_or_default() {
        let name = var["name"].as_str().ok_or_else(|| format!("env item {var:?} has no name"))?;
        let (from, secret) = (&var["valueFrom"], &var["valueFrom"]["secretKeyRef"]);
        let value = if let Some(v) = scalar(&var["value"]) {
            v
        } else if secret.as_hash().is_some() {
            let (s, k) = (secret["name"].as_str().unwrap_or(""), secret["key"].as_str().unwrap_or(""));
            let found = secrets.iter().find(|(sn, sk, _)| sn == s && sk == k);
            found.map(|(_, _, v)| v.clone()).ok_or_else(|| {
                format!("env {name}: reads key {k} of Secret {s}, which the file's header does not create")
            })?
        } else if from["fieldRef"]["fieldPath"].as_str() == Some("spec.nodeName") {
            node_name.to_string()
        } else {
            return Err(format!(
                "env {name}: a value this check cannot give (only value, secretKeyRef, spec.nodeName)"
            ));
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// The problems of `examples/kubernetes.yml`.
fn kubernetes_problems(text: &str) -> Vec<String> {
    let docs = match YamlLoader::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => return vec![format!("not valid YAML: {e}")],
    };
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap_or("?")).collect();
    let of_kind = |kind: &str| docs.iter().find(|d| d["kind"].as_str() == Some(kind));
    let (Some(map), Some(set), 2) = (of_kind("ConfigMap"), of_kind("DaemonSet"), docs.len()) else {
        return vec![format!("expected a ConfigMap and a DaemonSet, found {kinds:?}")];
    };
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    unsupported_keys(map, &CONFIG_MAP, "ConfigMap", &mut unknown);
    unsupported_keys(set, &DAEMON_SET, "DaemonSet", &mut unknown);
    if !unknown.is_empty() {
        problems.push(format!("keys the Kubernetes API does not have here: {}", unknown.join(", ")));
    }
    for (doc, version) in [(map, "v1"), (set, "apps/v1")] {
        if doc["apiVersion"].as_str() != Some(version) {
            problems.push(format!("{}: apiVersion is not {version}", doc["kind"].as_str().unwrap_or("?")));
        }
    }
    let map_name = map["metadata"]["name"].as_str().unwrap_or_default();
    let Some(routes_lua) = map["data"]["routes.lua"].as_str() else {
        problems.push("the ConfigMap has no data.routes.lua".into());
        return problems;
    };

    // The API server refuses a DaemonSet whose selector does not match its pod's labels.
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    for (k, v) in set["spec"]["selector"]["matchLabels"].as_hash().into_iter().flatten() {
        if labels[k.as_str().unwrap_or_default()] != *v {
            problems.push(format!("the selector's label {k:?} is not the pod's"));
        }
    }
    let pod = &set["spec"]["template"]["spec"];
    let tolerations = pod["tolerations"].as_vec().map(Vec::as_slice).unwrap_or_default();
    if !tolerations.iter().any(|t| t["operator"].as_str() == Some("Exists") && t["key"].is_badvalue()) {
        problems.push("the pod does not tolerate every taint: tainted nodes' containers would not be read".into());
    }
    let containers = pod["containers"].as_vec().map(Vec::as_slice).unwrap_or_default();
    let [container] = containers else {
        problems.push(format!("expected one container in the pod, found {}", containers.len()));
        return problems;
    };
    let mut problem = |p: String| problems.push(format!("container luaspout: {p}"));
    if container["image"].as_str().is_none_or(|i| image_name(i) != "luaspout") {
        problem("its image is not luaspout".into());
    }

    // Its mounts, each resolved to the volume it names.
    let volumes = pod["volumes"].as_vec().map(Vec::as_slice).unwrap_or_default();
    let mut mounted = Vec::new();
    for m in container["volumeMounts"].as_vec().map(Vec::as_slice).unwrap_or_default() {
        let name = m["name"].as_str().unwrap_or_default();
        match volumes.iter().find(|v| v["name"].as_str() == Some(name)) {
            Some(v) => mounted.push((m, v)),
            None => problem(format!("mounts volume {name:?}, which the pod does not declare")),
        }
    }
    let host_path = |path: &str, target: &str| {
        mounted
            .iter()
            .find(|(m, v)| v["hostPath"]["path"].as_str() == Some(path) && m["mountPath"].as_str() == Some(target))
    };
    if host_path("/var/run/docker.sock", "/var/run/docker.sock").is_none() {
        problem("does not mount the node's Docker socket at /var/run/docker.sock".into());
    }
    if host_path(CONTAINERS_DIR, CONTAINERS_DIR).is_none_or(|(m, _)| m["readOnly"].as_bool() != Some(true)) {
        problem(format!("does not mount the node's {CONTAINERS_DIR} at the same path, readOnly (the json-file logs)"));
    }
    if host_path("/var/lib/luaspout", "/var/lib/luaspout").is_none() {
        problem("does not keep /var/lib/luaspout (the cursors) in a directory of the node".into());
    }
    match mounted.iter().find(|(_, v)| v["configMap"]["name"].as_str() == Some(map_name)) {
        None => problem(format!("does not mount the ConfigMap {map_name:?}")),
        Some((m, _)) if m["mountPath"].as_str() != Some(CONFIG_DIR_IN_IMAGE) => problem(format!(
            "mounts the ConfigMap elsewhere than {CONFIG_DIR_IN_IMAGE}, where the image reads routes.lua"
        )),
        Some((m, _)) if !m["subPath"].is_badvalue() => {
            problem("mounts the ConfigMap with subPath, which the kubelet never updates: edits would not reload".into())
        }
        Some(_) => {}
    }

    let resources = &container["resources"];
    for (kind, what) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
        if scalar(&resources[kind][what]).is_none() {
            problem(format!("no resources.{kind}.{what}"));
        }
    }
    let probe: Vec<&str> =
        container["livenessProbe"]["exec"]["command"].as_vec().into_iter().flatten().filter_map(Yaml::as_str).collect();
    if probe != ["/luaspout", "health"] {
        problem(format!("its livenessProbe does not run /luaspout health: {probe:?}"));
    }
    let security = &container["securityContext"];
    if security["readOnlyRootFilesystem"].as_bool() != Some(true)
        || security["allowPrivilegeEscalation"].as_bool() != Some(false)
    {
        problem("its securityContext is not readOnlyRootFilesystem: true, allowPrivilegeEscalation: false".into());
    }

    // Its environment: what luaspout reads, or what its routes.lua asks spout.env for.
    let env = match secrets_in_header(text).and_then(|secrets| pod_environment(container, &secrets, "node-1")) {
        Ok(env) => env,
        Err(e) => {
            problem(e);
            Vec::new()
        }
    };
    for (k, _) in &env {
        if !DOCUMENTED_ENV.contains(&k.as_str()) && !routes_lua.contains(&format!("spout.env(\"{k}\"")) {
            problem(format!("sets {k}, which neither luaspout nor the ConfigMap's routes.lua reads"));
        }
    }
    let env_get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if !matches!(env_get("HTTP_BIND_ADDRESS"), Some("127.0.0.1" | "::1")) && env_get("LUASPOUT_API_TOKEN").is_none() {
        problem("its HTTP API (/logs, /containers) is open to every pod of the cluster: set HTTP_BIND_ADDRESS=127.0.0.1 or LUASPOUT_API_TOKEN".into());
    }

    // The ConfigMap's routes.lua, as the pod loads it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.lua");
    std::fs::write(&config, routes_lua).unwrap();
    if let Err(e) = luaspout_check(&config, "", &env) {
        problem(format!("`luaspout check` refuses the ConfigMap's routes.lua: {e}"));
    }
    problems
}

fn assert_no_problems(file: &str, problems: &[String]) {
    assert!(problems.is_empty(), "examples/{file}:\n  {}", problems.join("\n  "));
}

#[test]
fn compose_file_is_valid() {
    assert_no_problems("docker-compose.yml", &compose_problems(&read_example("docker-compose.yml")));
}

#[test]
fn swarm_stack_file_is_valid() {
    assert_no_problems("swarm-stack.yml", &swarm_problems(&read_example("swarm-stack.yml")));
}

#[test]
fn kubernetes_manifest_is_valid() {
    assert_no_problems("kubernetes.yml", &kubernetes_problems(&read_example("kubernetes.yml")));
}

// ---------------------------------------------------------------------------------------------
// The real tools, when installed.

/// Runs `program args…` and says whether it succeeded; `None` when it cannot be started.
fn runs(program: &str, args: &[&str]) -> Option<bool> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .map(|s| s.success())
}

#[test]
fn compose_config_accepts_the_compose_file() {
    let tool: &[&str] = if runs("docker", &["compose", "version"]) == Some(true) {
        &["docker", "compose"]
    } else if runs("docker-compose", &["version"]) == Some(true) {
        &["docker-compose"]
    } else {
        println!("note: neither `docker compose` nor `docker-compose` is installed: `config -q` skipped");
        return;
    };
    let out = Command::new(tool[0])
        .args(&tool[1..])
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(examples_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{} -f docker-compose.yml config -q` in examples/: {}\n{}",
        tool.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_stack_config_accepts_the_swarm_file() {
    if runs("docker", &["stack", "config", "--help"]) != Some(true) {
        println!("note: no `docker stack config` (docker CLI 20.10+): skipped");
        return;
    }
    let out = Command::new("docker")
        .args(["stack", "config", "-c", "swarm-stack.yml"])
        .current_dir(examples_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`docker stack config -c swarm-stack.yml` in examples/: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The checks catch broken files: each test breaks the real file in one way.

/// `text` with `from` replaced by `to` (the first `n` times); panics if `from` is not there,
/// so that a change to the examples cannot make these tests vacuous.
fn broken(text: &str, from: &str, to: &str, n: usize) -> String {
    assert!(text.matches(from).count() >= n, "the example no longer contains {from:?}: update this test");
    text.replacen(from, to, n)
}

fn assert_caught(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem mentioning {needle:?}, got:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn broken_compose_files_are_caught() {
    let good = read_example("docker-compose.yml");

    let p = compose_problems(&broken(&good, "      LOGSPOUT: ignore\n", "", 1));
    assert_caught(&p, "service elasticsearch: no LOGSPOUT=ignore");
    let p = compose_problems(&broken(&good, "LOGSPOUT: ignore", "LOGSPOUT: read", 3));
    assert_caught(&p, "service kibana: no LOGSPOUT=ignore");

    let p = compose_problems(&broken(&good, "syslog+tcp://logstash:5000", "bogus+tcp://logstash:5000", 1));
    assert_caught(&p, "refuses \"bogus+tcp://logstash:5000\"");
    let p = compose_problems(&broken(&good, "syslog+tcp://logstash:5000", "syslog+tcp://logstash:5000?x=%zz", 1));
    assert_caught(&p, "`luaspout check` refuses");
    let p = compose_problems(&broken(&good, "syslog+tcp://logstash:5000", "syslog+tcp://logstsh:5000", 1));
    assert_caught(&p, "logstsh is not a service");
    let p = compose_problems(&broken(&good, "syslog+tcp://logstash:5000", "syslog+tcp://logstash:5044", 1));
    assert_caught(&p, "no input on port 5044");
    let p = compose_problems(&broken(&good, "    command: syslog+tcp://logstash:5000\n", "", 1));
    assert_caught(&p, "gives no route URI");

    let p = compose_problems(&broken(&good, "SYSLOG_TCP_FRAMING: traditional", "SYSLOG_TCP_FRAMNG: traditional", 1));
    assert_caught(&p, "sets SYSLOG_TCP_FRAMNG, which luaspout does not read");
    let p = compose_problems(&broken(&good, "SYSLOG_FORMAT: rfc5424", "SYSLOG_FORMAT: rfc9999", 1));
    assert_caught(&p, "`luaspout check` refuses");

    let p = compose_problems(&broken(&good, "- /var/run/docker.sock:/var/run/docker.sock:ro", "- /tmp:/tmp", 1));
    assert_caught(&p, "does not mount the Docker socket");
    let p = compose_problems(&broken(
        &good,
        "containers:/var/lib/docker/containers:ro",
        "containers:/var/lib/docker/containers",
        1,
    ));
    assert_caught(&p, "does not mount /var/lib/docker/containers");
    let p = compose_problems(&broken(&good, "./logstash/logstash.conf:", "./logstash/pipeline.conf:", 1));
    assert_caught(&p, "mounts ./logstash/pipeline.conf which does not exist");
    let p = compose_problems(&broken(&good, "kibana:8.17.0", "kibana", 1));
    assert_caught(&p, "image docker.elastic.co/kibana/kibana is not pinned");
    let p = compose_problems(&broken(&good, "    restart: unless-stopped\n", "    restrat: unless-stopped\n", 1));
    assert_caught(&p, "does not have: services.luaspout.restrat");
    let p = compose_problems(&broken(&good, "\nvolumes:\n", "\nvolume:\n", 1));
    assert_caught(&p, "does not have: volume");
    let p = compose_problems(&broken(&good, "    image: docker.elastic.co/logstash/logstash:8.17.0\n", "", 1));
    assert_caught(&p, "service logstash: has no image");
    let p = compose_problems(&broken(&good, "services:\n", "services:\n  x: [\n", 1));
    assert_caught(&p, "not valid YAML");
}

#[test]
fn broken_swarm_files_are_caught() {
    let good = read_example("swarm-stack.yml");

    let p = swarm_problems(&broken(&good, "    deploy:\n", "    privileged: true\n    deploy:\n", 1));
    assert_caught(&p, "services.luaspout.privileged");
    let p = swarm_problems(&broken(&good, "      mode: global\n", "      mode: global\n      replicas: 2\n", 1));
    assert_caught(&p, "services.luaspout.deploy.replicas");
    let p = swarm_problems(&broken(&good, "networks:\n  logging:", "secrets: {}\nnetworks:\n  logging:", 1));
    assert_caught(&p, "supported set for stack files: secrets");

    let p = swarm_problems(&broken(&good, "mode: global", "mode: replicated", 1));
    assert_caught(&p, "not `deploy: mode: global`");
    let p = swarm_problems(&broken(&good, "      - /etc/hostname:/etc/host_hostname:ro\n", "", 1));
    assert_caught(&p, "does not mount /etc/hostname:/etc/host_hostname");
    let p = swarm_problems(&broken(&good, "      - /var/run/docker.sock:/var/run/docker.sock:ro\n", "", 1));
    assert_caught(&p, "does not mount the Docker socket");
    let p = swarm_problems(&broken(&good, "      - /var/lib/docker/containers:/var/lib/docker/containers:ro\n", "", 1));
    assert_caught(&p, "does not mount /var/lib/docker/containers");
    let p = swarm_problems(&broken(&good, "          memory: 256M\n", "", 1));
    assert_caught(&p, "no deploy.resources.limits.memory");

    let p = swarm_problems(&broken(&good, ":-syslog+tcp://", ":-syslog+tpc://", 1));
    assert_caught(&p, "`luaspout check` refuses");
    let p = swarm_problems(&broken(&good, "${LUASPOUT_ROUTE_URIS:-", "${LUASPOUT_ROUTE_URIS:?", 1));
    assert_caught(&p, "requires ${LUASPOUT_ROUTE_URIS} to be set");
    let p = swarm_problems(&broken(&good, "ROUTE_URIS:", "ROUTES:", 1));
    assert_caught(&p, "sets ROUTES, which luaspout does not read");
}

#[test]
fn broken_kubernetes_manifests_are_caught() {
    let good = read_example("kubernetes.yml");

    let p = kubernetes_problems(&broken(&good, "          volumeMounts:", "          volumeMount:", 1));
    assert_caught(&p, "does not have here: DaemonSet.spec.template.spec.containers[0].volumeMount");
    let p = kubernetes_problems(&broken(
        &good,
        "            readOnlyRootFilesystem: true",
        "            readOnlyRootFS: true",
        1,
    ));
    assert_caught(&p, "containers[0].securityContext.readOnlyRootFS");
    let p = kubernetes_problems(&broken(&good, "apiVersion: apps/v1", "apiVersion: extensions/v1beta1", 1));
    assert_caught(&p, "DaemonSet: apiVersion is not apps/v1");
    let p = kubernetes_problems(&broken(
        &good,
        "    matchLabels:\n      app.kubernetes.io/name: luaspout\n",
        "    matchLabels:\n      app: luaspout\n",
        1,
    ));
    assert_caught(&p, "the selector's label");
    let p = kubernetes_problems(&broken(
        &good,
        "        - operator: Exists\n",
        "        - key: dedicated\n          operator: Exists\n",
        1,
    ));
    assert_caught(&p, "does not tolerate every taint");

    let p = kubernetes_problems(&broken(
        &good,
        "              mountPath: /var/lib/docker/containers\n              readOnly: true\n",
        "              mountPath: /var/lib/docker/containers\n",
        1,
    ));
    assert_caught(&p, "does not mount the node's /var/lib/docker/containers");
    let p = kubernetes_problems(&broken(
        &good,
        "            path: /var/run/docker.sock",
        "            path: /run/docker.sock",
        1,
    ));
    assert_caught(&p, "does not mount the node's Docker socket");
    let p = kubernetes_problems(&broken(
        &good,
        "              mountPath: /etc/luaspout\n",
        "              mountPath: /etc/luaspout/routes.lua\n              subPath: routes.lua\n",
        1,
    ));
    assert_caught(&p, "elsewhere than /etc/luaspout");
    let p = kubernetes_problems(&broken(
        &good,
        "              mountPath: /etc/luaspout\n",
        "              mountPath: /etc/luaspout\n              subPath: routes.lua\n",
        1,
    ));
    assert_caught(&p, "with subPath, which the kubelet never updates");
    let p = kubernetes_problems(&broken(
        &good,
        "            name: luaspout\n        - name: state",
        "            name: logging\n        - name: state",
        1,
    ));
    assert_caught(&p, "does not mount the ConfigMap \"luaspout\"");
    let p = kubernetes_problems(&broken(
        &good,
        "        - name: containers\n          hostPath:",
        "        - name: logs\n          hostPath:",
        1,
    ));
    assert_caught(&p, "mounts volume \"containers\", which the pod does not declare");

    let p = kubernetes_problems(&broken(&good, "              memory: 128Mi\n", "", 1));
    assert_caught(&p, "no resources.limits.memory");
    let p = kubernetes_problems(&broken(&good, "[\"/luaspout\", \"health\"]", "[\"/luaspout\", \"check\"]", 1));
    assert_caught(&p, "livenessProbe does not run /luaspout health");
    let p = kubernetes_problems(&broken(
        &good,
        "            allowPrivilegeEscalation: false",
        "            allowPrivilegeEscalation: true",
        1,
    ));
    assert_caught(&p, "its securityContext is not");

    let p = kubernetes_problems(&broken(&good, "- name: SYSLOG_HOSTNAME", "- name: SYSLOG_HOST", 1));
    assert_caught(&p, "sets SYSLOG_HOST, which neither luaspout nor the ConfigMap's routes.lua reads");
    let p = kubernetes_problems(&broken(&good, "                  key: DEST", "                  key: DESTINATION", 1));
    assert_caught(&p, "reads key DESTINATION of Secret luaspout, which the file's header does not create");
    let p = kubernetes_problems(&broken(
        &good,
        "              value: \"127.0.0.1\"",
        "              value: \"0.0.0.0\"",
        1,
    ));
    assert_caught(&p, "open to every pod of the cluster");
    let p = kubernetes_problems(&broken(
        &good,
        "--from-literal=DEST='syslog+tls://",
        "--from-literal=DEST='syslog+tsl://",
        1,
    ));
    assert_caught(&p, "`luaspout check` refuses the ConfigMap's routes.lua");
    let p =
        kubernetes_problems(&broken(&good, "      to   = spout.env(\"DEST\"),", "      to   = spout.env(\"DEST\",", 1));
    assert_caught(&p, "`luaspout check` refuses the ConfigMap's routes.lua");
    let p = kubernetes_problems(&broken(&good, "kind: ConfigMap", "kind: Secret", 1));
    assert_caught(&p, "expected a ConfigMap and a DaemonSet, found [\"Secret\", \"DaemonSet\"]");
}

// ---------------------------------------------------------------------------------------------
// The helpers themselves, on the forms the examples do not happen to use.

#[test]
fn environment_reads_list_and_map_forms() {
    let list = parse("services:\n  a:\n    environment:\n      - LOGSPOUT=ignore\n      - X=a=b\n      - Y\n").unwrap();
    let env = environment(&list["services"]["a"]).unwrap();
    assert_eq!(
        env,
        vec![("LOGSPOUT".into(), Some("ignore".into())), ("X".into(), Some("a=b".into())), ("Y".into(), None)]
    );
    let map = parse("services:\n  a:\n    environment:\n      N: 1\n      B: true\n      S: \"${V:-d}\"\n      E:\n")
        .unwrap();
    let env = environment(&map["services"]["a"]).unwrap();
    assert_eq!(
        env,
        vec![
            ("N".into(), Some("1".into())),
            ("B".into(), Some("true".into())),
            ("S".into(), Some("d".into())),
            ("E".into(), None)
        ]
    );
    // A list-form LOGSPOUT=ignore counts; the value is compared case-insensitively.
    let text = "services:\n  l:\n    image: luaspout\n  r:\n    image: r:1\n    environment: [LOGSPOUT=IGNORE]\n";
    let p = compose_problems(text);
    assert!(!p.iter().any(|p| p.contains("service r: no LOGSPOUT")), "{p:?}");
    // Compose's extension keys are allowed in the compose file, not in the stack file.
    let text = "x-common: {}\nservices:\n  r:\n    image: r:1\n    x-note: 1\n";
    let p = compose_problems(text);
    assert!(!p.iter().any(|p| p.contains("x-")), "{p:?}");
    assert_caught(&swarm_problems(text), "supported set for stack files: x-common, services.r.x-note");
}

#[test]
fn interpolation_and_command_words() {
    assert_eq!(interpolate("a${X:-b}${Y-c}$$d$Z.").unwrap(), "abc$d.");
    assert_eq!(interpolate("${X}${X:+y}").unwrap(), "");
    assert!(interpolate("${X:?set it}").is_err());
    assert!(interpolate("a$").is_err());
    assert_eq!(
        shell_words(r#"--config /c.lua 'raw+tcp://a:1?filter.name=x y' "b\"c" d\ e"#).unwrap(),
        vec!["--config", "/c.lua", "raw+tcp://a:1?filter.name=x y", "b\"c", "d e"]
    );
    assert_eq!(image_name("registry:5000/org/luaspout:1.2@sha256:00"), "luaspout");
    assert!(is_pinned("docker.elastic.co/kibana/kibana:8.17.0"));
    assert!(is_pinned("localhost:5000/x@sha256:00"));
    assert!(!is_pinned("localhost:5000/kibana"));
    assert!(!is_pinned("kibana:latest"));
}
