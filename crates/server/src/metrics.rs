//! Prometheus metrics: request counts and latency histograms by route and status, the
//! requests in flight, and the count of CSP violation reports. Each [`Metrics`] has its own registry (no global), so
//! several servers can live in one process (tests do).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use mailroom_storage::queue::{JobKind, KindDepth};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// One of the standard methods, or `other`: clients may invent methods.
    method: &'static str,
    /// The route's pattern (`/v1/keys/{id}`), never the raw path: raw paths would let any
    /// client create unbounded label values.
    route: String,
    status: u16,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The work queue by kind, as the database counted it at the scrape.
struct QueueGauges {
    queued: Family<KindLabels, Gauge>,
    running: Family<KindLabels, Gauge>,
    dead: Family<KindLabels, Gauge>,
    attempts: Family<KindLabels, Gauge>,
    oldest_due: Family<KindLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    durations: HistogramFamily,
    in_flight: Gauge,
    pub csp_reports: Counter,
    queue: QueueGauges,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mailroom");
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        // 1 ms to ~33 s.
        let durations: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by method, route and status",
            durations.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests received and not yet answered (a scrape counts itself)",
            in_flight.clone(),
        );
        let csp_reports = Counter::default();
        registry.register(
            "csp_reports",
            "Content-Security-Policy violation reports received from browsers",
            csp_reports.clone(),
        );
        let queue = QueueGauges {
            queued: Family::default(),
            running: Family::default(),
            dead: Family::default(),
            attempts: Family::default(),
            oldest_due: Family::default(),
        };
        let counts = [
            (
                "jobs_queued",
                "Jobs of the work queue waiting to run, by kind",
                &queue.queued,
            ),
            (
                "jobs_running",
                "Jobs of the work queue under a runner's lease, by kind",
                &queue.running,
            ),
            (
                "jobs_dead",
                "Jobs of the work queue that failed their last attempt, by kind",
                &queue.dead,
            ),
            (
                "jobs_attempts",
                "Attempts made by the jobs not yet finished, by kind",
                &queue.attempts,
            ),
        ];
        for (name, help, family) in counts {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "jobs_oldest_due_seconds",
            "How long the oldest due job has waited, by kind",
            queue.oldest_due.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            in_flight,
            csp_reports,
            queue,
        }
    }

    /// The queue as the database counts it now; every kind has its series, zero or not.
    pub fn record_queue(&self, depths: &[KindDepth]) {
        for kind in JobKind::ALL {
            let labels = KindLabels {
                kind: kind.as_str(),
            };
            let depth = depths
                .iter()
                .find(|depth| depth.kind == kind)
                .cloned()
                .unwrap_or(KindDepth {
                    kind,
                    queued: 0,
                    running: 0,
                    dead: 0,
                    attempts: 0,
                    oldest_due_ms: 0,
                });
            let queue = &self.queue;
            queue.queued.get_or_create(&labels).set(depth.queued);
            queue.running.get_or_create(&labels).set(depth.running);
            queue.dead.get_or_create(&labels).set(depth.dead);
            queue.attempts.get_or_create(&labels).set(depth.attempts);
            #[allow(clippy::cast_precision_loss)] // milliseconds, far below 2^52
            let oldest = depth.oldest_due_ms as f64 / 1000.0;
            queue.oldest_due.get_or_create(&labels).set(oldest);
        }
    }

    /// The registry in the text exposition format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts a request in flight until dropped: answered, or abandoned by its client.
struct InFlight(Gauge);

impl InFlight {
    fn start(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Runs the request, counting it in flight meanwhile, then by method, route and status.
    pub async fn track(&self, request: Request, next: Next) -> Response {
        let _in_flight = InFlight::start(&self.in_flight);
        let started = Instant::now();
        let method = method_label(request.method());
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
            .to_owned();
        let response = next.run(request).await;
        let labels = HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        response
    }
}
