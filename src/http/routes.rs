//! The route tables: every module lists its endpoints once (`ENDPOINTS`), the app registers exactly what
//! the tables list, and the OpenAPI document (`http::openapi`) is built from and checked against the same
//! tables, so a route cannot be served without being documented or documented without being served.

use actix_web::{web, Route};

use crate::config::Config;
use crate::http::method_not_allowed;

/// The HTTP method of an endpoint (`Get` routes answer `HEAD` too, see `http::get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }

    /// The key of the operation in an OpenAPI path item.
    pub fn openapi_key(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Delete => "delete",
        }
    }
}

/// One method on one path, with its handler and the error statuses the document lists for it.
pub struct Endpoint {
    pub verb: Verb,
    /// Relative to the API prefix for API routes, absolute for root routes.
    pub path: &'static str,
    /// Builds the actix route (method guard + handler).
    pub route: fn() -> Route,
    /// Error statuses this endpoint answers (401 is added for routes behind the token check).
    pub errors: &'static [u16],
    /// The documented operation this one repeats (a trailing-slash alias, a second WebSocket path).
    pub same_as: Option<&'static str>,
}

impl Endpoint {
    pub const fn get(path: &'static str, route: fn() -> Route, errors: &'static [u16]) -> Endpoint {
        Endpoint { verb: Verb::Get, path, route, errors, same_as: None }
    }

    pub const fn post(path: &'static str, route: fn() -> Route, errors: &'static [u16]) -> Endpoint {
        Endpoint { verb: Verb::Post, path, route, errors, same_as: None }
    }

    pub const fn delete(path: &'static str, route: fn() -> Route, errors: &'static [u16]) -> Endpoint {
        Endpoint { verb: Verb::Delete, path, route, errors, same_as: None }
    }

    /// Documented like the endpoint of the same method at `path`.
    pub const fn same_as(mut self, path: &'static str) -> Endpoint {
        self.same_as = Some(path);
        self
    }
}

/// Error statuses shared by many endpoints.
pub mod errors {
    /// Nothing but the generic answers (unknown route, wrong method).
    pub const NONE: &[u16] = &[];
    /// A multipart upload read by `http::upload::Form` and processed by `ops/`.
    /// (503: the processing queue is full or the wait for a slot timed out, see `admission`.)
    pub const UPLOAD: &[u16] = &[400, 408, 413, 415, 422, 429, 503];
    /// A chat resource named in the path.
    pub const CHAT_READ: &[u16] = &[404, 422];
    /// A chat request with a body.
    pub const CHAT_WRITE: &[u16] = &[400, 404, 408, 409, 413, 422, 429];
    /// A chat upload.
    pub const CHAT_UPLOAD: &[u16] = &[400, 404, 408, 409, 413, 415, 422, 429];
    /// A stored file served by name.
    pub const DOWNLOAD: &[u16] = &[400, 404, 416];
}

/// Which part of the REST app an endpoint table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Under `api.prefix`, behind the optional token check.
    Api,
    /// At the root of the REST port (`/metrics`, `/console`, `/docs`, `/openapi.json`, …).
    Root,
}

/// The endpoint tables under the API prefix, in registration order.
pub fn api_tables() -> [&'static [Endpoint]; 10] {
    use crate::http::*;
    [
        health::ENDPOINTS,
        files::ENDPOINTS,
        excel::ENDPOINTS,
        csv::ENDPOINTS,
        normalization::ENDPOINTS,
        sql::ENDPOINTS,
        json::ENDPOINTS,
        bind::ENDPOINTS,
        chat::ENDPOINTS,
        bot::ENDPOINTS,
    ]
}

/// The endpoint tables at the root of the REST port, in registration order.
pub fn root_tables() -> [&'static [Endpoint]; 4] {
    use crate::http::*;
    [metrics::ENDPOINTS, console::ENDPOINTS, openapi::ENDPOINTS, asyncapi::ENDPOINTS]
}

