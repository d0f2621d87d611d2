//! The WebSocket `Origin` allow-list (websocket.md C.10): exact origins, `*`, and leading-wildcard hosts
//! (`https://*.example.com`), compared case-insensitively on scheme and host and exactly on the port, with
//! the scheme's default port implied when none is written.

use crate::config::WebSocketConfig;

/// A parsed `scheme://host[:port]`, lower-cased, with the port made explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    Any,
    Exact(Origin),
    /// `scheme://*.suffix[:port]`: any host ending in `.suffix` (at least one more label).
    Subdomains {
        scheme: String,
        suffix: String,
        port: u16,
    },
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// Splits `scheme://host[:port]`; `None` for anything else (paths, user info, `null`, junk).
fn split_origin(text: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = text.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    // A bracketed IPv6 host keeps its colons; otherwise the last colon separates the port.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return None;
        }
        (format!("[{}]", addr.to_ascii_lowercase()), after.strip_prefix(':').map(str::to_string))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p.to_string())),
            None => (rest.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() || !(host.starts_with('[') || host.chars().all(|c| is_host_char(c) || c == '*')) {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().ok()?
        }
        Some(_) => return None,
        None => default_port(&scheme)?,
    };
    Some((scheme, host, port))
}

impl Origin {
    fn parse(text: &str) -> Option<Origin> {
        let (scheme, host, port) = split_origin(text)?;
        (!host.contains('*')).then_some(Origin { scheme, host, port })
    }
}

impl OriginPattern {
    /// Parses a config entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<OriginPattern, String> {
        let entry = entry.trim();
        if entry == "*" {
            return Ok(OriginPattern::Any);
        }
        let bad = || format!("'{entry}' is not \"*\", scheme://host[:port] or scheme://*.domain[:port]");
        let (scheme, host, port) = split_origin(entry).ok_or_else(bad)?;
        match host.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') && !suffix.starts_with('.') => {
                Ok(OriginPattern::Subdomains { scheme, suffix: suffix.to_string(), port })
            }
            Some(_) => Err(bad()),
            None if host.contains('*') => Err(bad()),
            None => Ok(OriginPattern::Exact(Origin { scheme, host, port })),
        }
    }

    fn matches(&self, origin: &Origin) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(o) => o == origin,
            OriginPattern::Subdomains { scheme, suffix, port } => {
                *scheme == origin.scheme
                    && *port == origin.port
                    && origin.host.len() > suffix.len() + 1
                    && origin.host.ends_with(suffix.as_str())
                    && origin.host.as_bytes()[origin.host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

/// The decision for one upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCheck {
    Allowed,
    Refused,
}

/// `websocket.allowed_origins` + `require_origin`, parsed once.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    patterns: Vec<OriginPattern>,
    require_origin: bool,
}

impl OriginPolicy {
    /// Entries that do not parse are skipped here (config validation refuses them at start-up).
    pub fn from_config(ws: &WebSocketConfig) -> OriginPolicy {
        OriginPolicy {
            patterns: ws.allowed_origins.iter().filter_map(|e| OriginPattern::parse(e).ok()).collect(),
            require_origin: ws.require_origin,
        }
    }

    /// `origin` is the raw `Origin` header (`None` when absent).
    pub fn check(&self, origin: Option<&str>) -> OriginCheck {
        let allowed = match origin {
            None => !self.require_origin,
            Some(_) if self.patterns.is_empty() => true,
            Some(raw) => match Origin::parse(raw) {
                Some(o) => self.patterns.iter().any(|p| p.matches(&o)),
                // `null` (sandboxed pages, file://) or junk only passes an explicit `*`.
                None => self.patterns.contains(&OriginPattern::Any),
            },
        };
        if allowed {
            OriginCheck::Allowed
        } else {
            OriginCheck::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str], require: bool) -> OriginPolicy {
        let ws = WebSocketConfig {
            allowed_origins: entries.iter().map(|s| s.to_string()).collect(),
            require_origin: require,
            ..WebSocketConfig::default()
        };
        OriginPolicy::from_config(&ws)
    }

    fn allowed(p: &OriginPolicy, origin: Option<&str>) -> bool {
        p.check(origin) == OriginCheck::Allowed
    }

    #[test]
    fn empty_list_allows_everything_and_absence_follows_require_origin() {
        let open = policy(&[], false);
        assert!(allowed(&open, Some("http://evil.test")));
        assert!(allowed(&open, None));
        let strict = policy(&[], true);
        assert!(!allowed(&strict, None));
        assert!(allowed(&strict, Some("http://any.test")));
    }

    #[test]
    fn exact_entries_compare_scheme_and_host_case_insensitively_and_port_exactly() {
        let p = policy(&["http://localhost:3000", "https://Studio.Example.com"], false);
        assert!(allowed(&p, Some("http://localhost:3000")));
        assert!(allowed(&p, Some("HTTP://LOCALHOST:3000")));
        assert!(!allowed(&p, Some("http://localhost:3001")));
        assert!(!allowed(&p, Some("https://localhost:3000")));
        assert!(allowed(&p, Some("https://studio.example.com")));
        assert!(allowed(&p, Some("https://studio.example.com:443")), "default port implied");
        assert!(!allowed(&p, Some("https://studio.example.com:8443")));
        assert!(!allowed(&p, Some("http://studio.example.com")));
        assert!(!allowed(&p, Some("null")));
        assert!(!allowed(&p, Some("http://localhost:3000/path")));
        assert!(allowed(&p, None), "no Origin header: allowed unless require_origin");
    }

    #[test]
    fn wildcard_entries() {
        let p = policy(&["https://*.example.com"], false);
        assert!(allowed(&p, Some("https://a.example.com")));
        assert!(allowed(&p, Some("https://a.b.EXAMPLE.com:443")));
        assert!(!allowed(&p, Some("https://example.com")), "the bare domain is not a subdomain");
        assert!(!allowed(&p, Some("https://evilexample.com")));
        assert!(!allowed(&p, Some("https://a.example.com.evil.test")));
        assert!(!allowed(&p, Some("http://a.example.com")));
        assert!(!allowed(&p, Some("https://a.example.com:8443")));
        let star = policy(&["*"], true);
        assert!(allowed(&star, Some("null")));
        assert!(!allowed(&star, None));
    }

    #[test]
    fn ipv6_and_bad_entries() {
        let p = policy(&["http://[::1]:8080"], false);
        assert!(allowed(&p, Some("http://[::1]:8080")));
        assert!(!allowed(&p, Some("http://[::2]:8080")));
        for bad in
            ["localhost:3000", "https://*", "https://a.*.com", "http://host:99999", "http://", "ftp//x"]
        {
            assert!(OriginPattern::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(OriginPattern::parse("ftp://files.test:21").is_ok());
        assert!(OriginPattern::parse("ftp://files.test").is_err(), "no default port for ftp");
    }
}
