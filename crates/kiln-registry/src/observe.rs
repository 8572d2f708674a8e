//! Observability, as one axum layer around the routes: an access-log event per request (target
//! `kiln_registry::access`), events for blob mounts and completed uploads (target `kiln_registry::event`),
//! and Prometheus metrics served at `GET /metrics`. Field and metric names: docs/registry-observability.md.
//!
//! Metrics use `prometheus-client`, the Prometheus project's own Rust client: its registry is a value
//! owned by each router instead of the process-wide recorder of the `metrics` crate, so several registries
//! in one process (the tests) keep separate counts, and it pulls in four small crates and no HTTP stack.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use kiln_oci::Digest;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::names::RepoName;
use crate::storage::{Storage, Usage};

/// The client's address, as axum's connect info (set by [`crate::serve`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

tokio::task_local! {
    /// The id of the request being answered: in its access-log line and in the log and body of a 5xx.
    static REQUEST_ID: String;
}

/// The id of the request the current task answers, when called while the routes handle one.
pub(crate) fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// What a request did to blobs, put in the response's extensions by the routes for the log and metrics.
#[derive(Debug, Clone)]
pub(crate) enum BlobEvent {
    /// A cross-repository mount linked `digest` of `from` into the request's repository.
    Mounted { from: RepoName, digest: Digest },
    /// An upload session completed as blob `digest` of `size` bytes.
    Uploaded { digest: Digest, size: u64 },
}

/// The authenticated user of a request, put in the response's extensions by the routes.
#[derive(Debug, Clone)]
pub(crate) struct User(pub(crate) String);

/// What the routes say about a path.
pub(crate) struct Described {
    /// The route template (`/v2/{name}/blobs/{digest}`), `unknown` for a path no route takes.
    pub(crate) route: &'static str,
    /// The repository, if the path names a valid one.
    pub(crate) repo: Option<RepoName>,
    /// Whether request bodies here are blob data (upload routes).
    pub(crate) blob_upload: bool,
    /// Whether response bodies of GETs here are blob data.
    pub(crate) blob_read: bool,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: &'static str,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Registers `m` as `name` (with its unit, which Prometheus appends to the name) and returns it.
fn register<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, m: M) -> M {
    match unit {
        Some(unit) => r.register_with_unit(name, help, unit, m.clone()),
        None => r.register(name, help, m.clone()),
    }
    m
}

/// [`register`] of a new default metric (a counter, gauge or family of them).
fn metric<M: Metric + Clone + Default>(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> M {
    register(r, name, help, unit, M::default())
}

/// How long a computed storage size is reused: walking a large root on every scrape would be costly.
const USAGE_TTL: Duration = Duration::from_secs(10);

/// The metrics of one router, and what the layer needs to log.
pub(crate) struct Observer {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_bytes: Family<RouteLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    blob_bytes_written: Counter,
    blob_bytes_served: Counter,
    uploads: Counter,
    mounts: Counter,
    storage_bytes: Gauge,
    storage_blobs: Gauge,
    storage: Arc<dyn Storage>,
    usage: Mutex<Option<(Instant, Option<Usage>)>>,
}

impl Observer {
    fn new(storage: Arc<dyn Storage>) -> Observer {
        let mut r = Registry::with_prefix("kiln_registry");
        let bytes = Some(Unit::Bytes);
        Observer {
            requests: metric(
                &mut r,
                "requests",
                "HTTP requests answered, by method, route template and status",
                None,
            ),
            request_bytes: metric(&mut r, "request", "Request body bytes received", bytes.clone()),
            response_bytes: metric(&mut r, "response", "Response body bytes sent", bytes.clone()),
            duration: register(
                &mut r,
                "request_duration",
                "Time from the request's arrival to the last byte of its response",
                Some(Unit::Seconds),
                Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            ),
            in_flight: metric(&mut r, "requests_in_flight", "Requests being answered", None),
            blob_bytes_written: metric(
                &mut r,
                "blob_written",
                "Blob bytes accepted into upload sessions (successful POST, PATCH and PUT bodies)",
                bytes.clone(),
            ),
            blob_bytes_served: metric(
                &mut r,
                "blob_served",
                "Blob bytes sent by blob GETs",
                bytes.clone(),
            ),
            uploads: metric(&mut r, "blob_uploads", "Upload sessions completed as blobs", None),
            mounts: metric(&mut r, "blob_mounts", "Cross-repository blob mounts", None),
            storage_bytes: metric(
                &mut r,
                "storage",
                "Bytes of stored blobs, manifests included (deduplicated across repositories)",
                bytes,
            ),
            storage_blobs: metric(&mut r, "storage_blobs", "Stored blobs, manifests included", None),
            registry: r,
            storage,
            usage: Mutex::new(None),
        }
    }

    /// The storage's usage, recomputed at most every [`USAGE_TTL`]; runs on the blocking pool.
    fn refresh_usage(&self) {
        let fresh = {
            let cached = self
                .usage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cached.as_ref().is_some_and(|(at, _)| at.elapsed() < USAGE_TTL)
        };
        if fresh {
            return;
        }
        let usage = match self.storage.usage() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure the storage for /metrics");
                None
            }
        };
        if let Some(u) = &usage {
            self.storage_bytes.set(i64::try_from(u.bytes).unwrap_or(i64::MAX));
            self.storage_blobs.set(i64::try_from(u.blobs).unwrap_or(i64::MAX));
        }
        *self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), usage));
    }
}

