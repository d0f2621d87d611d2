//! Request bodies in transit on the REST port: a minimum transfer rate (a body that dribbles is cut off
//! with 408 and its partial upload removed) and a per-address cap on bodies in transit at once (429).
//! actix-web times out slow request *heads* only (`client_request_timeout`); a body that arrives at one
//! byte per second would otherwise hold its connection, its file descriptors and its temporary file for
//! as long as the client likes.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::HttpMessage;
use futures_util::Stream;
use serde_json::json;

use crate::error::{ApiError, ErrorKind};
use crate::AppState;

/// How long an abandoned body stays attached to its connection after the answer: while it is, actix
/// closes the connection once the answer is written instead of reading the rest of a chunked body.
const ABANDONED_BODY_HOLD: Duration = Duration::from_secs(10);
/// Bound of that list per worker thread (each entry holds at most actix's 32 KiB payload buffer).
const MAX_ABANDONED_PER_THREAD: usize = 1024;

/// Bodies in transit per client address, shared by every worker of the REST listener.
#[derive(Debug, Default)]
pub struct UploadSlots {
    in_transit: Mutex<HashMap<IpAddr, u64>>,
}

impl UploadSlots {
    /// A slot for one more body from `ip`, or `None` when it already has `limit` in transit (0 = no limit).
    fn try_acquire(self: &Arc<Self>, ip: IpAddr, limit: u64) -> Option<Slot> {
        let mut map = self.in_transit.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(Slot { slots: self.clone(), ip })
    }

    /// Bodies currently in transit from `ip`.
    pub fn in_transit(&self, ip: IpAddr) -> u64 {
        self.in_transit.lock().unwrap_or_else(|e| e.into_inner()).get(&ip).copied().unwrap_or(0)
    }
}

