//! The bodies the gateway moves. [`GatewayBody`] is what clients receive: a
//! small fixed answer, or a replica's response streamed through frame by
//! frame, holding the replica's in-flight mark and its pooled connection until
//! the last byte, then handing the connection back to the pool. What
//! replicas receive is [`crate::upstream::RequestBody`]: the client's body
//! streamed, or, when it is small and announced by `Content-Length`, read
//! first ([`read_whole`]) so head and body leave in one write (as nginx does).
//!
//! Only bodies up to [`SMALL_BODY`] are ever read whole (small responses are
//! read by the gateway and sent as [`GatewayBody::Full`]); this module must not
//! decide routing or retries.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::pool::{Conn, Pool};
use crate::server::ClientBody;
use crate::traffic::InFlight;
use crate::upstream::Decoder;

/// Bodies announced at most this long (by `Content-Length`) are read whole
/// before forwarding: requests to replicas and responses to clients alike.
pub(crate) const SMALL_BODY: u64 = 64 * 1024;

/// Read a small body whole (the server has read most already). Trailers
/// are dropped (a body with a `Content-Length` has none).
pub(crate) async fn read_whole(mut body: ClientBody) -> io::Result<Bytes> {
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

/// A response body sent to a gateway client.
pub(crate) enum GatewayBody {
    /// A complete small body (errors, `/healthz`, `/metrics`).
    Full(Option<Bytes>),
    /// A page of [`crate::Pages`], whole or streamed.
    Page(crate::PageBody),
    /// A replica's response, streamed from its connection.
    Upstream(Box<ReplicaBody>),
}

/// A replica's answer body read from its connection. At its end the
/// replica's in-flight mark is released and, when the connection may carry
/// another request, it goes back to the pool; a body cut short (an error,
/// or the client gone) closes the connection.
pub(crate) struct ReplicaBody {
    conn: Option<Conn>,
    decoder: Decoder,
    /// Where the connection goes back to: `None` when it must close.
    pool: Option<Arc<Pool>>,
    in_flight: Option<InFlight>,
}

impl ReplicaBody {
    pub(crate) fn new(
        conn: Conn,
        decoder: Decoder,
        pool: Option<Arc<Pool>>,
        in_flight: InFlight,
    ) -> Self {
        // A body delimited by the connection's close leaves nothing to reuse.
        let pool = pool.filter(|_| !decoder.closes());
        ReplicaBody {
            conn: Some(conn),
            decoder,
            pool,
            in_flight: Some(in_flight),
        }
    }

    /// The body ended: release the replica, keep a reusable connection.
    fn finish(&mut self, clean: bool) {
        self.in_flight.take();
        let conn = self.conn.take();
        if let (true, Some(conn), Some(pool)) = (clean, conn, self.pool.take()) {
            pool.checkin(conn);
        }
    }
}

impl Body for ReplicaBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = this.decoder.poll_data(&mut conn.stream, cx);
        match &polled {
            // Released as soon as the replica is done with us, not when
            // the server gets round to dropping the body.
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(Some(Ok(_))) if this.decoder.is_done() => this.finish(true),
            _ => {}
        }
        polled.map(|data| data.map(|data| data.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }
}

impl GatewayBody {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        GatewayBody::Full(Some(bytes.into()))
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            GatewayBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Page(page) => page
                .as_mut()
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            GatewayBody::Upstream(body) => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(bytes) => bytes.is_none(),
            GatewayBody::Page(page) => page.is_end_stream(),
            GatewayBody::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Page(page) => page.size_hint(),
            GatewayBody::Upstream(body) => body.size_hint(),
        }
    }
}
