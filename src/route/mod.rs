//! A route at run time: its compiled matcher, its formatter and the queue of its sink.
//!
//! Everything here is built once per config from a [`crate::config::RouteSpec`]; matching a
//! container is a handful of glob and prefix checks, done once per container per worker and
//! cached, and matching a line's stream is one array lookup.

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, MatchSpec};
use crate::format::Formatter;
use crate::glob::Glob;
use crate::message::{Container, Source};
use crate::settings::Settings;
use crate::stats::{RouteStats, Stats};
use crate::transport::Sink;

/// A compiled [`MatchSpec`].
#[derive(Debug)]
pub struct Matcher {
    names: Vec<Glob>,
    ids: Vec<String>,
    image: Option<Glob>,
    labels: Vec<(String, Glob)>,
    /// Indexed by `Source as usize`.
    sources: [bool; 2],
}

impl Matcher {
    /// Compiles the globs of `spec`.
    pub fn compile(spec: &MatchSpec) -> Matcher {
        let mut sources = [true, true];
        if let Some(allowed) = &spec.sources {
            sources = [allowed.contains(&Source::Stdout), allowed.contains(&Source::Stderr)];
        }
        Matcher {
            names: spec.names.iter().map(|g| Glob::new(g)).collect(),
            ids: spec.ids.iter().map(|id| id.to_ascii_lowercase()).collect(),
            image: spec.image.as_deref().map(Glob::new),
            // logspout skips a label whose glob is empty: `k:` always passes.
            labels: spec.labels.iter().filter(|(_, g)| !g.is_empty()).map(|(k, g)| (k.clone(), Glob::new(g))).collect(),
            sources,
        }
    }

    /// Whether the route takes lines of this container at all.
    ///
    /// An ID filter matches any prefix of the full ID, so both short (12) and full (64) IDs
    /// work (logspout's quirk Q2, fixed). A missing label counts as the empty string, so `k:*`
    /// matches a container without `k` (quirk Q3, kept).
    pub fn matches_container(&self, c: &Container) -> bool {
        self.names.iter().all(|g| g.matches(&c.name))
            && self.ids.iter().all(|p| !p.is_empty() && c.id.starts_with(p.as_str()))
            && self.image.as_ref().is_none_or(|g| g.matches(&c.image))
            && self.labels.iter().all(|(k, g)| g.matches(c.labels.get(k).map_or("", String::as_str)))
    }

    /// Whether the route takes lines of this stream.
    pub fn matches_source(&self, s: Source) -> bool {
        self.sources[s as usize]
    }
}

/// One route, shared by all router workers.
pub struct Route {
    /// Position in the config (indexes per-worker caches and Lua functions).
    pub index: usize,
    pub name: String,
    /// The name again, shared by the receipts of every batch the route queues, so a
    /// container's track can say which route holds its lines.
    pub holder: Arc<str>,
    pub matcher: Matcher,
    pub formatter: Formatter,
    pub sink: Sink,
    pub has_filter: bool,
    pub has_format: bool,
    /// Route-level multiline grouping.
    pub multiline: Option<Arc<crate::multiline::Spec>>,
    /// What a Lua error does to the line.
    pub on_error: crate::config::OnError,
    /// What the route does when its queue is full.
    pub on_full: crate::config::options::OnFull,
    pub stats: Arc<RouteStats>,
}

/// Compiles every route's formatter (`RAW_FORMAT`, `SYSLOG_*`), in config order. This is all
/// that can still fail once a config has loaded, so it runs before anything starts (and is
/// what `luaspout check` adds to loading).
pub fn formatters(config: &Config, settings: &Settings) -> anyhow::Result<Vec<Formatter>> {
    let host_hostname = crate::format::read_host_hostname();
    config
        .routes
        .iter()
        .map(|spec| {
            Formatter::for_route(&spec.uri, &settings.env, host_hostname.as_deref())
                .with_context(|| format!("route {:?}", spec.name))
        })
        .collect()
}

/// Builds the run-time routes of `config`, each with its formatter (from [`formatters`]) and
/// bound to its sink.
pub fn build_routes(config: &Config, formatters: Vec<Formatter>, sinks: &[Sink], stats: &Stats) -> Vec<Arc<Route>> {
    config
        .routes
        .iter()
        .zip(formatters)
        .zip(sinks)
        .enumerate()
        .map(|(index, ((spec, formatter), sink))| {
            Arc::new(Route {
                index,
                name: spec.name.clone(),
                holder: spec.name.as_str().into(),
                matcher: Matcher::compile(&spec.matcher),
                formatter,
                sink: sink.clone(),
                has_filter: spec.has_filter,
                has_format: spec.has_format,
                multiline: spec.multiline.clone(),
                on_error: spec.on_error,
                on_full: spec.on_full,
                stats: stats.route(&spec.name),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        Container {
            id: "3b6ba57db54a0c7d0e2b9f7c1d7a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d".into(),
            name: "app_db".into(),
            image: "myorg/db:1".into(),
            labels: [("a".to_string(), "x1".to_string()), ("b".to_string(), "zy".to_string())].into(),
            ..Default::default()
        }
    }

    fn m(f: impl FnOnce(&mut MatchSpec)) -> bool {
        let mut spec = MatchSpec::default();
        f(&mut spec);
        Matcher::compile(&spec).matches_container(&container())
    }

    #[test]
    fn container_matching_follows_logspout() {
        assert!(m(|_| {}));
        assert!(m(|s| s.names.push("*_db".into())));
        assert!(!m(|s| s.names.push("db".into())));
        assert!(m(|s| s.ids.push("3b6b".into())));
        assert!(m(|s| s.ids.push("3b6ba57db54a".into())));
        assert!(m(|s| s.ids.push(container().id)), "full IDs match (Q2 fixed)");
        assert!(!m(|s| s.ids.push("ffff".into())));
        assert!(m(|s| s.labels = vec![("a".into(), "x*".into()), ("b".into(), "*y".into())]));
        assert!(!m(|s| s.labels = vec![("a".into(), "x*".into()), ("c".into(), "*y".into())]));
        assert!(m(|s| s.labels = vec![("missing".into(), "*".into())]), "absent label is the empty string");
        assert!(m(|s| s.labels = vec![("a".into(), "".into())]), "an empty glob always passes");
        assert!(m(|s| s.labels = vec![("missing".into(), "".into())]));
        assert!(m(|s| s.image = Some("myorg/*".into())));
        assert!(!m(|s| s.image = Some("other/*".into())));
    }

    #[test]
    fn source_matching() {
        let only_err = Matcher::compile(&MatchSpec { sources: Some(vec![Source::Stderr]), ..Default::default() });
        assert!(only_err.matches_source(Source::Stderr));
        assert!(!only_err.matches_source(Source::Stdout));
    }
}
