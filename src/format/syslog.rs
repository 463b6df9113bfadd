//! logspout's syslog adapter output, byte for byte: RFC 5424 or RFC 3164 lines whose fields
//! are `SYSLOG_*` templates, with optional RFC 6587 octet counting on stream transports.
//!
//! The layouts are logspout's format strings, `<PRI>1 TS HOST TAG PID - SD MSG\n` and
//! `<PRI>TS HOST TAG[PID]: MSG\n`, including what they do not do: no escaping, no `-` for an
//! empty field, no length limit on MSG, and an RFC 3339 timestamp even in RFC 3164 unless
//! `SYSLOG_TIMESTAMP` says otherwise. Fields are cut to the character counts of Go's `%.Ns`
//! verbs (RFC 5424: HOST 255, TAG 48, PID 128; RFC 3164: TAG 32), where each byte of invalid
//! UTF-8 counts as one character. A line is rendered straight into the caller's buffer;
//! truncation and the length prefix are done in place.

use std::collections::BTreeMap;

use crate::format::template::{Dialect, Template};
use crate::message::Message;

/// Longest HOST in RFC 5424, in characters; logspout's RFC 3164 layout does not cut it.
const HOST_MAX: usize = 255;
/// Longest TAG (APP-NAME) in RFC 5424, in characters.
const TAG_MAX_5424: usize = 48;
/// Longest TAG in RFC 3164, in characters.
const TAG_MAX_3164: usize = 32;
/// Longest PID (PROCID) in RFC 5424, in characters; RFC 3164 does not cut it.
const PID_MAX: usize = 128;

/// The line layout, from `SYSLOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    /// `rfc5424`, the default.
    Rfc5424,
    /// `rfc3164`.
    Rfc3164,
}

/// Everything a syslog route needs to render lines, compiled once when the route is built.
#[derive(Debug, Clone)]
pub struct SyslogSettings {
    format: SyslogFormat,
    priority: Template,
    timestamp: Template,
    hostname: Template,
    tag: Template,
    pid: Template,
    /// Already wrapped: `-`, or `[` text `]`.
    structured_data: Template,
    data: Template,
    /// `SYSLOG_TCP_FRAMING=octet-counted` on a TCP or TLS route.
    octet_counted: bool,
}

impl SyslogSettings {
    /// The field templates, for their error counters.
    fn templates(&self) -> [&Template; 7] {
        [&self.priority, &self.timestamp, &self.hostname, &self.tag, &self.pid, &self.structured_data, &self.data]
    }

    /// Renders of any field template that hit an execution error, since start.
    pub fn render_errors(&self) -> u64 {
        self.templates().iter().map(|t| t.errors()).sum()
    }

    /// The latest execution error of a field template.
    pub fn last_render_error(&self) -> Option<String> {
        self.templates().iter().find_map(|t| t.last_error())
    }

