//! The gateway's HTTP/1.1 server side: reads each request from a client
//! connection, hands it to the handler and writes the answer, on the
//! connection's own task.
//!
//! - A request head is parsed with `httparse` into shared slices of the read
//!   buffer; a malformed one is a 400, one too long or with too many fields
//!   a 431, and the connection closes.
//! - Request bodies are framed by RFC 9112 §6: `Transfer-Encoding: chunked`
//!   (de-chunked), or `Content-Length`. A small body announced by its length
//!   is read before the handler runs; others stream ([`ClientBody`]), after
//!   a `100 Continue` when the client expects one.
//! - Answers are framed by their body: a known length, else chunked (close-
//!   delimited for an HTTP/1.0 client). A small answer leaves in one write.
//!   A `Date` is added where the answer has none.
//! - Keep-alive and pipelining by RFC 9112 §9.3; a connection is closed when
//!   no request head arrives within the idle timeout, and once the current
//!   answer is written after a shutdown.
//! - A client that goes away while a streamed answer is written (a live
//!   tail) ends the answer.
//!
//! It must not route, check hosts or rewrite headers: that is the handler's.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::{GatewayBody, SMALL_BODY};
use crate::deadline::Deadline;
use crate::forward;
use crate::upstream::{
    self, BodyKind, Decoder, Fill, KEEP_WRITE_BUFFER, MAX_HEAD, MAX_HEADERS, READ_CHUNK, Spans,
    itoa,
};

/// How long a connection accepted before a shutdown, whose first request
/// has not begun to arrive, is given for it.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// After an answer that leaves part of its request unread, how long the
/// connection is drained before it closes (so that the unread part does
/// not make the kernel reset the connection under the answer), and how much.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request's body as the handler gets it.
pub struct ClientBody(Kind);

enum Kind {
    Empty,
    /// Read already.
    Full(Option<Bytes>),
    /// Read from the connection as the handler asks for it.
    Streamed(Box<Streamed>),
}

/// A body being read from the client's connection. Its read buffer goes
/// back to the connection once the body has been read to its end; a body
/// left unfinished leaves the connection to be closed.
struct Streamed {
    reader: Reader,
    decoder: Decoder,
    /// How much of [`CONTINUE`] is still to be written before the body is read.
    expect: usize,
    back: Arc<Mutex<Option<BytesMut>>>,
    returned: bool,
}

/// The client connection's read side and its buffer.
struct Reader {
    io: Arc<TcpStream>,
    buf: BytesMut,
}

impl Fill for Reader {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            match self.io.try_read_buf(&mut self.buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                read => return Poll::Ready(read),
            }
        }
    }

    fn message(&self) -> &'static str {
        "request"
    }
}

impl ClientBody {
    fn empty() -> Self {
        ClientBody(Kind::Empty)
    }
}

impl Streamed {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        while self.expect > 0 {
            ready!(self.reader.io.poll_write_ready(cx))?;
            let sent = CONTINUE.len() - self.expect;
            match self.reader.io.try_write(&CONTINUE[sent..]) {
                Ok(written) => self.expect -= written,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(Some(Err(err))),
            }
        }
        let polled = self.decoder.poll_data(&mut self.reader, cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.decoder.is_done(),
            _ => false,
        };
        if ended && !self.returned {
            self.returned = true;
            if let Ok(mut slot) = self.back.lock() {
                *slot = Some(std::mem::take(&mut self.reader.buf));
            }
        }
        polled
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Streamed(body) => body
                .poll_data(cx)
                .map(|data| data.map(|data| data.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Streamed(body) => body.returned,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty | Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Streamed(body) => body.decoder.size_hint(),
        }
    }
}

/// What the handler is asked for a request it cannot be given: the status
/// and why (`400`: malformed; `431`: too long).
pub(crate) type Refuse = fn(StatusCode, &str) -> Response<GatewayBody>;

