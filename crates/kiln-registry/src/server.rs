//! The HTTP/1.1 server under the routes: connections accepted up to a cap, TLS handshakes, and per
//! connection a watchdog that cuts clients which hold a connection without using it (docs/registry-config.md,
//! `[http]`): no request for `idle_timeout`, request headers not complete `header_timeout` after their first
//! byte, a response the client has not read from for `stall_timeout`. A request body that sends nothing
//! for `stall_timeout` fails the request (its handler undoes what it wrote). Shutdown stops accepting, lets
//! requests in flight finish and closes idle connections.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http_body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use kiln_client::stall::ReadTimeout;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::observe::ClientAddr;

/// Connection limits (`kiln serve` flags and `[http]` keys; defaults in docs/registry-config.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, from their first byte; and a TLS
    /// handshake, from the connection's start.
    pub header_timeout: Duration,
    /// How long a connection may stay open with no request in flight and no byte of a new one.
    pub idle_timeout: Duration,
    /// How long a request body may send nothing, and a response may wait on a client that takes nothing,
    /// before the request fails and the connection is closed.
    pub stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// How [`serve`] serves: plain HTTP or TLS, and its limits.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Serve HTTPS with this configuration ([`crate::tls::server_config`]); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connection limits.
    pub limits: Limits,
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in flight finish. Access
/// logs name the client ([`ClientAddr`]).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = options.limits;
    let cap = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(cap));
    let tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // A free slot first: at the cap, new connections wait in the backlog, unaccepted.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => p.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (router, tls, stopped) = (router.clone(), tls.clone(), stopped.clone());
        tokio::spawn(async move {
            let _slot = permit;
            match tls {
                None => connection(tcp, peer, router, limits, stopped).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, peer, router, limits, stopped).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ignored = stop.send(true);
    // Every connection holds a slot: having them all back means every connection ended.
    let _all = permits.acquire_many(cap as u32).await;
    Ok(())
}

/// Why an idle connection is closed.
const IDLE: &str = "idle";

/// What a connection is doing, for its watchdog.
struct Activity {
    /// Requests handed to the routes whose response has not ended.
    requests: usize,
    /// Since when no request has been in flight.
    idle_since: Instant,
    /// When the first byte of the next request arrived (no request in flight).
    head_since: Option<Instant>,
    /// Since when a write waits for the client to take bytes.
    write_blocked_since: Option<Instant>,
}

/// One connection's [`Activity`], shared by its IO, its requests and its watchdog.
struct Watch {
    activity: Mutex<Activity>,
    changed: Notify,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            activity: Mutex::new(Activity {
                requests: 0,
                idle_since: Instant::now(),
                head_since: None,
                write_blocked_since: None,
            }),
            changed: Notify::new(),
        }
    }

    /// Changes the activity; `f` says whether that may bring the watchdog's deadline closer.
    fn change(&self, f: impl FnOnce(&mut Activity) -> bool) {
        let wake = f(&mut self
            .activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
        if wake {
            self.changed.notify_one();
        }
    }

    /// When the connection is to be cut and why, if it is.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let a = self
            .activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let waiting = (a.requests == 0).then(|| match a.head_since {
            Some(t) => (t + limits.header_timeout, "request headers incomplete"),
            None => (a.idle_since + limits.idle_timeout, IDLE),
        });
        let blocked = a
            .write_blocked_since
            .map(|t| (t + limits.stall_timeout, "the client stopped reading"));
        match (waiting, blocked) {
            (Some(w), Some(b)) => Some(if b.0 < w.0 { b } else { w }),
            (w, b) => w.or(b),
        }
    }

    /// Completes when the connection is to be cut, with the reason.
    async fn expired(&self, limits: &Limits) -> &'static str {
        loop {
            match self.deadline(limits) {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// Serves one connection until it ends, its watchdog cuts it, or shutdown closes it once idle.
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: axum::Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched {
        inner: io,
        watch: Arc::clone(&watch),
    });
    let requests = Arc::clone(&watch);
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        requests.change(|a| {
            a.requests += 1;
            a.head_since = None;
            false
        });
        let in_flight = InFlight(Arc::clone(&requests));
        let mut request =
            request.map(|body| Body::new(ReadTimeout::new(body, limits.stall_timeout, "the client")));
        request.extensions_mut().insert(ConnectInfo(ClientAddr(peer)));
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request)
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(Tracked {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let mut conn = pin!(
        hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, service)
    );
    let mut expired = pin!(watch.expired(&limits));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection failed");
                }
                return;
            }
            why = &mut expired => {
                // Idle keep-alive connections closing is routine; the others are clients misbehaving.
                if why == IDLE {
                    tracing::debug!(%peer, reason = why, "closing connection");
                } else {
                    tracing::info!(%peer, reason = why, "closing connection");
                }
                return;
            }
            changed = stopped.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A request in flight; its end (dropped with its response body, or with the handler) may make the
/// connection idle.
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.change(|a| {
            a.requests -= 1;
            if a.requests == 0 {
                a.idle_since = Instant::now();
                a.head_since = None;
            }
            a.requests == 0
        });
    }
}

/// A response body that keeps its request in flight until it ends or is dropped.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's IO, telling its [`Watch`] when a new request's first byte arrives and while writes wait
/// for the client.
struct Watched<IO> {
    inner: IO,
    watch: Arc<Watch>,
}

impl<IO> Watched<IO> {
    /// Records whether a write is waiting on the client.
    fn wrote<T>(&self, polled: Poll<T>) -> Poll<T> {
        let blocked = polled.is_pending();
        self.watch.change(|a| match (blocked, a.write_blocked_since) {
            (true, None) => {
                a.write_blocked_since = Some(Instant::now());
                true
            }
            (false, Some(_)) => {
                a.write_blocked_since = None;
                false
            }
            _ => false,
        });
        polled
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.change(|a| {
                let first = a.requests == 0 && a.head_since.is_none();
                if first {
                    a.head_since = Some(Instant::now());
                }
                first
            });
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
