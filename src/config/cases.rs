//! The plain data of sample input: what `luaspout try` reads and what a config's `test{}`
//! cases declare. The config loader fills it in; [`crate::authoring`] turns it into messages.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One input of `luaspout try` or of a `test{}`: a plain line, or a described message.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleInput {
    /// The line (without newline) of the default container's stdout.
    Line(Vec<u8>),
    /// A message with any of its fields given (boxed: it is much larger than a line).
    Message(Box<Sample>),
}

/// A message as written in a `try` JSON line or a `test{}` input table; all fields optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The line, without its newline.
    #[serde(default)]
    pub data: String,
    /// `"stdout"` (default) or `"stderr"`.
    pub source: Option<String>,
    /// RFC 3339 text or integer nanoseconds since the epoch.
    pub time: Option<SampleTime>,
    /// The container; unset fields get defaults (see [`SampleContainer`]).
    #[serde(default)]
    pub container: SampleContainer,
}

/// A sample's time, as text or as a number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SampleTime {
    Nanos(i64),
    Text(String),
}

/// A made-up container. Samples with equal descriptions come from the same container (one
/// multiline stream, one cached `msg.container` table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleContainer {
    /// Default [`DEFAULT_CONTAINER`].
    pub name: Option<String>,
    /// Default: 64 hex digits derived from the name, the same on every run.
    pub id: Option<String>,
    /// Default: empty.
    pub image: Option<String>,
    /// Default: the short ID, as Docker does.
    pub hostname: Option<String>,
    /// Default 1.
    pub pid: Option<i64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A `test{}` declared in a config.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: Option<String>,
    /// `file:line` of the declaration, for reports.
    pub location: String,
    pub input: Vec<SampleInput>,
    /// The route whose output is compared; may be left out when the config has one route.
    pub route: Option<String>,
    /// The lines the route should send, each without its trailing newline.
    pub expect: Vec<Vec<u8>>,
}
