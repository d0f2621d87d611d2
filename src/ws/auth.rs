//! Token authentication (websocket.md C.10): where a token comes from (header, query, subprotocol), how it is
//! validated (constant-time match against static tokens, or an HS256 JWT with `exp` and an optional
//! `chat_ids` scope), and query-string redaction for log lines. Also used by the optional REST protection.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::HttpRequest;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::WsAuthConfig;

/// The subprotocol a client offers next to `bearer.<token>`; the server selects it so the token is never
/// echoed in the handshake response.
pub const SUBPROTOCOL: &str = "pycelize.v1";
const BEARER_PROTOCOL_PREFIX: &str = "bearer.";
/// Tokens longer than this are refused without being parsed.
const MAX_TOKEN_BYTES: usize = 8192;

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Header,
    Query,
    Subprotocol,
    Message,
}

/// Which chats a token may subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatScope {
    All,
    Only(HashSet<String>),
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub chats: ChatScope,
    /// Unix seconds after which the grant is void (JWT `exp`); `None` for static tokens.
    pub expires_at: Option<u64>,
}

impl Grant {
    pub fn allows_chat(&self, chat_id: &str) -> bool {
        match &self.chats {
            ChatScope::All => true,
            ChatScope::Only(ids) => ids.contains(chat_id),
        }
    }

    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|exp| unix_now() >= exp)
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Why a token was refused (logged; the client only ever sees `unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Invalid,
    Expired,
}

#[derive(Debug, Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    chat_ids: Option<Vec<String>>,
}

/// Validates tokens against `websocket.auth`.
pub struct Authenticator {
    tokens: Vec<Vec<u8>>,
    jwt: Option<(DecodingKey, Validation)>,
}

impl Authenticator {
    /// `None` when authentication is disabled.
    pub fn from_config(auth: &WsAuthConfig) -> Option<Authenticator> {
        if !auth.enabled {
            return None;
        }
        let jwt = auth.jwt_secret.as_ref().filter(|s| !s.is_empty()).map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            // `exp` must be in the future, to the second: no grace period.
            validation.leeway = 0;
            validation.validate_exp = true;
            validation.validate_aud = false;
            validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        Some(Authenticator { tokens: auth.tokens.iter().map(|t| t.as_bytes().to_vec()).collect(), jwt })
    }

    pub fn validate(&self, token: &str) -> Result<Grant, AuthFailure> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::Invalid);
        }
        // Compare against every static token, without stopping early, so timing says nothing about which
        // (or how much of one) matched.
        let presented = token.as_bytes();
        let matched = self.tokens.iter().fold(subtle::Choice::from(0u8), |acc, t| acc | t.ct_eq(presented));
        if bool::from(matched) {
            return Ok(Grant { chats: ChatScope::All, expires_at: None });
        }
        let Some((key, validation)) = &self.jwt else { return Err(AuthFailure::Invalid) };
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthFailure::Expired,
            _ => AuthFailure::Invalid,
        })?;
        let claims = data.claims;
        if claims.exp <= unix_now() {
            return Err(AuthFailure::Expired);
        }
        let chats = match claims.chat_ids {
            None => ChatScope::All,
            Some(ids) if ids.iter().any(|id| id == "*") => ChatScope::All,
            Some(ids) => ChatScope::Only(ids.into_iter().collect()),
        };
        Ok(Grant { chats, expires_at: Some(claims.exp) })
    }
}

/// `Authorization: Bearer <t>` (scheme case-insensitive).
pub fn bearer_header(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// Every subprotocol the client offered, in order.
pub fn offered_subprotocols(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The handshake token, first match wins: header, `token` query parameter (if allowed), `bearer.<t>`
/// subprotocol offered together with `pycelize.v1`.
pub fn handshake_token(
    req: &HttpRequest,
    query_token: Option<&str>,
    allow_query: bool,
) -> Option<(String, TokenSource)> {
    if let Some(t) = bearer_header(req) {
        return Some((t, TokenSource::Header));
    }
    if let Some(t) = query_token.filter(|t| allow_query && !t.is_empty()) {
        return Some((t.to_string(), TokenSource::Query));
    }
    let offered = offered_subprotocols(req);
    if offered.iter().any(|p| p == SUBPROTOCOL) {
        if let Some(t) = offered.iter().find_map(|p| p.strip_prefix(BEARER_PROTOCOL_PREFIX)) {
            if !t.is_empty() {
                return Some((t.to_string(), TokenSource::Subprotocol));
            }
        }
    }
    None
}

/// A query string with the value of every `token` parameter replaced, for log lines.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("token") => format!("{k}=[redacted]"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn auth(tokens: &[&str], secret: Option<&str>) -> Authenticator {
        let cfg = WsAuthConfig {
            enabled: true,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            jwt_secret: secret.map(str::to_string),
            ..WsAuthConfig::default()
        };
        Authenticator::from_config(&cfg).expect("enabled")
    }

    fn jwt(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    #[test]
    fn disabled_means_no_authenticator() {
        assert!(Authenticator::from_config(&WsAuthConfig::default()).is_none());
    }

    #[test]
    fn static_tokens_match_exactly() {
        let a = auth(&["alpha-token", "beta"], None);
        assert_eq!(a.validate("beta").unwrap().chats, ChatScope::All);
        assert!(a.validate("alpha-token").is_ok());
        for bad in ["alpha", "alpha-token2", "", "BETA"] {
            assert_eq!(a.validate(bad), Err(AuthFailure::Invalid), "{bad}");
        }
    }

    #[test]
    fn jwt_exp_and_scope() {
        let a = auth(&[], Some("s3cret"));
        let future = unix_now() + 600;
        let g = a.validate(&jwt("s3cret", json!({"exp": future, "chat_ids": ["A", "B"]}))).unwrap();
        assert!(g.allows_chat("A") && !g.allows_chat("C"));
        assert_eq!(g.expires_at, Some(future));
        let all = a.validate(&jwt("s3cret", json!({"exp": future, "chat_ids": ["*"]}))).unwrap();
        assert!(all.allows_chat("anything"));
        assert_eq!(a.validate(&jwt("s3cret", json!({"exp": unix_now() - 1}))), Err(AuthFailure::Expired));
        assert_eq!(a.validate(&jwt("other", json!({"exp": future}))), Err(AuthFailure::Invalid));
        assert_eq!(
            a.validate(&jwt("s3cret", json!({"sub": "x"}))),
            Err(AuthFailure::Invalid),
            "exp required"
        );
        assert_eq!(
            a.validate(&jwt("s3cret", json!({"exp": future, "chat_ids": "A"}))),
            Err(AuthFailure::Invalid),
            "chat_ids must be an array"
        );
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &json!({"exp": future}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(a.validate(&hs512), Err(AuthFailure::Invalid), "only HS256");
    }

    #[test]
    fn grant_expiry() {
        let g = Grant { chats: ChatScope::All, expires_at: Some(unix_now() - 1) };
        assert!(g.is_expired());
        assert!(!Grant { chats: ChatScope::All, expires_at: None }.is_expired());
    }

    #[test]
    fn redaction_hides_only_the_token() {
        assert_eq!(redact_query("last_seq=3&token=abc&epoch=e"), "last_seq=3&token=[redacted]&epoch=e");
        assert_eq!(redact_query("TOKEN=x"), "TOKEN=[redacted]");
        assert_eq!(redact_query(""), "");
    }

    #[test]
    fn token_sources_in_order() {
        use actix_web::test::TestRequest;
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer hdr"))
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, "pycelize.v1, bearer.sub"))
            .to_http_request();
        assert_eq!(handshake_token(&req, Some("q"), true), Some(("hdr".into(), TokenSource::Header)));
        let req = TestRequest::default()
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, "pycelize.v1, bearer.sub"))
            .to_http_request();
        assert_eq!(handshake_token(&req, Some("q"), true), Some(("q".into(), TokenSource::Query)));
        assert_eq!(handshake_token(&req, Some("q"), false), Some(("sub".into(), TokenSource::Subprotocol)));
        let only_bearer = TestRequest::default()
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, "bearer.sub"))
            .to_http_request();
        assert_eq!(handshake_token(&only_bearer, None, true), None, "pycelize.v1 must be offered too");
    }
}