/// Registers the root tables (`/metrics` wraps its resource in the token check itself).
pub fn register_root(cfg: &mut web::ServiceConfig) {
    use crate::http::*;
    metrics::configure(cfg);
    register(cfg, console::ENDPOINTS);
    register(cfg, openapi::ENDPOINTS);
    register(cfg, asyncapi::ENDPOINTS);
}

/// Every endpoint of every table, whether this config serves it or not.
pub fn all_endpoints() -> impl Iterator<Item = &'static Endpoint> {
    let tables = root_tables().into_iter().chain(api_tables()).chain([crate::ws::server::REST_ALIASES]);
    tables.flat_map(|table| table.iter())
}

/// One route the REST app serves, with its full path.
pub struct Served {
    pub path: String,
    pub endpoint: &'static Endpoint,
    pub scope: Scope,
}

/// Every route the REST app registers for this config, with full paths.
pub fn served(config: &Config) -> Vec<Served> {
    let prefix = &config.api.prefix;
    let mut out = Vec::new();
    if serves_websocket_aliases(config) {
        for endpoint in crate::ws::server::REST_ALIASES {
            out.push(Served { path: alias_path(prefix, endpoint), endpoint, scope: Scope::Root });
        }
    }
    for table in root_tables() {
        out.extend(table.iter().map(|endpoint| Served {
            path: endpoint.path.to_string(),
            endpoint,
            scope: Scope::Root,
        }));
    }
    for table in api_tables() {
        out.extend(table.iter().map(|endpoint| Served {
            path: format!("{prefix}{}", endpoint.path),
            endpoint,
            scope: Scope::Api,
        }));
    }
    out
}

/// The WebSocket protocol is also served on the REST port when chat workflows are on and asked for.
pub fn serves_websocket_aliases(config: &Config) -> bool {
    config.chat_workflows.enabled && config.chat_workflows.websocket.serve_on_rest_port
}

/// `{prefix}` in an alias path stands for the API prefix (the alias itself is outside the token check).
pub fn alias_path(prefix: &str, endpoint: &Endpoint) -> String {
    endpoint.path.replace("{prefix}", prefix)
}

/// Registers a table: one resource per path (in first-seen order, so static segments registered before
/// `{param}` segments keep winning), each with its routes and a 405 (with `Allow`) for any other method.
pub fn register(cfg: &mut web::ServiceConfig, endpoints: &'static [Endpoint]) {
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in endpoints {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for endpoint in endpoints.iter().filter(|e| e.path == path) {
            resource = resource.route((endpoint.route)());
        }
        cfg.service(resource.default_service(method_not_allowed(allow_header(endpoints, path))));
    }
}

/// The `Allow` value of a path: its methods in a fixed order, `HEAD` with `GET`, and `OPTIONS`.
pub fn allow_header(endpoints: &[Endpoint], path: &str) -> String {
    let mut verbs: Vec<Verb> = endpoints.iter().filter(|e| e.path == path).map(|e| e.verb).collect();
    verbs.sort();
    verbs.dedup();
    let mut allow = Vec::new();
    for verb in verbs {
        allow.push(verb.as_str());
        if verb == Verb::Get {
            allow.push("HEAD");
        }
    }
    allow.push("OPTIONS");
    allow.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_methods_in_order_with_head_and_options() {
        const TABLE: &[Endpoint] = &[
            Endpoint::post("/x", || web::post().to(|| async { "" }), errors::NONE),
            Endpoint::delete("/x", || web::delete().to(|| async { "" }), errors::NONE),
            Endpoint::get("/x", || web::get().to(|| async { "" }), errors::NONE),
            Endpoint::post("/y", || web::post().to(|| async { "" }), errors::NONE),
        ];
        assert_eq!(allow_header(TABLE, "/x"), "GET, HEAD, POST, DELETE, OPTIONS");
        assert_eq!(allow_header(TABLE, "/y"), "POST, OPTIONS");
    }

    #[test]
    fn every_path_and_method_is_listed_once() {
        let config = Config::default();
        let mut seen = std::collections::HashSet::new();
        for route in served(&config) {
            assert!(seen.insert((route.path.clone(), route.endpoint.verb)), "twice: {}", route.path);
        }
    }
}