/// One body in transit; released when dropped.
struct Slot {
    slots: Arc<UploadSlots>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.slots.in_transit.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The minimum-rate rule of `file.upload_min_bytes_per_second` / `file.upload_rate_window_seconds`.
#[derive(Debug, Clone, Copy)]
struct RateRule {
    min_bytes_per_second: u64,
    window: Duration,
}

impl RateRule {
    fn bytes_per_window(&self) -> u64 {
        self.min_bytes_per_second.saturating_mul(self.window.as_secs())
    }
}

/// What the guarded body tells the middleware once the handler has answered.
#[derive(Debug, Default)]
struct Verdict {
    too_slow: AtomicBool,
    received: AtomicU64,
}

/// The request body, passed through while it keeps the minimum rate; a window that falls short ends it
/// with an I/O error (the handler's extractor fails, dropping any partial upload) and a verdict the
/// middleware turns into 408.
struct GuardedBody {
    inner: Option<Payload>,
    rule: RateRule,
    /// End of the current window; the first starts when the handler first reads, so time a request waits
    /// before its body is read (e.g. for admission) is not held against the client.
    window_end: Option<Pin<Box<tokio::time::Sleep>>>,
    window_bytes: u64,
    verdict: Arc<Verdict>,
    slot: Option<Slot>,
}

impl GuardedBody {
    /// Judges the window that just ended: `Err` when too little arrived, else a new window starts.
    fn close_window(&mut self) -> Result<(), PayloadError> {
        if self.window_bytes < self.rule.bytes_per_window() {
            self.verdict.too_slow.store(true, Ordering::Release);
            self.finish();
            return Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body below the minimum transfer rate",
            )));
        }
        self.window_bytes = 0;
        self.window_end = Some(Box::pin(tokio::time::sleep(self.rule.window)));
        Ok(())
    }

    /// The body is over (complete, failed or abandoned): the slot is free again.
    fn finish(&mut self) {
        self.slot = None;
        if let Some(payload) = self.inner.take() {
            hold_abandoned(payload);
        }
    }
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let window = this.rule.window;
        let window_end = this.window_end.get_or_insert_with(|| Box::pin(tokio::time::sleep(window)));
        let window_over = window_end.is_elapsed();
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.window_bytes += chunk.len() as u64;
                this.verdict.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if this.rule.min_bytes_per_second > 0 && window_over {
                    if let Err(e) = this.close_window() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                // Complete: nothing is left to hold on to.
                this.inner = None;
                this.slot = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if this.rule.min_bytes_per_second == 0 {
                    return Poll::Pending;
                }
                // Waiting for the client counts against its window; the timer wakes us when it ends.
                while this.window_end.as_mut().is_some_and(|end| end.as_mut().poll(cx).is_ready()) {
                    if let Err(e) = this.close_window() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

thread_local! {
    /// Abandoned bodies of this worker thread, oldest first (see [`hold_abandoned`]).
    static ABANDONED: RefCell<VecDeque<(Instant, Payload)>> = const { RefCell::new(VecDeque::new()) };
}

/// Keeps a body that was not read to its end attached for a while. A dropped chunked body would be
/// drained by actix for as long as the client keeps sending; an attached unread one makes actix close the
/// connection right after the answer instead. The payload belongs to its worker thread, so the hold is a
/// thread-local list.
fn hold_abandoned(payload: Payload) {
    ABANDONED.with(|held| {
        let mut held = held.borrow_mut();
        if held.len() >= MAX_ABANDONED_PER_THREAD {
            held.pop_front();
        }
        held.push_back((Instant::now(), payload));
    });
}

/// Lets go of abandoned bodies held longer than [`ABANDONED_BODY_HOLD`] (run for every request body).
fn release_abandoned() {
    let now = Instant::now();
    ABANDONED.with(|held| {
        let mut held = held.borrow_mut();
        while held.front().is_some_and(|(since, _)| now.duration_since(*since) > ABANDONED_BODY_HOLD) {
            held.pop_front();
        }
    });
}

/// True when the request carries a body (a length above zero, or chunked); upgrade requests never do.
fn has_body(req: &ServiceRequest) -> bool {
    if req.head().upgrade() {
        return false;
    }
    let headers = req.headers();
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    chunked || length.is_some_and(|n: u64| n > 0)
}

/// The client address a cap applies to: the peer, or the proxy-reported client when proxy headers are
/// trusted (`app.trust_proxy_headers`).
fn client_ip(req: &ServiceRequest, trust_proxy_headers: bool) -> Option<IpAddr> {
    if trust_proxy_headers {
        let info = req.connection_info();
        if let Some(ip) = info.realip_remote_addr().and_then(parse_ip) {
            return Some(ip);
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// `1.2.3.4`, `1.2.3.4:5`, `[::1]:5` or `::1`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| text.trim_start_matches('[').trim_end_matches(']').parse().ok())
}

/// Middleware of the REST app: refuses a body beyond the per-address cap (429) before reading it, and
/// answers 408 when the handler's body fell below the minimum rate.
pub async fn guard_bodies(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(state) = state.filter(|_| has_body(&req)) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    release_abandoned();
    let file = &state.config.file;
    let slot = match client_ip(&req, state.config.trust_proxy_headers()) {
        Some(ip) => {
            let limit = file.max_concurrent_uploads_per_ip;
            let slot = state.upload_slots.try_acquire(ip, limit).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::RateLimited,
                    format!("Too many uploads in progress from your address (at most {limit} at once)"),
                )
                .with_details(json!({ "max_concurrent_uploads_per_ip": limit }))
            })?;
            Some(slot)
        }
        None => None,
    };
    let rule = RateRule {
        min_bytes_per_second: file.upload_min_bytes_per_second,
        window: Duration::from_secs(file.upload_rate_window_seconds),
    };
    let verdict = Arc::new(Verdict::default());
    let body = GuardedBody {
        inner: Some(req.take_payload()),
        rule,
        window_end: None,
        window_bytes: 0,
        verdict: verdict.clone(),
        slot,
    };
    req.set_payload(Payload::Stream { payload: Box::pin(body) });
    let res = next.call(req).await;
    if verdict.too_slow.load(Ordering::Acquire) {
        // Whatever the handler made of the cut-off body, the answer is the timeout.
        let min = rule.min_bytes_per_second;
        let window = rule.window.as_secs();
        return Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!("Request body too slow: less than {min} bytes per second over {window} s"),
        )
        .with_details(json!({
            "min_bytes_per_second": min,
            "window_seconds": window,
            "received_bytes": verdict.received.load(Ordering::Relaxed),
        }))
        .into());
    }
    res.map(ServiceResponse::map_into_boxed_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_address_and_freed_on_drop() {
        let slots = Arc::new(UploadSlots::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.try_acquire(a, 2).unwrap();
        let _second = slots.try_acquire(a, 2).unwrap();
        assert!(slots.try_acquire(a, 2).is_none());
        assert!(slots.try_acquire(b, 2).is_some(), "other addresses are not affected");
        drop(first);
        assert_eq!(slots.in_transit(a), 1);
        assert!(slots.try_acquire(a, 2).is_some());
        assert!(slots.try_acquire(a, 0).is_some(), "0 = no limit");
    }

    #[test]
    fn proxy_reported_addresses_parse() {
        assert_eq!(parse_ip("1.2.3.4"), "1.2.3.4".parse().ok());
        assert_eq!(parse_ip("1.2.3.4:80"), "1.2.3.4".parse().ok());
        assert_eq!(parse_ip("[::1]:80"), "::1".parse().ok());
        assert_eq!(parse_ip("[::1]"), "::1".parse().ok());
        assert_eq!(parse_ip("unknown"), None);
    }
}