/// Adds `GET /metrics` and the observing layer to the registry's routes.
pub(crate) fn instrument(routes: axum::Router, storage: Arc<dyn Storage>) -> axum::Router {
    let observer = Arc::new(Observer::new(storage));
    routes
        .route(
            "/metrics",
            axum::routing::get(metrics).with_state(Arc::clone(&observer)),
        )
        .layer(axum::middleware::from_fn_with_state(observer, observe))
}

/// `GET /metrics`: the OpenMetrics text exposition (Prometheus scrapes it).
async fn metrics(State(observer): State<Arc<Observer>>) -> Response {
    let encoded = tokio::task::spawn_blocking(move || {
        observer.refresh_usage();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &observer.registry).map(|()| text)
    })
    .await;
    match encoded {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
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

/// The layer: counts the bodies, logs events and the access line, updates the metrics.
async fn observe(State(observer): State<Arc<Observer>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let path = request.uri().path().to_owned();
    let described = if path == "/metrics" {
        Described {
            route: "/metrics",
            repo: None,
            blob_upload: false,
            blob_read: false,
        }
    } else {
        crate::routes::describe(&path)
    };
    let client = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0);
    let received = Arc::new(AtomicU64::new(0));
    let request = request.map(|body| Body::new(Counted::new(body, Arc::clone(&received), None)));
    observer.in_flight.inc();
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    let user = response.extensions_mut().remove::<User>().map(|u| u.0);
    if let Some(event) = response.extensions_mut().remove::<BlobEvent>() {
        let repo = described.repo.as_ref().map(tracing::field::display);
        match event {
            BlobEvent::Mounted { from, digest } => {
                observer.mounts.inc();
                tracing::info!(
                    target: "kiln_registry::event",
                    event = %"blob_mount",
                    repo,
                    from = %from,
                    %digest,
                    client = client.map(tracing::field::display),
                    user = user.as_deref(),
                );
            }
            BlobEvent::Uploaded { digest, size } => {
                observer.uploads.inc();
                tracing::info!(
                    target: "kiln_registry::event",
                    event = %"blob_upload_complete",
                    repo,
                    %digest,
                    size,
                    client = client.map(tracing::field::display),
                    user = user.as_deref(),
                );
            }
        }
    }
    let done = Done {
        observer,
        id,
        method,
        path,
        described,
        client,
        user,
        status: response.status(),
        started,
        received,
    };
    // hyper stops polling once Content-Length bytes went out: that, too, is a complete response.
    let expected = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    response.map(|body| {
        let mut counted = Counted::new(body, Arc::new(AtomicU64::new(0)), Some(done));
        counted.expected = expected.or(counted.inner.size_hint().exact());
        Body::new(counted)
    })
}

/// Everything the access line needs once the response body has ended.
struct Done {
    observer: Arc<Observer>,
    /// The request id (see [`request_id`]).
    id: String,
    method: &'static str,
    path: String,
    described: Described,
    client: Option<SocketAddr>,
    user: Option<String>,
    status: StatusCode,
    started: Instant,
    received: Arc<AtomicU64>,
}

impl Done {
    /// Counts and logs the request; `error` is why its response body failed, if it did.
    fn finish(self, sent: u64, complete: bool, error: Option<&axum::Error>) {
        let o = &self.observer;
        let elapsed = self.started.elapsed();
        let received = self.received.load(Ordering::Relaxed);
        let route = self.described.route;
        let status = self.status.as_u16();
        let labels = RouteLabels {
            method: self.method,
            route,
        };
        o.requests
            .get_or_create(&RequestLabels {
                method: self.method,
                route,
                status,
            })
            .inc();
        o.request_bytes.get_or_create(&labels).inc_by(received);
        o.response_bytes.get_or_create(&labels).inc_by(sent);
        o.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if self.status.is_success() {
            match (self.method, self.described.blob_upload, self.described.blob_read) {
                ("POST" | "PATCH" | "PUT", true, _) => {
                    o.blob_bytes_written.inc_by(received);
                }
                ("GET", _, true) => {
                    o.blob_bytes_served.inc_by(sent);
                }
                _ => {}
            }
        }
        o.in_flight.dec();
        tracing::info!(
            target: "kiln_registry::access",
            request_id = %self.id,
            method = %self.method,
            route = %route,
            path = %self.path,
            repo = self.described.repo.as_ref().map(tracing::field::display),
            status,
            bytes_in = received,
            bytes_out = sent,
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            client = self.client.map(tracing::field::display),
            user = self.user.as_deref(),
            aborted = (!complete).then_some(true),
            error = error.map(tracing::field::display),
        );
    }
}

/// A body that counts its data bytes into `bytes`; with `done`, logs the request when it ends or is
/// dropped (a client that went away mid-download).
struct Counted {
    inner: Body,
    bytes: Arc<AtomicU64>,
    done: Option<Done>,
    /// The body's announced length.
    expected: Option<u64>,
}

impl Counted {
    fn new(inner: Body, bytes: Arc<AtomicU64>, done: Option<Done>) -> Counted {
        Counted {
            inner,
            bytes,
            done,
            expected: None,
        }
    }

    fn end(&mut self, complete: bool, error: Option<&axum::Error>) {
        if let Some(done) = self.done.take() {
            done.finish(self.bytes.load(Ordering::Relaxed), complete, error);
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if this.inner.is_end_stream() {
                    this.end(true, None);
                }
            }
            Poll::Ready(None) => this.end(true, None),
            Poll::Ready(Some(Err(e))) => this.end(false, Some(e)),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let complete =
            self.inner.is_end_stream() || self.expected == Some(self.bytes.load(Ordering::Relaxed));
        self.end(complete, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_a_bounded_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap_or_default()),
            "other"
        );
    }
}
