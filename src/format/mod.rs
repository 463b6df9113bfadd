//! Turning a message into the bytes a sink receives: logspout's `raw` (a `RAW_FORMAT`
//! template) and `syslog` (RFC 5424/3164 lines) adapters, with or without a payload produced
//! by a Lua `format` function.

pub mod json;
pub mod syslog;
pub mod template;

use std::sync::OnceLock;

use crate::message::Message;
use crate::settings::Env;
use crate::uri::{Adapter, RouteUri, Transport};
use syslog::SyslogSettings;
use template::{Dialect, Template};

/// logspout's default `RAW_FORMAT`.
const DEFAULT_RAW_FORMAT: &str = "{{.Data}}\n";

/// How one route encodes its messages.
#[derive(Debug)]
pub enum Formatter {
    /// The `raw` adapter: the template's output is the whole line.
    Raw(Template),
    /// The `syslog` adapter: a syslog header, then the payload as MSG.
    Syslog(Box<SyslogSettings>),
    /// The `json` adapter (HTTP routes' default): one JSON object per message.
    Json,
}

impl Formatter {
    /// The formatter of a route, from its adapter, its URI options and logspout's variables.
    pub fn for_route(uri: &RouteUri, env: &Env, host_hostname: Option<&str>) -> anyhow::Result<Formatter> {
        match uri.adapter {
            Adapter::Raw => {
                let text = env.get("RAW_FORMAT").unwrap_or_else(|| DEFAULT_RAW_FORMAT.to_string());
                let t = Template::compile(&text, Dialect::Raw).map_err(|e| anyhow::anyhow!("RAW_FORMAT: {e}"))?;
                Ok(Formatter::Raw(t))
            }
            Adapter::Syslog => {
                let stream = matches!(uri.transport, Transport::Tcp | Transport::Tls);
                let s = SyslogSettings::from_env(&|name| env.get(name), &uri.options, stream, host_hostname)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(Formatter::Syslog(Box::new(s)))
            }
            Adapter::Json => Ok(Formatter::Json),
        }
    }

    /// Appends the message in the adapter's default layout.
    pub fn render(&self, msg: &Message, out: &mut Vec<u8>) {
        match self {
            Formatter::Raw(t) => t.render(msg, out),
            Formatter::Syslog(s) => s.render(msg, None, out),
            Formatter::Json => {
                json::write_message(msg, out);
                out.push(b'\n');
            }
        }
    }

    /// Renders that hit a template execution error (e.g. `index` out of range), since start.
    /// The line still goes out with what rendered before the error, as far as Go would print.
    pub fn render_errors(&self) -> u64 {
        match self {
            Formatter::Raw(t) => t.errors(),
            Formatter::Syslog(s) => s.render_errors(),
            Formatter::Json => 0,
        }
    }

    /// The latest template execution error, naming the action.
    pub fn last_render_error(&self) -> Option<String> {
        match self {
            Formatter::Raw(t) => t.last_error(),
            Formatter::Syslog(s) => s.last_render_error(),
            Formatter::Json => None,
        }
    }

    /// Appends the message with `payload` (from a Lua `format`) as its content: the whole line
    /// for raw and json (a newline is added if missing), the MSG part for syslog.
    pub fn render_payload(&self, msg: &Message, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Formatter::Raw(_) | Formatter::Json => {
                out.extend_from_slice(payload);
                if payload.last() != Some(&b'\n') {
                    out.push(b'\n');
                }
            }
            Formatter::Syslog(s) => s.render(msg, Some(payload), out),
        }
    }
}

/// The content of `/etc/host_hostname` (trailing newlines removed), which logspout uses as the
/// syslog HOST on swarm nodes where the host's `/etc/hostname` is mounted there.
pub fn read_host_hostname() -> Option<String> {
    let text = std::fs::read_to_string("/etc/host_hostname").ok()?;
    let trimmed = text.trim_end_matches(['\r', '\n']);
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// The hostname of the machine (or container) luaspout runs on, read once.
pub fn os_hostname() -> &'static str {
    static HOSTNAME: OnceLock<String> = OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    })
}
