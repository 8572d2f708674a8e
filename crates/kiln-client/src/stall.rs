//! Progress as the timeout criterion ([`crate::ClientConfig::read_timeout`]): a request attempt fails when
//! no byte moves for that long, whether it is sending its body, waiting for the answer, or reading the
//! answer's body. A transfer of any size at any speed goes on as long as bytes move. [`ReadTimeout`] is
//! also what kiln-registry puts on request bodies.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// When a byte last moved for one request attempt.
pub(crate) struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte taken.
    last: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// When the last byte moved (the attempt's start if none has).
    pub(crate) fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// A request body that records each chunk the connection takes from it.
pub(crate) struct Sending {
    pub(crate) inner: reqwest::Body,
    pub(crate) activity: Arc<Activity>,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(Some(Ok(_)))) {
            self.activity.touch();
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

/// A body whose reads fail when `peer` sends nothing for `timeout` while the reader waits (kiln-client's
/// answers, kiln-registry's request bodies). The failure is an [`std::io::ErrorKind::TimedOut`] error
/// saying `PEER sent nothing for N s`.
pub struct ReadTimeout<B> {
    inner: B,
    timeout: Duration,
    peer: &'static str,
    /// Armed while the reader waits for the next frame.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> ReadTimeout<B> {
    /// `inner`, whose reads fail after `timeout` without a frame from `peer` (`"the registry"`).
    pub fn new(inner: B, timeout: Duration, peer: &'static str) -> ReadTimeout<B> {
        ReadTimeout {
            inner,
            timeout,
            peer,
            sleep: None,
        }
    }
}

impl<B> http_body::Body for ReadTimeout<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
                let message = format!("{} sent nothing for {} s", this.peer, timeout.as_secs_f64());
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, message);
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