    /// Builds the settings as logspout's syslog adapter does at route creation.
    ///
    /// `env` reads logspout's `SYSLOG_*` variables (an empty value counts as unset);
    /// `options` are the route URI's options (`append_tag` extends the default tag and is
    /// ignored when `SYSLOG_TAG` is set; `structured_data` overrides
    /// `SYSLOG_STRUCTURED_DATA`); `stream_transport` is true for TCP and TLS, the only
    /// transports where `SYSLOG_TCP_FRAMING` applies (and can be invalid); `host_hostname` is
    /// the content of `/etc/host_hostname` if the caller read it, which replaces the hostname
    /// template on swarm nodes. Errors name the variable or option at fault.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        options: &BTreeMap<String, String>,
        stream_transport: bool,
        host_hostname: Option<&str>,
    ) -> Result<SyslogSettings, String> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        let compile =
            |what: &str, text: &str| Template::compile(text, Dialect::Syslog).map_err(|e| format!("{what}: {e}"));
        let var = |name: &str, default: &str| compile(name, &get(name).unwrap_or_else(|| default.to_string()));

        let format = match get("SYSLOG_FORMAT").as_deref() {
            None | Some("rfc5424") => SyslogFormat::Rfc5424,
            Some("rfc3164") => SyslogFormat::Rfc3164,
            Some(other) => return Err(format!("unknown SYSLOG_FORMAT value: {other}")),
        };
        let octet_counted = stream_transport
            && match get("SYSLOG_TCP_FRAMING").as_deref() {
                None | Some("traditional") => false,
                Some("octet-counted") => true,
                Some(other) => {
                    return Err(format!(
                        "unknown SYSLOG_TCP_FRAMING value: {other} (use traditional or octet-counted)"
                    ));
                }
            };

        let hostname = match host_hostname.map(|h| h.trim_end_matches(['\r', '\n'])).filter(|h| !h.is_empty()) {
            Some(text) => compile("/etc/host_hostname", text)?,
            None => var("SYSLOG_HOSTNAME", "{{.Container.Config.Hostname}}")?,
        };
        let tag = match get("SYSLOG_TAG") {
            Some(text) => compile("SYSLOG_TAG", &text)?,
            None => {
                let append = options.get("append_tag").map_or("", String::as_str);
                compile("append_tag option", &format!("{{{{.ContainerName}}}}{append}"))?
            }
        };
        let structured_data = match options.get("structured_data").filter(|v| !v.is_empty()) {
            Some(text) => compile("structured_data option", &format!("[{text}]"))?,
            None => match get("SYSLOG_STRUCTURED_DATA") {
                Some(text) => compile("SYSLOG_STRUCTURED_DATA", &format!("[{text}]"))?,
                None => compile("SYSLOG_STRUCTURED_DATA", "-")?,
            },
        };

        Ok(SyslogSettings {
            format,
            priority: var("SYSLOG_PRIORITY", "{{.Priority}}")?,
            timestamp: var("SYSLOG_TIMESTAMP", "{{.Timestamp}}")?,
            hostname,
            tag,
            pid: var("SYSLOG_PID", "{{.Container.State.Pid}}")?,
            structured_data,
            data: var("SYSLOG_DATA", "{{.Data}}")?,
            octet_counted,
        })
    }

    /// The line layout in use.
    pub fn format(&self) -> SyslogFormat {
        self.format
    }

    /// Whether each line gets an RFC 6587 `<length> ` prefix.
    pub fn octet_counted(&self) -> bool {
        self.octet_counted
    }

    /// Appends one complete line for `msg`, with its trailing `\n` and, when octet counting
    /// applies, its length prefix. `data`, when given (a Lua `format` result), is the MSG part
    /// instead of `SYSLOG_DATA`.
    pub fn render(&self, msg: &Message, data: Option<&[u8]>, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(b'<');
        self.priority.render(msg, out);
        out.push(b'>');
        match self.format {
            SyslogFormat::Rfc5424 => {
                out.extend_from_slice(b"1 ");
                self.timestamp.render(msg, out);
                out.push(b' ');
                render_cut(&self.hostname, msg, HOST_MAX, out);
                out.push(b' ');
                render_cut(&self.tag, msg, TAG_MAX_5424, out);
                out.push(b' ');
                render_cut(&self.pid, msg, PID_MAX, out);
                out.extend_from_slice(b" - ");
                self.structured_data.render(msg, out);
                out.push(b' ');
            }
            SyslogFormat::Rfc3164 => {
                self.timestamp.render(msg, out);
                out.push(b' ');
                self.hostname.render(msg, out);
                out.push(b' ');
                render_cut(&self.tag, msg, TAG_MAX_3164, out);
                out.push(b'[');
                self.pid.render(msg, out);
                out.extend_from_slice(b"]: ");
            }
        }
        match data {
            Some(data) => out.extend_from_slice(data),
            None => self.data.render(msg, out),
        }
        out.push(b'\n');
        if self.octet_counted {
            prefix_length(out, start);
        }
    }
}

