//! Admission of heavy REST requests, decided from the request head before the body is read: light
//! requests (reads, listings, health, downloads, WebSocket handshakes, small bodies) pass straight
//! through; a processing request waits for a slot of the shared controller (`crate::admission`) and its
//! handler then runs on the heavy lane. A refused request (503 busy, 413 over the memory budget) has its
//! body drained without storing it, so ordinary clients read the answer instead of a reset connection,
//! and nothing of it reaches the disk. Classification is by method and path, independent of how the
//! routes are registered.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use futures_util::StreamExt;
use serde_json::json;

use crate::admission::{estimate_bytes, memory_factor, Origin, Refusal, MIB};
use crate::error::{ApiError, ErrorKind};
use crate::AppState;

/// Longest time spent draining the body of a refused request (the body guard's minimum rate also applies).
const MAX_DRAIN: Duration = Duration::from_secs(30);

/// A heavy request: its operation and memory estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeavyRequest {
    pub operation: String,
    pub estimate_bytes: u64,
}

/// What the head of a request tells about it.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The path after the API prefix, e.g. `/normalization/apply`.
    pub path: &'a str,
    /// `Content-Length`, when declared.
    pub content_length: Option<u64>,
    pub upgrade: bool,
}

/// `None` for a light request; the operation and estimate of a heavy one. A body of unknown length
/// (chunked) is estimated at the largest one accepted, capped at the budget so that it can still run
/// alone. `light_max_bytes` 0 makes every processing request heavy.
pub fn classify(
    head: &RequestHead<'_>,
    light_max_bytes: u64,
    max_body_bytes: u64,
    budget_bytes: u64,
) -> Option<HeavyRequest> {
    if head.upgrade || head.method != Method::POST {
        return None;
    }
    let operation = head.path.trim_start_matches('/').trim_end_matches('/');
    memory_factor(operation)?;
    let estimate_bytes = match head.content_length {
        Some(len) if len < light_max_bytes => return None,
        // Over the body limit: the handler refuses it with 413 before reading, no slot needed.
        Some(len) if len > max_body_bytes => return None,
        Some(len) => estimate_bytes(operation, len),
        None => estimate_bytes(operation, max_body_bytes).min(budget_bytes),
    };
    Some(HeavyRequest { operation: operation.to_string(), estimate_bytes })
}

/// Middleware of the API scope: admits heavy requests (or refuses them) before their body is read.
pub async fn admit_heavy(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let config = &state.config;
    let path = req.path().strip_prefix(config.api.prefix.as_str()).unwrap_or(req.path());
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let head = RequestHead { method: req.method(), path, content_length, upgrade: req.head().upgrade() };
    let heavy = classify(
        &head,
        config.limits.light_request_max_kb.saturating_mul(1024),
        config.max_body_bytes(),
        state.admission.limits().memory_budget_bytes,
    );
    let Some(heavy) = heavy else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    match state.admission.admit(Origin::Rest, heavy.estimate_bytes).await {
        Ok(permit) => {
            state.admission.apply_test_hold().await;
            permit.scope(next.call(req)).await.map(ServiceResponse::map_into_boxed_body)
        }
        Err(refusal) => {
            log::warn!("{} refused: {}", heavy.operation, refusal.reason());
            Ok(refuse(req, &refusal, &state).await)
        }
    }
}

/// The refusal envelope, once the body is drained.
async fn refuse(req: ServiceRequest, refusal: &Refusal, state: &AppState) -> ServiceResponse<BoxBody> {
    let limits = state.admission.limits();
    let retry_after = limits.retry_after_seconds;
    let error = match refusal {
        Refusal::QueueFull | Refusal::QueueTimeout => ApiError::new(
            ErrorKind::Unavailable,
            format!("Server is busy processing other files; retry in {retry_after} s"),
        )
        .with_details(json!({
            "reason": refusal.reason(),
            "retry_after_seconds": retry_after,
            "max_concurrent_processing": limits.slots,
            "max_queued_processing": limits.max_queued,
            "queue_timeout_seconds": limits.queue_timeout.as_secs(),
        })),
        Refusal::OverBudget { estimate_bytes, budget_bytes } => ApiError::payload_too_large(format!(
            "This request needs an estimated {} MB of memory, more than the processing budget \
             limits.max_processing_memory_mb ({} MB); send a smaller file",
            estimate_bytes.div_ceil(MIB),
            budget_bytes / MIB
        ))
        .with_details(json!({
            "reason": refusal.reason(),
            "estimated_memory_mb": estimate_bytes.div_ceil(MIB),
            "max_processing_memory_mb": budget_bytes / MIB,
        })),
    };
    let (http_req, payload) = req.into_parts();
    drain(payload, state.config.max_body_bytes()).await;
    let unavailable = error.kind == ErrorKind::Unavailable;
    let mut res = ServiceResponse::from_err(error, http_req);
    if unavailable {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    res
}

/// Reads the body to its end and throws it away (up to `limit` bytes and [`MAX_DRAIN`]): a client still
/// sending when the answer arrives would otherwise see a reset instead of it.
async fn drain(mut payload: Payload, limit: u64) {
    let read_all = async {
        let mut seen: u64 = 0;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len() as u64;
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(MAX_DRAIN, read_all).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(method: &'a Method, path: &'a str, len: Option<u64>) -> RequestHead<'a> {
        RequestHead { method, path, content_length: len, upgrade: false }
    }

    #[test]
    fn processing_posts_are_heavy_unless_small() {
        let post = Method::POST;
        let get = Method::GET;
        let classify = |h: &RequestHead<'_>| classify(h, 256 * 1024, 50 * MIB, 1024 * MIB);
        let heavy = classify(&head(&post, "/normalization/apply", Some(10 * MIB))).unwrap();
        assert_eq!(heavy.operation, "normalization/apply");
        assert_eq!(heavy.estimate_bytes, estimate_bytes("normalization/apply", 10 * MIB));
        assert!(classify(&head(&post, "/csv/search/", Some(MIB))).is_some());
        assert!(classify(&head(&post, "/csv/info", Some(1000))).is_none(), "small body: light");
        assert!(classify(&head(&post, "/csv/info", Some(60 * MIB))).is_none(), "over the body limit: 413");
        assert!(classify(&head(&get, "/health", None)).is_none());
        assert!(classify(&head(&get, "/normalization/types", None)).is_none());
        assert!(classify(&head(&get, "/files/downloads/x.xlsx", None)).is_none());
        assert!(classify(&head(&post, "/chat/workflows", Some(MIB))).is_none());
        assert!(classify(&head(&post, "/chat/workflows/abc/upload", Some(MIB))).is_none());
        let mut ws = head(&get, "/ws", None);
        ws.upgrade = true;
        assert!(classify(&ws).is_none());
        // Unknown length: the largest body, capped at the budget.
        let chunked = classify(&head(&post, "/excel/search", None)).unwrap();
        assert_eq!(chunked.estimate_bytes, estimate_bytes("excel/search", 50 * MIB).min(1024 * MIB));
        // light_request_max_kb = 0: every processing request is heavy.
        assert!(super::classify(&head(&post, "/csv/info", Some(10)), 0, 50 * MIB, MIB).is_some());
    }
}