/// Serve one client connection until it closes, goes idle for `idle`, or
/// `stop` fires (the request under way is answered first). `deadline` is
/// the connection's: the server sets it while it waits for a request, the
/// handler while it serves one.
pub(crate) async fn serve<H, F>(
    stream: TcpStream,
    idle: Duration,
    deadline: &Deadline,
    stop: CancellationToken,
    mut handle: H,
    refuse: Refuse,
) where
    H: FnMut(Request<ClientBody>) -> F,
    F: Future<Output = Response<GatewayBody>>,
{
    let mut conn = Conn {
        io: Arc::new(stream),
        buf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::new(),
        idle,
        deadline,
        stopping: false,
        served: 0,
        spans: Spans::default(),
    };
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    loop {
        let head = match conn.next_head(cancelled.as_mut()).await {
            Next::Head(head) => head,
            Next::Closed => return,
            Next::Refused(status, why) => return conn.refuse(refuse(status, &why)).await,
        };
        conn.served += 1;
        let asked = Asked {
            head: head.method == Method::HEAD,
            version: head.version,
            keep_alive: forward::keeps_alive(head.version, &head.headers),
        };
        let (body, back) = match conn.body(&head).await {
            Ok(body) => body,
            Err(Closing::Quietly) => return,
            Err(Closing::Refuse(status, why)) => return conn.refuse(refuse(status, &why)).await,
        };
        let mut request = Request::new(body);
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        let answer = handle(request).await;
        // Writing the answer has no deadline (a live tail may last hours).
        deadline.clear();
        conn.stopping |= stop.is_cancelled();
        let keep = match conn.answer(answer, &asked, back.as_ref()).await {
            Ok(keep) => keep,
            Err(err) => {
                tracing::debug!("a gateway client connection ended: {err}");
                return;
            }
        };
        // The request's body, if it streamed, must have been read to its
        // end for the next request to start where it ends.
        if let Some(back) = back {
            match back.lock().ok().and_then(|mut slot| slot.take()) {
                Some(buf) => conn.buf = buf,
                None => {
                    conn.linger().await;
                    return;
                }
            }
        }
        if !keep {
            conn.linger().await;
            return;
        }
    }
}

/// One client connection.
struct Conn<'d> {
    io: Arc<TcpStream>,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The next answer's head (and small body).
    out: Vec<u8>,
    idle: Duration,
    /// When a wait for the client ends.
    deadline: &'d Deadline,
    /// A shutdown was seen: the answer under way is the last.
    stopping: bool,
    /// Requests read so far.
    served: u64,
    spans: Spans,
}

/// A request head, parsed.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

enum Next {
    Head(Head),
    /// The client closed, went idle, or a shutdown came between requests.
    Closed,
    Refused(StatusCode, String),
}

enum Closing {
    /// The client went away (or idle) in the middle of its body.
    Quietly,
    Refuse(StatusCode, String),
}

/// What the answer depends on of its request.
struct Asked {
    head: bool,
    version: Version,
    keep_alive: bool,
}

impl Asked {
    /// A request refused before it could be read: its answer closes.
    fn refused() -> Self {
        Asked {
            head: false,
            version: Version::HTTP_11,
            keep_alive: false,
        }
    }
}

/// How an answer's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (a `HEAD` request's answer, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, unknown length).
    Close,
}

impl Framing {
    /// The framing of an answer with `status` and `body` to a request as `asked`.
    fn of(status: StatusCode, body: &GatewayBody, asked: &Asked) -> Framing {
        if asked.head
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Framing::None;
        }
        match body.size_hint().exact() {
            Some(len) => Framing::Length(len),
            None if asked.version == Version::HTTP_11 => Framing::Chunked,
            None => Framing::Close,
        }
    }
}

