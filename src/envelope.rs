//! The response envelope every JSON answer goes through (rest-api.md §3), and the service-wide rules for
//! building absolute download URLs (rest-api.md §6.3, chat-workflows.md §7).

use actix_web::body::{BoxBody, SizedStream};
use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, Responder};
use bytes::Bytes;
use chrono::Utc;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::Config;

/// Per-request id, set by the request-context middleware and echoed as `X-Request-ID`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The two config values every envelope carries.
#[derive(Debug, Clone)]
pub struct EnvelopeMeta {
    pub api_version: String,
    pub locale: String,
}

impl EnvelopeMeta {
    pub fn from_config(config: &Config) -> Self {
        EnvelopeMeta { api_version: config.app.version.clone(), locale: config.api.locale.clone() }
    }
}

/// UTC RFC 3339 with microseconds and an explicit `+00:00` offset (spec/README.md decision 1); one
/// implementation for the whole service, in `ops::clock`.
pub use crate::ops::clock::{iso_timestamp as format_rfc3339, now_iso as now_rfc3339};

/// `YYYYMMDD_HHMMSS` (UTC) for generated file names.
pub fn file_timestamp() -> String {
    Utc::now().format("%Y%m%d_%H%M%S").to_string()
}

/// Recursively sorts object keys (the reference serializer does; `serde_json` here preserves insertion
/// order so generated JSON *files* can keep template order).
pub fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sort_keys(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Builds the complete envelope body.
pub fn envelope_body(
    status: StatusCode,
    message: &str,
    data: Value,
    total: u64,
    request_id: &str,
    meta: &EnvelopeMeta,
) -> Value {
    envelope_body_at(status, message, data, total, request_id, meta, now_rfc3339())
}

/// [`envelope_body`] requested at `requested_time`.
pub fn envelope_body_at(
    status: StatusCode,
    message: &str,
    data: Value,
    total: u64,
    request_id: &str,
    meta: &EnvelopeMeta,
    requested_time: String,
) -> Value {
    sort_keys(json!({
        "data": data,
        "message": message,
        "meta": {
            "api_version": meta.api_version,
            "locale": meta.locale,
            "request_id": request_id,
            "requested_time": requested_time,
        },
        "status_code": status.as_u16(),
        "total": total,
    }))
}

/// The bytes of [`envelope_body_at`] with `data` given as JSON text in pieces (its keys already sorted):
/// the pieces are spliced in where `data` belongs instead of being parsed into a value, so a large answer
/// leaves as it was built.
pub fn envelope_pieces_at(
    status: StatusCode,
    message: &str,
    data: Vec<Bytes>,
    total: u64,
    request_id: &str,
    meta: &EnvelopeMeta,
    requested_time: String,
) -> Vec<Bytes> {
    let body = envelope_body_at(status, message, Value::Null, total, request_id, meta, requested_time);
    let text = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    // `data` is the first key in sorted order.
    const HEAD: &[u8] = b"{\"data\":";
    let rest = text.strip_prefix(b"{\"data\":null".as_slice()).expect("the envelope starts with its data");
    let mut pieces = Vec::with_capacity(data.len() + 2);
    pieces.push(Bytes::from_static(HEAD));
    pieces.extend(data);
    pieces.push(Bytes::copy_from_slice(rest));
    pieces
}

pub fn envelope_response(status: StatusCode, body: &Value) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = HttpResponse::build(status).body(bytes);
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The request id of this request (set by the middleware; a fresh one if the middleware did not run).
pub fn request_id_of(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_else(new_request_id)
}

pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A successful (or deliberately non-error) envelope answer.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub message: String,
    pub data: Value,
    pub total: u64,
}