/// Renders `template` and cuts its output to `max` characters, as Go's `%.<max>s`.
fn render_cut(template: &Template, msg: &Message, max: usize, out: &mut Vec<u8>) {
    let start = out.len();
    template.render(msg, out);
    if out.len() - start <= max {
        return;
    }
    // Go counts a valid character as one and each byte of invalid UTF-8 as one.
    let mut chars = 0;
    let mut offset = start;
    for chunk in out[start..].utf8_chunks() {
        let valid = chunk.valid();
        let starts = valid.char_indices().map(|(i, _)| i).chain(valid.len()..valid.len() + chunk.invalid().len());
        for i in starts {
            if chars == max {
                out.truncate(offset + i);
                return;
            }
            chars += 1;
        }
        offset += valid.len() + chunk.invalid().len();
    }
}

/// Inserts RFC 6587's `<length> ` before the frame that starts at `out[start]`, in place.
fn prefix_length(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    let digits = len.checked_ilog10().map_or(1, |d| d as usize + 1);
    out.resize(out.len() + digits + 1, 0);
    out.copy_within(start..start + len, start + digits + 1);
    let mut n = len;
    for slot in out[start..start + digits].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out[start + digits] = b' ';
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::message::{Container, Source};

    /// 2021-12-06T15:27:06.123456789Z.
    const T: i64 = 1_638_804_426_123_456_789;

    /// The fixed input of logspout's syslog test vectors (docs/logspout-compat.md, "Test vectors").
    fn msg(data: &str, source: Source) -> Message {
        let container = Container {
            id: "8dfafdbc3a40e1b5c2d8f7a6b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8".into(),
            name: "web_1".into(),
            hostname: "8dfafdbc3a40".into(),
            pid: 4242,
            ..Default::default()
        };
        Message {
            container: Arc::new(container),
            source,
            time_ns: T,
            data: Bytes::copy_from_slice(data.as_bytes()),
            ack: None,
        }
    }

    fn settings(
        vars: &[(&str, &str)],
        opts: &[(&str, &str)],
        stream: bool,
        host: Option<&str>,
    ) -> Result<SyslogSettings, String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let opts = opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SyslogSettings::from_env(&env, &opts, stream, host)
    }

    fn line(vars: &[(&str, &str)], opts: &[(&str, &str)], stream: bool, m: &Message) -> String {
        let s = settings(vars, opts, stream, None).unwrap();
        let mut out = Vec::new();
        s.render(m, None, &mut out);
        String::from_utf8(out).unwrap()
    }

    const RFC3164: (&str, &str) = ("SYSLOG_FORMAT", "rfc3164");

    #[test]
    fn reference_rfc5424_rows() {
        let hello = line(&[], &[], false, &msg("hello world", Source::Stdout));
        assert_eq!(hello, "<14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1 4242 - - hello world\n");
        assert_eq!(hello.len(), 67);
        assert_eq!(
            line(&[], &[], false, &msg("boom", Source::Stderr)),
            "<11>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1 4242 - - boom\n"
        );
        assert_eq!(
            line(&[], &[("append_tag", ".db")], false, &msg("hello", Source::Stdout)),
            "<14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1.db 4242 - - hello\n"
        );
        assert_eq!(
            line(&[], &[("structured_data", "abc@41058 tag=\"x\"")], false, &msg("hello", Source::Stdout)),
            "<14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1 4242 - [abc@41058 tag=\"x\"] hello\n"
        );
        assert_eq!(
            line(&[], &[], false, &msg("", Source::Stdout)),
            "<14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1 4242 - - \n"
        );
        let tag = "a".repeat(60);
        assert_eq!(
            line(&[("SYSLOG_TAG", &tag)], &[], false, &msg("x", Source::Stdout)),
            format!("<14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 {} 4242 - - x\n", "a".repeat(48))
        );
    }

    #[test]
    fn reference_rfc3164_rows() {
        assert_eq!(
            line(&[RFC3164], &[], false, &msg("hello world", Source::Stdout)),
            "<14>2021-12-06T15:27:06Z 8dfafdbc3a40 web_1[4242]: hello world\n"
        );
        assert_eq!(
            line(&[RFC3164], &[], false, &msg("boom", Source::Stderr)),
            "<11>2021-12-06T15:27:06Z 8dfafdbc3a40 web_1[4242]: boom\n"
        );
        let tag = "a".repeat(40);
        assert_eq!(
            line(&[RFC3164, ("SYSLOG_TAG", &tag), ("SYSLOG_PID", "1")], &[], false, &msg("x", Source::Stdout)),
            format!("<14>2021-12-06T15:27:06Z 8dfafdbc3a40 {}[1]: x\n", "a".repeat(32))
        );
        assert_eq!(
            line(
                &[RFC3164, ("SYSLOG_TIMESTAMP", "{{.Time.Format \"Jan _2 15:04:05\"}}")],
                &[],
                false,
                &msg("hello world", Source::Stdout)
            ),
            "<14>Dec  6 15:27:06 8dfafdbc3a40 web_1[4242]: hello world\n"
        );
    }

    #[test]
    fn octet_counting_applies_to_stream_transports_only() {
        let framing = [("SYSLOG_TCP_FRAMING", "octet-counted")];
        let m = msg("hello world", Source::Stdout);
        assert_eq!(
            line(&framing, &[], true, &m),
            "67 <14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1 4242 - - hello world\n"
        );
        assert_eq!(
            line(&framing, &[], false, &m),
            "<14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1 4242 - - hello world\n"
        );
        assert_eq!(line(&[("SYSLOG_TCP_FRAMING", "traditional")], &[], true, &m), line(&[], &[], true, &m));
        assert!(settings(&framing, &[], true, None).unwrap().octet_counted());

        // The prefix goes before this line only, after whatever the buffer already held.
        let s = settings(&framing, &[], true, None).unwrap();
        let mut out = b"previous".to_vec();
        s.render(&msg("", Source::Stdout), None, &mut out);
        assert_eq!(out, b"previous56 <14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 web_1 4242 - - \n");
        let mut out = Vec::new();
        s.render(&msg(&"x".repeat(1000), Source::Stdout), None, &mut out);
        assert!(out.starts_with(b"1056 <14>1 "));
        assert_eq!(out.len(), 1056 + 5);
    }

    #[test]
    fn configuration_errors() {
        assert_eq!(
            settings(&[("SYSLOG_FORMAT", "invalid-option")], &[], false, None).unwrap_err(),
            "unknown SYSLOG_FORMAT value: invalid-option"
        );
        let e = settings(&[("SYSLOG_TCP_FRAMING", "invalid-option")], &[], true, None).unwrap_err();
        assert!(e.starts_with("unknown SYSLOG_TCP_FRAMING value: invalid-option"), "{e}");
        assert!(settings(&[("SYSLOG_TCP_FRAMING", "invalid-option")], &[], false, None).is_ok(), "ignored on UDP");
        assert!(
            settings(&[("SYSLOG_TAG", "{{.Nope}}")], &[], false, None)
                .unwrap_err()
                .starts_with("SYSLOG_TAG: unknown field .Nope")
        );
        assert!(
            settings(&[], &[("append_tag", "{{")], false, None)
                .unwrap_err()
                .starts_with("append_tag option: unclosed action")
        );
        assert!(
            settings(&[], &[("structured_data", "{{.X}}")], false, None)
                .unwrap_err()
                .starts_with("structured_data option: ")
        );
        assert!(settings(&[], &[], false, Some("{{.X}}")).unwrap_err().starts_with("/etc/host_hostname: "));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let empty: Vec<(&str, &str)> = [
            "SYSLOG_FORMAT",
            "SYSLOG_PRIORITY",
            "SYSLOG_TIMESTAMP",
            "SYSLOG_HOSTNAME",
            "SYSLOG_TAG",
            "SYSLOG_PID",
            "SYSLOG_STRUCTURED_DATA",
            "SYSLOG_DATA",
            "SYSLOG_TCP_FRAMING",
        ]
        .iter()
        .map(|k| (*k, ""))
        .collect();
        let m = msg("hello world", Source::Stdout);
        assert_eq!(line(&empty, &[], true, &m), line(&[], &[], true, &m));
        assert_eq!(line(&[], &[("structured_data", "")], false, &m), line(&[], &[], false, &m));
    }

    #[test]
    fn host_hostname_replaces_the_hostname_template() {
        let m = msg("x", Source::Stdout);
        let render = |host: Option<&str>| {
            let s = settings(&[("SYSLOG_HOSTNAME", "ignored")], &[], false, host).unwrap();
            let mut out = Vec::new();
            s.render(&m, None, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(render(Some("hostname\r\n")), "<14>1 2021-12-06T15:27:06Z hostname web_1 4242 - - x\n");
        assert_eq!(render(Some("\n")), "<14>1 2021-12-06T15:27:06Z ignored web_1 4242 - - x\n");
        assert_eq!(render(None), "<14>1 2021-12-06T15:27:06Z ignored web_1 4242 - - x\n");
    }

    #[test]
    fn custom_templates_and_payloads() {
        let vars = [
            ("SYSLOG_PRIORITY", "{{.Priority}}"),
            ("SYSLOG_HOSTNAME", "{{.Container.Config.Labels.host}}"),
            ("SYSLOG_STRUCTURED_DATA", "x@1 src=\"{{.Source}}\""),
            ("SYSLOG_DATA", "{{toJSON .Data}}"),
        ];
        let m = msg("a\"b", Source::Stderr);
        assert_eq!(
            line(&vars, &[], false, &m),
            "<11>1 2021-12-06T15:27:06Z <no value> web_1 4242 - [x@1 src=\"stderr\"] \"a\\\"b\"\n"
        );
        let s = settings(&vars, &[("structured_data", "o@1")], false, None).unwrap();
        let mut out = Vec::new();
        s.render(&m, Some(b"{\"from\":\"lua\"}"), &mut out);
        assert_eq!(out, b"<11>1 2021-12-06T15:27:06Z <no value> web_1 4242 - [o@1] {\"from\":\"lua\"}\n");
        assert_eq!(s.format(), SyslogFormat::Rfc5424);
    }

    #[test]
    fn empty_fields_are_not_replaced() {
        let m = msg("x", Source::Stdout);
        let vars = [("SYSLOG_HOSTNAME", "{{.Container.Config.Image}}"), ("SYSLOG_PID", "{{.Container.Config.Image}}")];
        assert_eq!(line(&vars, &[], false, &m), "<14>1 2021-12-06T15:27:06Z  web_1  - - x\n");
    }

    #[test]
    fn fields_are_cut_by_characters() {
        let m = msg("x", Source::Stdout);
        let tag = "é".repeat(50);
        let out = line(&[("SYSLOG_TAG", &tag)], &[], false, &m);
        assert!(out.contains(&format!(" {} 4242 ", "é".repeat(48))), "{out}");
        let host = "h".repeat(300);
        let pid = "9".repeat(200);
        let out = line(&[("SYSLOG_HOSTNAME", &host), ("SYSLOG_PID", &pid)], &[], false, &m);
        assert!(out.contains(&format!(" {} web_1 {} - ", "h".repeat(255), "9".repeat(128))));
        let out = line(&[RFC3164, ("SYSLOG_HOSTNAME", &host), ("SYSLOG_PID", &pid)], &[], false, &m);
        assert!(out.contains(&format!(" {host} web_1[{pid}]: ")), "3164 cuts neither HOST nor PID");
    }

    #[test]
    fn invalid_utf8_counts_one_character_per_byte() {
        let m = msg("x", Source::Stdout);
        let s = settings(&[("SYSLOG_TAG", "{{.Data}}")], &[], false, None).unwrap();
        let mut data = vec![b'a'; 46];
        data.extend_from_slice(b"\xe2\x82\xff\xc3\xa9zz");
        let m2 = Message { data: Bytes::from(data), ..m };
        let mut out = Vec::new();
        s.render(&m2, Some(b"msg"), &mut out);
        let mut expected = b"<14>1 2021-12-06T15:27:06Z 8dfafdbc3a40 ".to_vec();
        expected.extend_from_slice(&[b'a'; 46]);
        expected.extend_from_slice(b"\xe2\x82 4242 - - msg\n");
        assert_eq!(out, expected);
    }
}
