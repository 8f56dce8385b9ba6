//! The bodies the gateway moves. [`GatewayBody`] is what clients receive: a
//! small fixed answer, or a replica's response streamed through frame by
//! frame, holding the replica's in-flight mark and its pooled connection until
//! the last byte, then handing the connection back to the pool.
//! [`UpstreamBody`] is what replicas receive: the client's body streamed, or,
//! when it is small and announced by `Content-Length`, read first so head and
//! body leave in one write (as nginx does).
//!
//! Only bodies up to [`SMALL_BODY`] are ever read whole (small responses are
//! read by the gateway and sent as [`GatewayBody::Full`]); this module must not
//! decide routing or retries.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::pool::Lease;
use crate::traffic::InFlight;

/// Bodies announced at most this long (by `Content-Length`) are read whole
/// before forwarding: requests to replicas and responses to clients alike.
pub(crate) const SMALL_BODY: u64 = 64 * 1024;

/// Read a small body whole. Stops as soon as hyper knows the body is
/// complete (its announced length has arrived) rather than waiting for the
/// connection task to close the stream, which would cost a round trip
/// through the scheduler on every request. Trailers are dropped (a body with
/// a `Content-Length` has none).
pub(crate) async fn read_whole(mut body: Incoming) -> Result<Bytes, hyper::Error> {
    use http_body_util::BodyExt as _;
    let mut read: Option<Bytes> = None;
    let mut joined = bytes::BytesMut::new();
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        // One chunk (the usual case) is passed on without a copy.
        match read.take() {
            None if joined.is_empty() => read = Some(data),
            None => joined.extend_from_slice(&data),
            Some(first) => {
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(read.unwrap_or_else(|| joined.freeze()))
}

/// A request body sent to a replica.
pub(crate) enum UpstreamBody {
    /// The client's body, streamed as it arrives.
    Streamed(Incoming),
    /// A small body, already read.
    Read(Option<Bytes>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Streamed(inner) => Pin::new(inner).poll_frame(cx),
            UpstreamBody::Read(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Streamed(inner) => inner.is_end_stream(),
            UpstreamBody::Read(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Streamed(inner) => inner.size_hint(),
            UpstreamBody::Read(Some(b)) => SizeHint::with_exact(b.len() as u64),
            UpstreamBody::Read(None) => SizeHint::with_exact(0),
        }
    }
}

/// A response body sent to a gateway client.
pub(crate) enum GatewayBody {
    /// A complete small body (errors, `/healthz`, `/metrics`).
    Full(Option<Bytes>),
    /// A page of [`crate::Pages`], whole or streamed.
    Page(crate::PageBody),
    /// A replica's response, streamed; `in_flight` and `lease` are released at its end.
    Upstream {
        inner: Incoming,
        in_flight: Option<InFlight>,
        lease: Option<Lease>,
    },
}

impl GatewayBody {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        GatewayBody::Full(Some(bytes.into()))
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            GatewayBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Page(page) => page
                .as_mut()
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            GatewayBody::Upstream {
                inner,
                in_flight,
                lease,
            } => {
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
                    // Release the replica as soon as it is done with us, not
                    // when hyper gets round to dropping the body.
                    Poll::Ready(None) => {
                        in_flight.take();
                        if let Some(lease) = lease.take() {
                            lease.release();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        in_flight.take();
                        lease.take();
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(bytes) => bytes.is_none(),
            GatewayBody::Page(page) => page.is_end_stream(),
            GatewayBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Page(page) => page.size_hint(),
            GatewayBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for GatewayBody {
    fn drop(&mut self) {
        // A body hyper never polled because it was empty (204, HEAD) still
        // leaves a reusable connection; a half-read one does not.
        if let GatewayBody::Upstream { inner, lease, .. } = self
            && inner.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.release();
        }
    }
}