impl Conn<'_> {
    /// Read the next request head: the wait ends at the idle timeout, or at
    /// a shutdown when no request has begun (a connection's first request
    /// gets [`FIRST_REQUEST_GRACE`] to begin).
    async fn next_head(
        &mut self,
        mut cancelled: Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
    ) -> Next {
        self.deadline.set(Instant::now() + self.idle);
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf, &mut self.spans) {
                    Ok(Some(head)) => return Next::Head(head),
                    Ok(None) if self.buf.len() >= MAX_HEAD => {
                        return Next::Refused(
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            format!("the request head is longer than {} KiB", MAX_HEAD / 1024),
                        );
                    }
                    Ok(None) => {}
                    Err((status, why)) => return Next::Refused(status, why),
                }
            } else if self.stopping && self.served > 0 {
                return Next::Closed;
            }
            self.buf.reserve(READ_CHUNK);
            match self.io.try_read_buf(&mut self.buf) {
                Ok(0) => return Next::Closed,
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => {
                    tracing::debug!("a gateway client connection failed: {err}");
                    return Next::Closed;
                }
            }
            if !self.wait_readable(Some(cancelled.as_mut())).await {
                return Next::Closed;
            }
        }
    }

    /// Wait until the connection is readable: false once the deadline
    /// passed. A shutdown while no request has begun ends a connection that
    /// has served one, and gives one that has not a short grace.
    async fn wait_readable(
        &mut self,
        mut cancelled: Option<Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>>,
    ) -> bool {
        loop {
            let watch_stop = !self.stopping && cancelled.is_some();
            tokio::select! {
                biased;
                ready = self.io.readable() => return ready.is_ok(),
                () = self.deadline.passed() => return false,
                () = async { if let Some(c) = cancelled.as_mut() { c.as_mut().await } }, if watch_stop => {
                    self.stopping = true;
                    if self.buf.is_empty() {
                        if self.served > 0 {
                            return false;
                        }
                        let grace = Instant::now() + FIRST_REQUEST_GRACE;
                        self.deadline.set(self.deadline.at().map_or(grace, |at| at.min(grace)));
                    }
                }
            }
        }
    }

    /// The request's body: read now when small and announced by its
    /// length, else streamed (with where its buffer comes back).
    async fn body(
        &mut self,
        head: &Head,
    ) -> Result<(ClientBody, Option<Arc<Mutex<Option<BytesMut>>>>), Closing> {
        let kind =
            request_body_kind(head).map_err(|why| Closing::Refuse(StatusCode::BAD_REQUEST, why))?;
        let expect = head.version == Version::HTTP_11
            && head
                .headers
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        match kind {
            BodyKind::Empty => Ok((ClientBody::empty(), None)),
            BodyKind::Length(len) if len <= SMALL_BODY && !expect => {
                let len = len as usize;
                self.deadline.set(Instant::now() + self.idle);
                while self.buf.len() < len {
                    self.buf.reserve(len - self.buf.len());
                    match self.io.try_read_buf(&mut self.buf) {
                        Ok(0) => return Err(Closing::Quietly),
                        Ok(_) => continue,
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Closing::Quietly),
                    }
                    if !self.wait_readable(None).await {
                        return Err(Closing::Quietly);
                    }
                }
                let read = self.buf.split_to(len).freeze();
                Ok((ClientBody(Kind::Full(Some(read))), None))
            }
            kind => {
                let back = Arc::new(Mutex::new(None));
                let body = Streamed {
                    reader: Reader {
                        io: self.io.clone(),
                        buf: std::mem::take(&mut self.buf),
                    },
                    decoder: Decoder::new(kind),
                    expect: if expect { CONTINUE.len() } else { 0 },
                    back: back.clone(),
                    returned: false,
                };
                Ok((ClientBody(Kind::Streamed(Box::new(body))), Some(back)))
            }
        }
    }

    /// Write `answer`; whether the connection may carry another request.
    /// `streaming`: the request's body is still being read (its buffer not
    /// back yet), so the connection's read side is not this task's.
    async fn answer(
        &mut self,
        answer: Response<GatewayBody>,
        asked: &Asked,
        streaming: Option<&Arc<Mutex<Option<BytesMut>>>>,
    ) -> io::Result<bool> {
        let (parts, mut body) = answer.into_parts();
        let status = parts.status;
        let framing = Framing::of(status, &body, asked);
        let keep = asked.keep_alive && !self.stopping && framing != Framing::Close;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        encode_head(
            &mut out,
            status,
            &parts.headers,
            framing,
            &body,
            asked,
            keep,
        );
        let written = match (&mut body, framing) {
            (GatewayBody::Full(bytes), Framing::Length(_)) => {
                if let Some(bytes) = bytes.take() {
                    out.extend_from_slice(&bytes);
                }
                write_all(&self.io, &out).await
            }
            (_, Framing::None) => write_all(&self.io, &out).await,
            _ => match write_all(&self.io, &out).await {
                Ok(()) => {
                    let watch = streaming
                        .is_none_or(|slot| slot.lock().map(|s| s.is_some()).unwrap_or(false));
                    self.stream_body(&mut body, framing, watch).await
                }
                err => err,
            },
        };
        if out.capacity() <= KEEP_WRITE_BUFFER {
            self.out = out;
        }
        written.map(|()| keep)
    }

    /// Write a streamed answer's body frame by frame. While `watch`, a
    /// client that closes its side ends it (a live tail would otherwise
    /// wait on for its next line).
    async fn stream_body(
        &mut self,
        body: &mut GatewayBody,
        framing: Framing,
        mut watch: bool,
    ) -> io::Result<()> {
        let mut body = Pin::new(body);
        loop {
            let frame = tokio::select! {
                biased;
                frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)) => frame,
                ready = self.io.readable(), if watch => {
                    ready?;
                    if self.buf.len() >= MAX_HEAD {
                        // Pipelined requests pile up: leave them in the kernel.
                        watch = false;
                        continue;
                    }
                    self.buf.reserve(READ_CHUNK);
                    match self.io.try_read_buf(&mut self.buf) {
                        Ok(0) => return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the client went away")),
                        Ok(_) => {}
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(err) => return Err(err),
                    }
                    continue;
                }
            };
            match frame {
                None => {
                    if framing == Framing::Chunked {
                        write_all(&self.io, b"0\r\n\r\n").await?;
                    }
                    return Ok(());
                }
                Some(Err(err)) => return Err(err),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if framing == Framing::Chunked {
                        let mut piece = Vec::with_capacity(data.len() + 20);
                        piece.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        piece.extend_from_slice(&data);
                        piece.extend_from_slice(b"\r\n");
                        write_all(&self.io, &piece).await?;
                    } else {
                        write_all(&self.io, &data).await?;
                    }
                }
            }
        }
    }

    /// Answer a request that could not be read, and close.
    async fn refuse(mut self, answer: Response<GatewayBody>) {
        let _ = self.answer(answer, &Asked::refused(), None).await;
        self.linger().await;
    }

    /// Close after draining what the client still sends, for a moment, so
    /// that the answer just written is not lost to a reset.
    async fn linger(self) {
        let Ok(stream) = Arc::try_unwrap(self.io) else {
            return;
        };
        let mut stream = stream;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut drained = 0;
        let mut sink = [0u8; 8192];
        let until = Instant::now() + LINGER;
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(until, stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => return,
            }
        }
    }
}

