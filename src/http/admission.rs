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

use crate::admission::{memory_factor, Origin, Refusal, TaskSpec, MIB};
use crate::error::{ApiError, ErrorKind};
use crate::AppState;

/// Longest time spent draining the body of a refused request (the body guard's minimum rate also applies).
const MAX_DRAIN: Duration = Duration::from_secs(30);

/// What the head of a request tells about it.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The path after the API prefix, e.g. `/normalization/apply`.
    pub path: &'a str,
    /// `Content-Length`, when declared.
    pub content_length: Option<u64>,
    pub upgrade: bool,
}

/// POST endpoints (paths of the API route tables) that are light on purpose: they store or read small
/// things, or hand work to a workflow whose steps pass admission themselves. Every other POST of the
/// route tables must be a heavy operation (`crate::admission::HEAVY_OPERATIONS`); a test checks that no
/// route is left out. GET, HEAD and DELETE are always light.
pub const LIGHT_POSTS: &[&str] = &[
    // A conversation: created, a file stored (streamed to disk), a workflow queued (its steps are
    // admitted one by one), a dump written, a job cancelled.
    "/chat/workflows",
    "/chat/workflows/{chat_id}/upload",
    "/chat/workflows/{chat_id}/execute",
    "/chat/workflows/{chat_id}/dump",
    "/chat/workflows/{chat_id}/jobs/{job_id}/cancel",
    "/chat/sqlite/backup",
    // The chatbot: small JSON messages; its uploads are stored like chat uploads.
    "/chat/bot/conversations",
    "/chat/bot/conversations/{chat_id}/message",
    "/chat/bot/conversations/{chat_id}/upload",
    "/chat/bot/conversations/{chat_id}/confirm",
];

/// `None` for a light request; the task of a heavy one. A body of unknown length (chunked) is taken as
/// the largest one accepted, its estimate capped at the budget so that it can still run alone.
/// `light_max_bytes` 0 makes every processing request heavy.
pub fn classify(
    head: &RequestHead<'_>,
    light_max_bytes: u64,
    max_body_bytes: u64,
    budget_bytes: u64,
) -> Option<TaskSpec> {
    if head.upgrade || head.method != Method::POST {
        return None;
    }
    let operation = head.path.trim_start_matches('/').trim_end_matches('/');
    memory_factor(operation)?;
    match head.content_length {
        Some(len) if len < light_max_bytes => None,
        // Over the body limit: the handler refuses it with 413 before reading, no slot needed.
        Some(len) if len > max_body_bytes => None,
        Some(len) => Some(TaskSpec::new(operation, len)),
        None => {
            let task = TaskSpec::new(operation, max_body_bytes);
            let capped = task.estimate_bytes.min(budget_bytes);
            Some(task.with_estimate(capped))
        }
    }
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
    let operation = heavy.operation.clone();
    match state.admission.admit(Origin::Rest, heavy).await {
        Ok(permit) => {
            state.admission.apply_test_hold().await;
            permit.scope(next.call(req)).await.map(ServiceResponse::map_into_boxed_body)
        }
        Err(refusal) => {
            log::warn!("{operation} refused: {}", refusal.reason());
            Ok(refuse(req, &refusal, &state).await)
        }
    }
}

/// The refusal envelope, once the body is drained.
async fn refuse(req: ServiceRequest, refusal: &Refusal, state: &AppState) -> ServiceResponse<BoxBody> {
    let limits = state.admission.limits();
    let retry_after = limits.retry_after_seconds(refusal, rand::random::<f64>());
    let error = match refusal {
        Refusal::QueueFull | Refusal::QueueTimeout | Refusal::PredictedTimeout { .. } => {
            let mut details = json!({
                "reason": refusal.reason(),
                "retry_after_seconds": retry_after,
                "max_concurrent_processing": limits.slots,
                "max_queued_processing": limits.max_queued,
                "queue_timeout_seconds": limits.queue_timeout.as_secs(),
            });
            if let Refusal::PredictedTimeout { predicted_wait_seconds } = refusal {
                details["predicted_wait_seconds"] = json!(predicted_wait_seconds);
            }
            ApiError::new(
                ErrorKind::Unavailable,
                format!("Server is busy processing other files; retry in {retry_after} s"),
            )
            .with_details(details)
        }
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
    use crate::admission::{estimate_bytes, HEAVY_OPERATIONS};
    use crate::http::routes::{api_tables, Verb};

    fn head<'a>(method: &'a Method, path: &'a str, len: Option<u64>) -> RequestHead<'a> {
        RequestHead { method, path, content_length: len, upgrade: false }
    }

    #[test]
    fn processing_posts_are_heavy_unless_small() {
        let post = Method::POST;
        let get = Method::GET;
        let classify = |h: &RequestHead<'_>| classify(h, 256 * 1024, 50 * MIB, 1024 * MIB);
        let heavy = classify(&head(&post, "/normalization/apply", Some(10 * MIB))).unwrap();
        assert_eq!(&*heavy.operation, "normalization/apply");
        assert_eq!(heavy.input_bytes, 10 * MIB);
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

    /// Every route of the API tables is classified: a POST is either a heavy operation (it has a memory
    /// factor, so the middleware admits it) or listed as light on purpose. A new processing route that
    /// is neither fails here instead of bypassing admission silently; stale entries fail too.
    #[test]
    fn every_api_route_has_an_admission_class() {
        let (post, get) = (Method::POST, Method::GET);
        let mut posts = std::collections::BTreeSet::new();
        for endpoint in api_tables().into_iter().flatten() {
            let len = Some(10 * MIB);
            match endpoint.verb {
                Verb::Post => {
                    let path = endpoint.path.trim_end_matches('/');
                    posts.insert(path);
                    let operation = path.trim_start_matches('/');
                    let heavy = memory_factor(operation).is_some();
                    let light = LIGHT_POSTS.contains(&path);
                    assert!(
                        heavy != light,
                        "POST {path} must be either a heavy operation (admission::HEAVY_OPERATIONS) or \
                         listed in LIGHT_POSTS, not {}",
                        if heavy { "both" } else { "neither" }
                    );
                    // The middleware's verdict on a 10 MiB body agrees with the tables.
                    let verdict = classify(&head(&post, endpoint.path, len), MIB, 50 * MIB, 1024 * MIB);
                    assert_eq!(verdict.is_some(), heavy, "POST {path}");
                }
                Verb::Get | Verb::Delete => {
                    let method = if endpoint.verb == Verb::Get { &get } else { &Method::DELETE };
                    assert!(classify(&head(method, endpoint.path, len), MIB, 50 * MIB, 1024 * MIB).is_none());
                }
            }
        }
        for operation in HEAVY_OPERATIONS {
            let path = format!("/{}", operation.name);
            assert!(posts.contains(path.as_str()), "no route for heavy {}", operation.name);
        }
        for path in LIGHT_POSTS {
            assert!(posts.contains(path), "LIGHT_POSTS names {path}, which is no POST route");
        }
    }
}
