//! Routes made of a URI alone: the `filter.*`, `multiline.*` and `on_full` query keys turned
//! into a route's selection, grouping and policy. The `/routes` API's routes are exactly this;
//! a `routes.lua` route starts from it and adds its table's keys.

use std::collections::HashMap;
use std::sync::Arc;

use super::options::{HttpOptions, OnFull, TlsOptions};
use super::{MatchSpec, OnError, Origin, RouteSpec, multiline_spec};
use crate::message::Source;
use crate::settings::Env;
use crate::uri::RouteUri;

/// Prefix of a route URI's multiline options (`multiline+raw+tcp://h:p?multiline.match=first`).
const URI_MULTILINE_PREFIX: &str = "multiline.";

/// A `multiline+…` URI's grouping, from its `multiline.*` query keys.
pub fn uri_multiline(uri: &RouteUri, env: &Env) -> Result<Option<crate::multiline::Spec>, String> {
    if !uri.multiline {
        return Ok(None);
    }
    let options: HashMap<String, String> = uri
        .options
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(URI_MULTILINE_PREFIX).map(|k| (k.to_string(), v.clone())))
        .collect();
    if let Some(unknown) = options.keys().find(|k| !crate::multiline::OPTION_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown URI option `{URI_MULTILINE_PREFIX}{unknown}` (multiline options: {})",
            crate::multiline::OPTION_KEYS.join(", ")
        ));
    }
    multiline_spec(&options, env).map(Some)
}

/// The `on_full` query key of a route URI (`raw+udp://h:514?on_full=drop`), default `block`.
pub fn uri_on_full(uri: &RouteUri) -> Result<OnFull, String> {
    uri.options.get("on_full").map_or(Ok(OnFull::Block), |v| OnFull::parse(v).map_err(|e| format!("route URI: {e}")))
}

/// A route made of a URI alone (the `/routes` API): its filters, options and grouping as the
/// URI gives them, no Lua.
pub fn uri_route(name: String, uri: RouteUri, env: &Env) -> Result<RouteSpec, String> {
    let http = if uri.transport.is_http() { HttpOptions::from_uri(&uri)? } else { HttpOptions::default() };
    Ok(RouteSpec {
        name,
        matcher: uri_matcher(&uri)?,
        multiline: uri_multiline(&uri, env)?.map(Arc::new),
        has_filter: false,
        has_format: false,
        on_error: OnError::Pass,
        on_full: uri_on_full(&uri)?,
        tls: TlsOptions::default(),
        http,
        origin: Origin::Api,
        uri,
    })
}

/// The selection a URI's `filter.*` query keys make.
pub fn uri_matcher(uri: &RouteUri) -> Result<MatchSpec, String> {
    let f = &uri.filter;
    let sources = if f.sources.is_empty() {
        None
    } else {
        // logspout compares sources as plain strings, so an unknown name simply never matches.
        Some(f.sources.iter().filter_map(|s| Source::parse(s)).collect())
    };
    Ok(MatchSpec {
        names: f.name.iter().cloned().collect(),
        ids: f.id.iter().cloned().collect(),
        image: None,
        sources,
        labels: f
            .labels
            .iter()
            // logspout ignores an item without a colon (quirk Q3, kept).
            .filter_map(|item| item.split_once(':').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
    })
}