/// Write all of `data`.
async fn write_all(io: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match io.try_write(data) {
            Ok(written) => data = &data[written..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Parse and consume one request head from the front of `buf`; `None`
/// while it is incomplete.
fn parse_head(buf: &mut BytesMut, spans: &mut Spans) -> Result<Option<Head>, (StatusCode, String)> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request has more than {MAX_HEADERS} header fields"),
            ));
        }
        Err(err) => return Err(bad(format!("the request head is malformed: {err}"))),
    };
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|err| bad(format!("the request method is not valid: {err}")))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let target = parsed.path.unwrap_or("");
    let base = buf.as_ptr() as usize;
    let target = (target.as_ptr() as usize - base, target.len());
    spans.take(buf, parsed.headers);
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
        .map_err(|err| bad(format!("the request target is not valid: {err}")))?;
    let headers = spans
        .header_map(&head, "request")
        .map_err(|err| bad(err.to_string()))?;
    Ok(Some(Head {
        method,
        uri,
        version,
        headers,
    }))
}

/// How a request's body is delimited (RFC 9112 §6.3): a transfer coding
/// must end with `chunked` and come without a `Content-Length` (which could
/// smuggle a second request), and only from an HTTP/1.1 client.
fn request_body_kind(head: &Head) -> Result<BodyKind, String> {
    if head.headers.contains_key(header::TRANSFER_ENCODING) {
        if head.version != Version::HTTP_11 {
            return Err("an HTTP/1.0 request cannot have a transfer coding".into());
        }
        if !upstream::ends_chunked(&head.headers) {
            return Err("the request's transfer coding does not end with chunked".into());
        }
        if head.headers.contains_key(header::CONTENT_LENGTH) {
            return Err("the request has both a transfer coding and a content-length".into());
        }
        return Ok(BodyKind::Chunked);
    }
    match upstream::content_length(&head.headers, "request") {
        Ok(Some(0) | None) => Ok(BodyKind::Empty),
        Ok(Some(len)) => Ok(BodyKind::Length(len)),
        Err(err) => Err(err.to_string()),
    }
}

