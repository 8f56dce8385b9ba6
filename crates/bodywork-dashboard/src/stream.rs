//! A log's live tail as server-sent events: [`ControlPlane::logs`] with
//! `follow`, each line one `data:` event (with its number as `id:`, so a
//! reconnecting `EventSource` goes on after the last line it had), and an
//! `end` event when the log ends. Nothing is escaped here: the page's
//! script inserts each line as text.
//!
//! The body reads from a bounded channel, filled by a future the
//! connection drives beside it ([`follow`]); when the client goes away the
//! connection ends, the future is dropped, and with it the follow.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bodywork_runtime::{ControlPlane, Log};
use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::{Body as _, Frame};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};

use crate::data::{LineSink, LogSubject};

/// Events waiting for a slow client; past this the stream ends (the page
/// says to reload).
const BUFFERED: usize = 1024;

/// How often a comment is sent while no line comes, so a client that went
/// away is noticed.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The body of a stream: the events as they come.
pub type EventBody =
    StreamBody<Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>>;

/// What drives a stream: following the log into the body's channel.
pub type Follow<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One line as an event: `id: N`, then a `data:` field per piece of the
/// line (a `\r` or `\n` in it would end a field).
pub fn event(id: usize, line: &str) -> Bytes {
    let mut out = format!("id: {id}\n");
    for piece in line.split(['\r', '\n']) {
        out.push_str("data: ");
        out.push_str(piece);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The `end` event, with why.
fn end(why: &str) -> Bytes {
    let why: String = why
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    Bytes::from(format!("event: end\ndata: {why}\n\n"))
}

/// The body of the stream of `subject`'s log in `namespace`, and the
/// future that fills it (to be driven with the connection, and dropped
/// with it). Lines numbered `after` or below are skipped (the page has
/// them). `permit` is held until the follow ends.
pub fn open<'a, C>(
    control: C,
    namespace: String,
    subject: LogSubject,
    after: usize,
    permit: OwnedSemaphorePermit,
) -> (EventBody, Follow<'a>)
where
    C: std::ops::Deref + Send + Sync + 'a,
    C::Target: ControlPlane,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(BUFFERED);
    let overflow = Arc::new((AtomicBool::new(false), Notify::new()));
    let sink: Log = {
        let tx = tx.clone();
        let overflow = overflow.clone();
        let count = AtomicUsize::new(0);
        Arc::new(LineSink::new(move |line| {
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            if n <= after || overflow.0.load(Ordering::Relaxed) {
                return;
            }
            if tx.try_send(event(n, &line)).is_err() {
                overflow.0.store(true, Ordering::Relaxed);
                overflow.1.notify_one();
            }
        }))
    };
    let follow = Box::pin(async move {
        let _permit = permit;
        let name = subject.name();
        let mut logs = std::pin::pin!(control.logs(&namespace, &name, true, &sink));
        let closed = tx.clone();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let why = loop {
            tokio::select! {
                result = &mut logs => break match result {
                    Ok(()) => "the log ended".to_string(),
                    Err(e) => bodywork_runtime::error_chain(&e).collect::<Vec<_>>().join(": "),
                },
                () = closed.closed() => return,
                () = overflow.1.notified() => {
                    break "the page read too slowly; reload it for the newer lines".to_string()
                }
                _ = heartbeat.tick() => {
                    if tx.send(Bytes::from_static(b": still here\n\n")).await.is_err() {
                        return;
                    }
                }
            }
        };
        let _ = tx.send(end(&why)).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|next| next.map(|b| Ok(Frame::data(b))))
    });
    (StreamBody::new(Box::pin(stream) as Pin<Box<_>>), follow)
}

/// `body` with `follow` driven by the body itself, each time it is
/// polled: for a server that cannot drive a follow beside its connection.
/// Dropping the body drops the follow.
pub fn driven(body: EventBody, follow: Follow<'static>) -> EventBody {
    let mut follow = Some(follow);
    let mut body = body;
    let stream = futures_util::stream::poll_fn(move |cx| {
        if let Some(f) = follow.as_mut()
            && f.as_mut().poll(cx).is_ready()
        {
            follow = None;
        }
        Pin::new(&mut body).poll_frame(cx).map(|next| {
            next.map(|frame| match frame {
                Ok(frame) => Ok(frame),
                Err(never) => match never {},
            })
        })
    });
    StreamBody::new(Box::pin(stream) as Pin<Box<_>>)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_is_one_event_and_a_break_in_it_another_field() {
        assert_eq!(
            &super::event(3, "<b>x</b>")[..],
            b"id: 3\ndata: <b>x</b>\n\n"
        );
        assert_eq!(&super::event(4, "a\rb")[..], b"id: 4\ndata: a\ndata: b\n\n");
        assert_eq!(&super::end("x\ny")[..], b"event: end\ndata: x y\n\n");
    }
}
