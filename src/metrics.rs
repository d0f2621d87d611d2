//! Metrics for `GET /metrics` (OpenMetrics text, which Prometheus scrapes natively): HTTP request counts and
//! latencies recorded by the request-context middleware, and the WebSocket counters of websocket.md C.16,
//! read on each scrape from `Hub::stats()` (the one source of those numbers, also shown in the health check),
//! and the admission controller's running and queued heavy tasks, rejections and queue wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use serde_json::{json, Value};

use crate::admission::Admission;
use crate::events::Hub;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The matched route pattern (`/api/v1/files/downloads/{name}`), never the raw path: bounded cardinality.
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    requests_total: AtomicU64,
    client_errors_total: AtomicU64,
    server_errors_total: AtomicU64,
}

impl Metrics {
    /// `job_queue`: the cluster job queue's counters of this node (cluster mode only).
    pub fn new(
        hub: Arc<Hub>,
        admission: Arc<Admission>,
        job_queue: Option<Arc<crate::chat::queue::QueueStats>>,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("oxcelize");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered on the REST port", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time from request to response head on the REST port",
            Unit::Seconds,
            latency.clone(),
        );
        if let Some(bus) = hub.bus() {
            bus.register_metrics(&mut registry);
        }
        if let Some(stats) = job_queue {
            stats.register(&mut registry);
        }
        registry.register_collector(Box::new(HubCollector(hub)));
        registry.register_with_unit(
            "processing_queue_wait",
            "Time heavy tasks (processing requests, workflow steps) waited for admission",
            Unit::Seconds,
            admission.queue_wait_histogram(),
        );
        registry.register_collector(Box::new(AdmissionCollector(admission)));
        Metrics {
            registry,
            requests,
            latency,
            requests_total: AtomicU64::new(0),
            client_errors_total: AtomicU64::new(0),
            server_errors_total: AtomicU64::new(0),
        }
    }

    /// Records one answered request; `route` is the matched pattern (`None` for unmatched paths).
    pub fn observe_http(&self, method: &str, route: Option<&str>, status: u16, seconds: f64) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "OTHER",
        };
        let route = route.unwrap_or("unmatched").to_string();
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.clone(),
                status: status.to_string(),
            })
            .inc();
        self.latency.get_or_create(&RouteLabels { method: method.to_string(), route }).observe(seconds);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => self.client_errors_total.fetch_add(1, Ordering::Relaxed),
            500..=599 => self.server_errors_total.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// The text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// HTTP totals for the health details.
    pub fn http_summary(&self) -> Value {
        json!({
            "requests_total": self.requests_total.load(Ordering::Relaxed),
            "client_errors_total": self.client_errors_total.load(Ordering::Relaxed),
            "server_errors_total": self.server_errors_total.load(Ordering::Relaxed),
        })
    }
}

/// Exposes `Hub::stats()` on each scrape.
struct HubCollector(Arc<Hub>);

impl std::fmt::Debug for HubCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubCollector")
    }
}

/// (stats key, metric name without prefix, help, is a counter)
const HUB_METRICS: &[(&str, &str, &str, bool)] = &[
    ("connections", "ws_connections", "Open WebSocket connections", false),
    ("connections_bound", "ws_connections_bound", "Open connections with at least one subscription", false),
    ("connections_unbound", "ws_connections_unbound", "Open connections without a subscription", false),
    ("subscriptions", "ws_subscriptions", "Chat subscriptions of open connections", false),
    ("connections_opened_total", "ws_connections_opened", "Connections accepted", true),
    ("connections_refused_total", "ws_connections_refused", "Connections refused by a connection cap", true),
    ("events_published_total", "ws_events_published", "Chat-scoped events published", true),
    ("events_replayed_total", "ws_events_replayed", "Events replayed to resuming clients", true),
    ("progress_coalesced_total", "ws_progress_coalesced", "Progress events dropped as superseded", true),
    ("slow_consumer_closes_total", "ws_slow_consumer_closes", "Connections closed as slow consumers", true),
    ("rate_limited_total", "ws_rate_limit_rejections", "Inbound frames refused by the rate limit", true),
    ("auth_rejections_total", "ws_auth_rejections", "Connections refused for a missing or bad token", true),
    ("origin_rejections_total", "ws_origin_rejections", "Upgrades refused because of their Origin", true),
    ("queue_high_water_mark", "ws_queue_high_water_mark", "Deepest send queue seen (messages)", false),
];

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        for (key, name, help, counter) in HUB_METRICS {
            let value = stats.get(*key).and_then(Value::as_u64).unwrap_or(0);
            if *counter {
                let metric = ConstCounter::new(value);
                metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
            } else {
                let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
            }
        }
        if let Some(by_type) = stats.get("events_published_by_type").and_then(Value::as_object) {
            let mut family = encoder.encode_descriptor(
                "ws_events_published_by_type",
                "Chat-scoped events published, per event type",
                None,
                MetricType::Counter,
            )?;
            for (event_type, n) in by_type {
                let labels = [("type", event_type.as_str())];
                ConstCounter::new(n.as_u64().unwrap_or(0)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Exposes the admission controller's state on each scrape.
struct AdmissionCollector(Arc<Admission>);

impl std::fmt::Debug for AdmissionCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionCollector")
    }
}

impl Collector for AdmissionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        for (name, help, value) in [
            ("processing_running", "Heavy tasks running", s.running),
            ("processing_queued", "Heavy tasks waiting for a slot (requests and workflow steps)", s.queued),
            ("processing_slots", "Heavy tasks allowed at once (limits.max_concurrent_processing)", s.slots),
            (
                "processing_memory_reserved_bytes",
                "Sum of the memory estimates of running heavy tasks",
                s.reserved_bytes,
            ),
            (
                "processing_memory_budget_bytes",
                "limits.max_processing_memory_mb in bytes",
                s.memory_budget_bytes,
            ),
        ] {
            let metric = gauge(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let mut admitted = encoder.encode_descriptor(
            "processing_admitted",
            "Heavy tasks admitted, per origin",
            None,
            MetricType::Counter,
        )?;
        for (origin, n) in [("rest", s.admitted_rest), ("chat", s.admitted_chat)] {
            ConstCounter::new(n).encode(admitted.encode_family(&[("origin", origin)])?)?;
        }
        let mut rejected = encoder.encode_descriptor(
            "processing_rejections",
            "Processing requests refused by admission, per reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("queue_full", s.queue_full),
            ("queue_timeout", s.queue_timeout),
            ("predicted_timeout", s.predicted_timeout),
            ("over_budget", s.over_budget),
        ] {
            ConstCounter::new(n).encode(rejected.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}