/// The answer's status line and header fields, with its framing, `Date`
/// (when it has none) and the connection's fate.
fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    body: &GatewayBody,
    asked: &Asked,
    keep: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // A HEAD request's answer (and a 304's) says the length the body would
    // have: the replica's, else ours.
    let says_length =
        framing == Framing::None && status != StatusCode::NO_CONTENT && !status.is_informational();
    let mut dated = false;
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || (name == header::CONTENT_LENGTH && !says_length)
        {
            continue;
        }
        dated |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let length = match framing {
        Framing::Length(len) => Some(len),
        Framing::None if says_length && !headers.contains_key(header::CONTENT_LENGTH) => match body
        {
            GatewayBody::Full(_) => body.size_hint().exact(),
            _ => None,
        },
        _ => None,
    };
    if let Some(len) = length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa(len, &mut [0u8; 20]));
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        now_http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    } else if asked.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The current second as an HTTP date, formatted once per second.
    static DATE: std::cell::RefCell<(u64, [u8; 29])> = const { std::cell::RefCell::new((u64::MAX, [0; 29])) };
}

/// Pass the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) to `f`.
fn now_http_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = second;
            } else {
                return f(text.as_bytes());
            }
        }
        f(&cached.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    fn head_of(text: &str) -> Result<Option<Head>, (StatusCode, String)> {
        parse_head(&mut BytesMut::from(text), &mut Spans::default())
    }

    fn refused(status: StatusCode, why: &str) -> Response<GatewayBody> {
        let mut answer = Response::new(GatewayBody::full(why.to_string()));
        *answer.status_mut() = status;
        answer
    }

    #[test]
    fn a_request_head_is_parsed_and_consumed_leaving_what_follows() {
        let mut buf = BytesMut::from(
            "POST /ns/svc/x?y=1 HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody",
        );
        let head = parse_head(&mut buf, &mut Spans::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/ns/svc/x");
        assert_eq!(head.uri.query(), Some("y=1"));
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers["host"], "localhost");
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(&buf[..], b"body");
        assert!(head_of("GET / HTTP/1.1\r\nHost: loc").unwrap().is_none());
        assert_eq!(
            head_of("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().version,
            Version::HTTP_10
        );
    }

    #[test]
    fn a_malformed_head_is_400_and_one_with_too_many_fields_431() {
        for bad in [
            "GET / HTTP/2.0\r\n\r\n",
            "GET / HTTP/1.1\r\nbad header\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
        ] {
            let Err((status, why)) = head_of(bad) else {
                panic!("{bad:?} parsed");
            };
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {why}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        let Err((status, _)) = head_of(&format!("GET / HTTP/1.1\r\n{many}\r\n")) else {
            panic!("parsed");
        };
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn request_bodies_are_framed_by_rfc_9112_and_smuggling_is_refused() {
        let kind = |text: &str| request_body_kind(&head_of(text).unwrap().unwrap());
        assert_eq!(kind("GET / HTTP/1.1\r\n\r\n"), Ok(BodyKind::Empty));
        assert_eq!(
            kind("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(BodyKind::Empty)
        );
        assert_eq!(
            kind("POST / HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n"),
            Ok(BodyKind::Length(12))
        );
        assert_eq!(
            kind("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(BodyKind::Chunked)
        );
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(kind(bad).is_err(), "{bad:?}");
        }
    }

    fn encoded(status: u16, headers: &[(&str, &str)], body: GatewayBody, asked: Asked) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let status = StatusCode::from_u16(status).unwrap();
        let framing = Framing::of(status, &body, &asked);
        let keep = asked.keep_alive;
        let mut out = Vec::new();
        encode_head(&mut out, status, &map, framing, &body, &asked, keep);
        String::from_utf8(out).unwrap()
    }

    fn asked(head: bool, version: Version, keep_alive: bool) -> Asked {
        Asked {
            head,
            version,
            keep_alive,
        }
    }

    #[test]
    fn an_answer_head_carries_its_own_framing_a_date_and_the_connections_fate() {
        let text = encoded(
            200,
            &[
                ("content-type", "text/plain"),
                ("content-length", "99"),
                ("transfer-encoding", "chunked"),
            ],
            GatewayBody::full("hello"),
            asked(false, Version::HTTP_11, true),
        );
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"),
            "{text}"
        );
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert!(!text.contains("99") && !text.contains("chunked"), "{text}");
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(!text.contains("connection"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        // A HEAD request's answer keeps the length the replica said.
        let text = encoded(
            200,
            &[
                ("content-length", "99"),
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ],
            GatewayBody::Full(None),
            asked(true, Version::HTTP_11, false),
        );
        assert!(text.contains("content-length: 99\r\n"), "{text}");
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        // ... or ours, when it said none; a 204 has none.
        let text = encoded(
            404,
            &[],
            GatewayBody::full("{}"),
            asked(true, Version::HTTP_11, true),
        );
        assert!(text.contains("content-length: 2\r\n"), "{text}");
        let text = encoded(
            204,
            &[("content-length", "0")],
            GatewayBody::Full(None),
            asked(false, Version::HTTP_11, true),
        );
        assert!(!text.contains("content-length"), "{text}");
        // An HTTP/1.0 client kept alive is told so.
        let text = encoded(
            200,
            &[],
            GatewayBody::full("x"),
            asked(false, Version::HTTP_10, true),
        );
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(
            itoa(u64::MAX, &mut [0; 20]),
            u64::MAX.to_string().as_bytes()
        );
    }

    /// A server on a free port answering each request with its method,
    /// path and body ("POST /x 5:hello"), reading the body only when the
    /// path is not `/unread`, and streaming `/tail` until the client goes.
    async fn server(
        idle: Duration,
    ) -> (
        std::net::SocketAddr,
        CancellationToken,
        tokio::sync::mpsc::UnboundedReceiver<&'static str>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (events, seen) = tokio::sync::mpsc::unbounded_channel();
        let token = stop.clone();
        // The worker's tick, as the gateway's acceptor sends it.
        let deadlines = Arc::new(crate::deadline::Deadlines::new());
        tokio::spawn({
            let deadlines = deadlines.clone();
            async move {
                let mut tick = tokio::time::interval(crate::deadline::TICK);
                loop {
                    tick.tick().await;
                    deadlines.tick();
                }
            }
        });
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let events = events.clone();
                let deadline = deadlines.register();
                let token = token.clone();
                tokio::spawn(async move {
                    serve(
                        stream,
                        idle,
                        &deadline,
                        token,
                        move |request: Request<ClientBody>| {
                            let events = events.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                if parts.uri.path() == "/tail" {
                                    let tail = Tail {
                                        lines: Some(Bytes::from_static(b"line\n")),
                                        events,
                                    };
                                    return Response::new(GatewayBody::Page(Box::pin(tail)));
                                }
                                let read = if parts.uri.path() == "/unread" {
                                    Bytes::new()
                                } else {
                                    crate::body::read_whole(body).await.unwrap_or_default()
                                };
                                let text = format!(
                                    "{} {} {}:{}",
                                    parts.method,
                                    parts.uri.path(),
                                    read.len(),
                                    String::from_utf8_lossy(&read)
                                );
                                Response::new(GatewayBody::full(text))
                            }
                        },
                        refused,
                    )
                    .await;
                });
            }
        });
        (addr, stop, seen)
    }

    /// A live tail: one line, then nothing until it is dropped (which it says).
    struct Tail {
        lines: Option<Bytes>,
        events: tokio::sync::mpsc::UnboundedSender<&'static str>,
    }

    impl Body for Tail {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.get_mut().lines.take() {
                Some(line) => Poll::Ready(Some(Ok(Frame::data(line)))),
                None => Poll::Pending,
            }
        }
    }

    impl Drop for Tail {
        fn drop(&mut self) {
            let _ = self.events.send("tail dropped");
        }
    }

    /// Everything the server sends until it closes (or `within` passes).
    async fn read_all(conn: &mut TcpStream, within: Duration) -> String {
        let mut all = Vec::new();
        let _ = tokio::time::timeout(within, conn.read_to_end(&mut all)).await;
        String::from_utf8_lossy(&all).into_owned()
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_with_their_bodies() {
        let (addr, _stop, _) = server(Duration::from_secs(10)).await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n\
              GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let all = read_all(&mut conn, Duration::from_secs(10)).await;
        let bodies: Vec<&str> = all
            .split("HTTP/1.1 200 OK\r\n")
            .skip(1)
            .map(|answer| answer.split("\r\n\r\n").nth(1).unwrap())
            .collect();
        assert_eq!(
            bodies,
            [
                "POST /a 5:hello",
                "GET /b 0:",
                "POST /c 5:abcde",
                "GET /d 0:"
            ],
            "{all}"
        );
        assert_eq!(all.matches("connection: close").count(), 1, "{all}");
    }

    #[tokio::test]
    async fn a_client_expecting_100_continue_gets_it_before_sending_its_body() {
        let (addr, _stop, _) = server(Duration::from_secs(10)).await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            b"PUT /e HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
        let mut interim = [0u8; CONTINUE.len()];
        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut interim))
            .await
            .expect("100 Continue in time")
            .unwrap();
        assert_eq!(&interim, CONTINUE);
        conn.write_all(b"data").await.unwrap();
        let mut answer = vec![0u8; 512];
        let n = conn.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("PUT /e 4:data"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn a_body_left_unread_closes_the_connection_after_the_answer() {
        let (addr, _stop, _) = server(Duration::from_secs(10)).await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            b"POST /unread HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .await
        .unwrap();
        let all = read_all(&mut conn, Duration::from_secs(10)).await;
        assert!(all.contains("POST /unread 0:"), "{all}");
        assert!(
            !all.contains("/next"),
            "the unread body was taken for a request: {all}"
        );
    }

    #[tokio::test]
    async fn an_oversized_head_is_431_and_an_idle_connection_closes() {
        let (addr, _stop, _) = server(Duration::from_millis(300)).await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "a".repeat(MAX_HEAD));
        conn.write_all(big.as_bytes()).await.unwrap();
        let all = read_all(&mut conn, Duration::from_secs(10)).await;
        assert!(all.starts_with("HTTP/1.1 431 "), "{all}");
        assert!(all.contains("connection: close"), "{all}");
        // Silent: closed after the idle timeout, with nothing said.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_all(&mut conn, Duration::from_secs(10)).await, "");
        // Half a head: the same.
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        assert_eq!(read_all(&mut conn, Duration::from_secs(10)).await, "");
    }

    #[tokio::test]
    async fn a_streamed_answer_is_chunked_and_dropped_when_the_client_goes() {
        let (addr, _stop, mut seen) = server(Duration::from_secs(10)).await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /tail HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0u8; 512];
        let mut got = String::new();
        while !got.ends_with("5\r\nline\n\r\n") {
            let n = conn.read(&mut answer).await.unwrap();
            assert!(n > 0, "closed: {got}");
            got.push_str(&String::from_utf8_lossy(&answer[..n]));
        }
        assert!(got.contains("transfer-encoding: chunked\r\n"), "{got}");
        drop(conn);
        let event = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await;
        assert_eq!(
            event.expect("the tail dropped in time"),
            Some("tail dropped")
        );
    }

    #[tokio::test]
    async fn a_shutdown_closes_idle_connections_and_finishes_the_request_under_way() {
        let (addr, stop, _) = server(Duration::from_secs(30)).await;
        let mut served = TcpStream::connect(addr).await.unwrap();
        served
            .write_all(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0u8; 512];
        let n = served.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).ends_with("GET /one 0:"));
        let mut midway = TcpStream::connect(addr).await.unwrap();
        midway.write_all(b"GET /two HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        // Kept alive, idle: closed at once.
        assert_eq!(read_all(&mut served, Duration::from_secs(5)).await, "");
        // Half a head: answered, then closed.
        midway.write_all(b"st: h\r\n\r\n").await.unwrap();
        let rest = read_all(&mut midway, Duration::from_secs(5)).await;
        assert!(
            rest.contains("connection: close") && rest.ends_with("GET /two 0:"),
            "{rest}"
        );
    }
}