impl ApiResponse {
    pub fn ok(message: impl Into<String>, data: impl Serialize) -> Self {
        ApiResponse {
            status: StatusCode::OK,
            message: message.into(),
            data: serde_json::to_value(data).unwrap_or(Value::Null),
            total: 0,
        }
    }
    /// [`ApiResponse::ok`] with `data` already a JSON value: moved in, not copied (large answers).
    pub fn ok_value(message: impl Into<String>, data: Value) -> Self {
        ApiResponse { status: StatusCode::OK, message: message.into(), data, total: 0 }
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    pub fn with_total(mut self, total: u64) -> Self {
        self.total = total;
        self
    }
}

/// The envelope `meta` of the app serving `req` (defaults when the request carries no app state).
fn meta_of(req: &HttpRequest) -> EnvelopeMeta {
    req.app_data::<actix_web::web::Data<crate::AppState>>()
        .map(|s| s.meta.clone())
        .unwrap_or_else(|| EnvelopeMeta::from_config(&Config::default()))
}

impl Responder for ApiResponse {
    type Body = BoxBody;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse {
        let meta = meta_of(req);
        let body =
            envelope_body(self.status, &self.message, self.data, self.total, &request_id_of(req), &meta);
        envelope_response(self.status, &body)
    }
}

/// A successful envelope answer whose `data` is JSON text in pieces, keys sorted (see
/// [`envelope_pieces_at`]); sent piece by piece with its length announced, as [`ApiResponse`] would be.
#[derive(Debug)]
pub struct ApiPieces {
    pub message: String,
    pub data: Vec<Bytes>,
}

impl Responder for ApiPieces {
    type Body = BoxBody;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse {
        let meta = meta_of(req);
        let status = StatusCode::OK;
        let pieces = envelope_pieces_at(
            status,
            &self.message,
            self.data,
            0,
            &request_id_of(req),
            &meta,
            now_rfc3339(),
        );
        let len = pieces.iter().map(|p| p.len() as u64).sum();
        let stream = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::convert::Infallible>));
        let mut res = HttpResponse::build(status).body(SizedStream::new(len, stream));
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }
}

/// Characters left as they are in a path segment; everything else is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// `{scheme}://{host}` for URLs handed to clients: `public_base_url`, else trusted proxy headers, else the
/// request's own scheme and Host header.
pub fn public_origin(req: &HttpRequest, config: &Config) -> String {
    if let Some(base) = config.public_base_url() {
        return base.trim_end_matches('/').to_string();
    }
    if config.trust_proxy_headers() {
        if let Some(origin) = forwarded_origin(req) {
            return origin;
        }
    }
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn forwarded_origin(req: &HttpRequest) -> Option<String> {
    if let Some(forwarded) = header_str(req, "forwarded") {
        let first = forwarded.split(',').next().unwrap_or("");
        let mut proto = None;
        let mut host = None;
        for pair in first.split(';') {
            let mut kv = pair.trim().splitn(2, '=');
            let key = kv.next().unwrap_or("").trim().to_ascii_lowercase();
            let value = kv.next().unwrap_or("").trim().trim_matches('"').to_string();
            match key.as_str() {
                "proto" if !value.is_empty() => proto = Some(value),
                "host" if !value.is_empty() => host = Some(value),
                _ => {}
            }
        }
        if let Some(host) = host {
            let scheme = proto.unwrap_or_else(|| req.connection_info().scheme().to_string());
            return Some(format!("{scheme}://{host}"));
        }
    }
    let host =
        header_str(req, "x-forwarded-host").map(|h| h.split(',').next().unwrap_or("").trim().to_string());
    let proto =
        header_str(req, "x-forwarded-proto").map(|p| p.split(',').next().unwrap_or("").trim().to_string());
    match (proto, host) {
        (None, None) => None,
        (proto, host) => {
            let info = req.connection_info();
            let scheme = proto.filter(|p| !p.is_empty()).unwrap_or_else(|| info.scheme().to_string());
            let host = host.filter(|h| !h.is_empty()).unwrap_or_else(|| info.host().to_string());
            Some(format!("{scheme}://{host}"))
        }
    }
}

/// Absolute URL of `GET {prefix}/files/downloads/{name}`.
pub fn download_url(req: &HttpRequest, config: &Config, file_name: &str) -> String {
    format!(
        "{}{}/files/downloads/{}",
        public_origin(req, config),
        config.api.prefix,
        encode_segment(file_name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_at_every_level() {
        let v = sort_keys(json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": 3}}));
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":{"c":3,"d":[{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn timestamps_have_offset_and_micros() {
        let t = now_rfc3339();
        assert!(t.ends_with("+00:00"), "{t}");
        assert_eq!(t.split('.').nth(1).map(|f| f.len()), Some(6 + 6), "{t}");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("a b_ü.xlsx"), "a%20b_%C3%BC.xlsx");
    }
}
