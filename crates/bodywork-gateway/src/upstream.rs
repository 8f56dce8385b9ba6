//! The gateway's HTTP/1.1 client side: one request at a time on a replica
//! connection, written and read by the request's own task. hyper's client
//! runs a task per connection and hands each request and answer across a
//! channel to it; here nothing crosses tasks, so a request costs no wake-up
//! of another task.
//!
//! - A request's head (and its body, when already read) leave in one write.
//! - An answer's head is parsed with `httparse` into shared slices of the
//!   read buffer (no copy per header); informational (1xx) answers are skipped.
//! - Its body's length follows RFC 9112 §6.3 ([`BodyKind`]); a chunked body
//!   is de-chunked, so the gateway's own server frames it again for its client.
//! - An idle connection is judged reusable without a system call unless the
//!   reactor saw it readable ([`Stream::idle_usable`]).
//!
//! This module must not pick replicas, rewrite headers or decide retries: it
//! says what failed, and whether the request may have reached the replica.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::Body as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::server::ClientBody;

/// An answer head longer than this is refused (as hyper's default buffer is).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// An answer with more header fields than this is refused (hyper's default).
pub(crate) const MAX_HEADERS: usize = 100;
/// How much room each read asks for.
pub(crate) const READ_CHUNK: usize = 8 * 1024;
/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// A write buffer grown past this is given back after its request.
pub(crate) const KEEP_WRITE_BUFFER: usize = 16 * 1024;

/// A request body on its way to a replica.
pub(crate) enum RequestBody {
    /// Read already (small and announced by `Content-Length`), or empty:
    /// it goes out with the head and can be sent again.
    Read(Bytes),
    /// The client's body, streamed as it arrives; `None` once taken.
    Streamed(Option<ClientBody>),
}

impl RequestBody {
    /// Whether the request can be sent again on another connection.
    pub(crate) fn replayable(&self) -> bool {
        match self {
            RequestBody::Read(_) => true,
            RequestBody::Streamed(body) => body.is_some(),
        }
    }
}

/// What a request's head says, borrowed from the request.
pub(crate) struct RequestHead<'a> {
    pub(crate) method: &'a Method,
    /// The path (part of a valid request target, so nothing to check) and
    /// the query, if any.
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    /// The replica's `Host`.
    pub(crate) host: &'a HeaderValue,
    /// The client's header fields, rewritten by `rewrite` as they are
    /// written; `Content-Length` and `Transfer-Encoding` among them are
    /// ignored (framing is this module's).
    pub(crate) headers: &'a HeaderMap,
    pub(crate) rewrite: &'a crate::forward::Rewrite<'a>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The connection ended (closed, reset, a write failed) before any of
    /// the answer arrived. `written`: the whole request was written, so the
    /// replica may have acted on it.
    Closed { written: bool, err: io::Error },
    /// The client's own request body failed (broke off, or a bad chunk).
    ClientBody(io::Error),
    /// The replica failed once its answer had begun, or answered malformed.
    Upstream(io::Error),
}

/// How an answer's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body: a `HEAD` request's answer, 204, 304, or `Content-Length: 0`.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the replica closes the connection.
    Close,
}

/// A connection to a replica with its read buffer.
pub(crate) struct Stream {
    io: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The next request's bytes, kept between requests.
    out: Vec<u8>,
    /// A streamed request body still being sent.
    upload: Option<Upload>,
    /// A request body was cut short: the connection must not be reused.
    broken: bool,
    spans: Spans,
}

impl Stream {
    pub(crate) fn new(io: TcpStream) -> Self {
        Stream {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            upload: None,
            broken: false,
            spans: Spans::default(),
        }
    }

    /// Whether an idle connection can take a request: its last request sent
    /// whole, nothing unread, and neither closed nor sent anything since. Costs a
    /// system call only when the reactor saw the socket readable.
    pub(crate) fn idle_usable(&mut self) -> bool {
        if !self.buf.is_empty() || self.upload.is_some() || self.broken {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: closed, or bytes nobody asked for; a `WouldBlock`
            // means the readiness was stale (and clears it).
            Poll::Ready(Ok(())) => {
                let mut byte = [0u8; 1];
                matches!(self.io.try_read(&mut byte), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Send a request and read its answer's head. The body, if any, is then
    /// read with [`Stream::read_whole`] or [`Decoder`].
    pub(crate) async fn exchange(
        &mut self,
        head: &RequestHead<'_>,
        body: &mut RequestBody,
    ) -> Result<(Response<()>, BodyKind), Failed> {
        self.send(head, body).await?;
        self.read_head(head.method).await
    }

    /// Write the head, and the body when it is read already; a streamed
    /// body is left to [`Upload`], driven along with every read.
    async fn send(&mut self, head: &RequestHead<'_>, body: &mut RequestBody) -> Result<(), Failed> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let upload = match body {
            RequestBody::Read(bytes) => {
                let length = (!bytes.is_empty()
                    || head.headers.contains_key(header::CONTENT_LENGTH)
                    || method_expects_body(head.method))
                .then_some(bytes.len() as u64);
                encode_head(
                    &mut out,
                    head,
                    length.map_or(Framing::None, Framing::Length),
                );
                out.extend_from_slice(bytes);
                None
            }
            RequestBody::Streamed(streamed) => {
                let incoming = streamed.take();
                let framing = match &incoming {
                    None => Framing::None,
                    Some(b) if http_body::Body::is_end_stream(b) => Framing::Length(0),
                    Some(b) => match http_body::Body::size_hint(b).exact() {
                        Some(len) => Framing::Length(len),
                        None => Framing::Chunked,
                    },
                };
                encode_head(&mut out, head, framing);
                incoming.map(|body| Upload::new(body, framing == Framing::Chunked))
            }
        };
        let wrote = self.io.write_all(&out).await;
        if out.capacity() <= KEEP_WRITE_BUFFER {
            self.out = out;
        }
        if let Err(err) = wrote {
            // Not written whole: a streamed body, untouched yet, is given
            // back so that the request can go elsewhere.
            if let (RequestBody::Streamed(slot), Some(upload)) = (body, upload) {
                *slot = Some(upload.body);
            }
            return Err(Failed::Closed {
                written: false,
                err,
            });
        }
        self.upload = upload;
        Ok(())
    }

    async fn read_head(&mut self, method: &Method) -> Result<(Response<()>, BodyKind), Failed> {
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf, &mut self.spans, method)
                    .map_err(Failed::Upstream)?
                {
                    Some(Parsed::Interim) => continue,
                    Some(Parsed::Final(answer, kind)) => return Ok((answer, kind)),
                    None if self.buf.len() >= MAX_HEAD => {
                        return Err(Failed::Upstream(invalid(format!(
                            "its answer's head is longer than {} KiB",
                            MAX_HEAD / 1024
                        ))));
                    }
                    None => {}
                }
            }
            let read = std::future::poll_fn(|cx| {
                if let Err(err) = self.drive_upload(cx) {
                    return Poll::Ready(Err(Failed::ClientBody(err)));
                }
                self.poll_read(cx).map(Ok)
            })
            .await?;
            match read {
                Ok(0) if !received => {
                    return Err(Failed::Closed {
                        written: true,
                        err: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection was closed before an answer",
                        ),
                    });
                }
                Ok(0) => {
                    return Err(Failed::Upstream(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection was closed in the middle of the answer's head",
                    )));
                }
                Ok(_) => received = true,
                Err(err) if !received => {
                    return Err(Failed::Closed { written: true, err });
                }
                Err(err) => return Err(Failed::Upstream(err)),
            }
        }
    }

    /// Read a body of `len` bytes whole.
    pub(crate) async fn read_whole(&mut self, len: usize) -> io::Result<Bytes> {
        while self.buf.len() < len {
            self.buf.reserve(len - self.buf.len());
            if std::future::poll_fn(|cx| self.poll_fill(cx)).await? == 0 {
                return Err(early_end("answer"));
            }
        }
        Ok(self.buf.split_to(len).freeze())
    }

    /// Move the streamed request body along; the client's body's failure
    /// is returned (and the connection is not reused).
    fn drive_upload(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        match upload.poll(&self.io, cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(())) => {
                self.upload = None;
                Ok(())
            }
            // The replica stopped taking the body: its answer may still come.
            Poll::Ready(Err(UploadError::Write(err))) => {
                tracing::debug!("a request body was cut short by its replica: {err}");
                self.upload = None;
                self.broken = true;
                Ok(())
            }
            Poll::Ready(Err(UploadError::Client(err))) => {
                self.upload = None;
                self.broken = true;
                Err(err)
            }
        }
    }

    /// Read more into the buffer; `Ok(0)` at the end of the stream.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// Where a [`Decoder`] reads a body from: a connection and its read buffer.
pub(crate) trait Fill {
    /// Bytes read and not yet consumed.
    fn buf(&mut self) -> &mut BytesMut;
    /// Read more into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>>;
    /// What the body is, for errors: "answer" or "request".
    fn message(&self) -> &'static str;
}

impl Fill for Stream {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Read more while the request body goes on being sent.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.drive_upload(cx)
            .map_err(|err| io::Error::other(format!("the client's request body failed: {err}")))?;
        self.poll_read(cx)
    }

    fn message(&self) -> &'static str {
        "answer"
    }
}

/// A streamed request body on its way to the replica, written as the
/// client sends it while the answer is read (an echo streams both ways).
struct Upload {
    body: ClientBody,
    chunked: bool,
    /// What is still to be written of the current piece.
    pending: VecDeque<Bytes>,
    ended: bool,
}

enum UploadError {
    /// Writing to the replica failed.
    Write(io::Error),
    /// The client's body failed.
    Client(io::Error),
}

impl Upload {
    fn new(body: ClientBody, chunked: bool) -> Self {
        Upload {
            body,
            chunked,
            pending: VecDeque::new(),
            ended: false,
        }
    }

    /// Write what there is; ready once the whole body is written.
    fn poll(&mut self, io: &TcpStream, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        loop {
            while let Some(piece) = self.pending.front_mut() {
                if piece.is_empty() {
                    self.pending.pop_front();
                    continue;
                }
                ready!(io.poll_write_ready(cx)).map_err(UploadError::Write)?;
                match io.try_write(piece) {
                    Ok(written) => piece.advance(written),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return Poll::Ready(Err(UploadError::Write(err))),
                }
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => {
                    self.ended = true;
                    if self.chunked {
                        self.pending.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
                Some(Err(err)) => return Poll::Ready(Err(UploadError::Client(err))),
                Some(Ok(frame)) => {
                    // Trailers are not passed on.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if self.chunked {
                        self.pending
                            .push_back(Bytes::from(format!("{:x}\r\n", data.len())));
                        self.pending.push_back(data);
                        self.pending.push_back(Bytes::from_static(b"\r\n"));
                    } else {
                        self.pending.push_back(data);
                    }
                }
            }
        }
    }
}

/// Methods whose empty body is still announced, as `Content-Length: 0`.
fn method_expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body and no length said.
    None,
    Length(u64),
    Chunked,
}

fn encode_head(out: &mut Vec<u8>, head: &RequestHead<'_>, framing: Framing) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    if let Some(query) = head.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(head.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in head.headers {
        if name == header::CONTENT_LENGTH || !head.rewrite.keeps(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    head.rewrite.write_forwarded(out);
    match framing {
        Framing::None => {}
        Framing::Length(len) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(len, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Where each header field's name and value sit in a parsed head, so that
/// the values can be shared slices of it once it is split off its buffer.
/// Kept by a connection from one head to the next (no allocation, and no
/// array of [`MAX_HEADERS`] cleared per head).
#[derive(Default)]
pub(crate) struct Spans(Vec<(usize, usize, usize, usize)>);

impl Spans {
    /// Take the spans of `fields`, parsed from `buf`.
    pub(crate) fn take(&mut self, buf: &[u8], fields: &[httparse::Header<'_>]) {
        let base = buf.as_ptr() as usize;
        self.0.clear();
        self.0.extend(fields.iter().map(|field| {
            let name = field.name.as_ptr() as usize - base;
            let value = field.value.as_ptr() as usize - base;
            (name, field.name.len(), value, field.value.len())
        }));
    }

    /// The header fields, their values slices of `head` (the buffer's
    /// bytes, split off); a bad name or value is an error of `message`.
    pub(crate) fn header_map(&self, head: &Bytes, message: &str) -> io::Result<HeaderMap> {
        let mut headers = HeaderMap::with_capacity(self.0.len());
        for &(name, name_len, value, value_len) in &self.0 {
            let name = HeaderName::from_bytes(&head[name..name + name_len])
                .map_err(|err| invalid(format!("its {message} has a bad header name: {err}")))?;
            let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
                .map_err(|err| invalid(format!("its {message}'s {name} header is bad: {err}")))?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

enum Parsed {
    /// A 1xx answer, skipped.
    Interim,
    Final(Response<()>, BodyKind),
}

/// Parse and consume one answer head from the front of `buf`; `None` while
/// it is incomplete.
fn parse_head(
    buf: &mut BytesMut,
    spans: &mut Spans,
    method: &Method,
) -> io::Result<Option<Parsed>> {
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(invalid(format!("its answer's head is malformed: {err}"))),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| invalid(format!("its answer's status {code} is not valid")))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    spans.take(buf, parsed.headers);
    let head = buf.split_to(len).freeze();
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(invalid(
                "it switched protocols, which the gateway does not proxy".into(),
            ));
        }
        return Ok(Some(Parsed::Interim));
    }
    let mut headers = spans.header_map(&head, "answer")?;
    let kind = body_kind(method, status, &mut headers)?;
    let mut answer = Response::new(());
    *answer.status_mut() = status;
    *answer.version_mut() = version;
    *answer.headers_mut() = headers;
    Ok(Some(Parsed::Final(answer, kind)))
}

/// How the answer's body is delimited (RFC 9112 §6.3). A chunked answer's
/// `Content-Length`, which must not be there, is removed.
fn body_kind(method: &Method, status: StatusCode, headers: &mut HeaderMap) -> io::Result<BodyKind> {
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyKind::Empty);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
        return Ok(if ends_chunked(headers) {
            BodyKind::Chunked
        } else {
            BodyKind::Close
        });
    }
    Ok(match content_length(headers, "answer")? {
        Some(0) => BodyKind::Empty,
        Some(len) => BodyKind::Length(len),
        None => BodyKind::Close,
    })
}

/// Whether the last transfer coding named is `chunked`.
pub(crate) fn ends_chunked(headers: &HeaderMap) -> bool {
    crate::forward::tokens(headers, header::TRANSFER_ENCODING)
        .filter(|coding| !coding.is_empty())
        .last()
        .is_some_and(|last| last.eq_ignore_ascii_case("chunked"))
}

/// The `Content-Length` of a `message` ("answer", "request"), if it has
/// one: repeated values must agree (RFC 9112 §6.3), and a malformed one is
/// an error.
pub(crate) fn content_length(headers: &HeaderMap, message: &str) -> io::Result<Option<u64>> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let parsed = decimal(item.trim_ascii()).ok_or_else(|| {
                let text = value.to_str().unwrap_or("");
                invalid(format!(
                    "its {message}'s content-length {text:?} is not valid"
                ))
            })?;
            if length.is_some_and(|l| l != parsed) {
                return Err(invalid(format!(
                    "its {message} has conflicting content-lengths"
                )));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

/// A non-empty run of ASCII digits as a number; `None` for anything else,
/// or a number past `u64`.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// Reads a body from its connection, frame by frame: a replica's answer,
/// or a client's request ([`Fill`] says which).
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of a `Content-Length` body are left.
    Length(u64),
    /// Everything until the connection closes.
    Close,
    /// Before a chunk-size line.
    ChunkSize,
    /// This many bytes of the current chunk are left.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer fields (dropped) up to the empty line.
    Trailers,
    Done,
}

impl Decoder {
    /// A decoder for a body of `kind`.
    pub(crate) fn new(kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::Empty => State::Done,
            BodyKind::Length(len) => State::Length(len),
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::Close => State::Close,
        };
        Decoder { state }
    }

    /// Whether the whole body has been read.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    /// Whether the body ends where the replica closes the connection.
    pub(crate) fn closes(&self) -> bool {
        self.state == State::Close
    }

    /// The remaining length, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(len) => Some(len),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The body's remaining length, when known, as [`http_body::Body`] hints it.
    pub(crate) fn size_hint(&self) -> http_body::SizeHint {
        match self.remaining() {
            Some(len) => http_body::SizeHint::with_exact(len),
            None => http_body::SizeHint::default(),
        }
    }

    /// The next piece of the body; `None` at its end.
    pub(crate) fn poll_data(
        &mut self,
        stream: &mut impl Fill,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Length(0) => {
                    self.state = State::Done;
                    return Poll::Ready(None);
                }
                State::Length(left) | State::ChunkData(left) => {
                    if stream.buf().is_empty() {
                        ready!(self.fill_or_fail(stream, cx))?;
                        continue;
                    }
                    let take = left.min(stream.buf().len() as u64);
                    let data = stream.buf().split_to(take as usize).freeze();
                    self.state = match self.state {
                        State::Length(_) => State::Length(left - take),
                        _ if take == left => State::ChunkEnd,
                        _ => State::ChunkData(left - take),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                State::Close => {
                    if !stream.buf().is_empty() {
                        return Poll::Ready(Some(Ok(stream.buf().split().freeze())));
                    }
                    if ready!(stream.poll_fill(cx))? == 0 {
                        self.state = State::Done;
                        return Poll::Ready(None);
                    }
                }
                State::ChunkEnd => {
                    if stream.buf().len() < 2 {
                        ready!(self.fill_or_fail(stream, cx))?;
                        continue;
                    }
                    if &stream.buf()[..2] != b"\r\n" {
                        return self.fail(stream.message(), "a chunk does not end with CRLF");
                    }
                    stream.buf().advance(2);
                    self.state = State::ChunkSize;
                }
                State::ChunkSize | State::Trailers => {
                    let Some(end) = stream.buf().windows(2).position(|w| w == b"\r\n") else {
                        if stream.buf().len() > MAX_CHUNK_LINE {
                            return self.fail(
                                stream.message(),
                                "a chunk-size or trailer line is too long",
                            );
                        }
                        ready!(self.fill_or_fail(stream, cx))?;
                        continue;
                    };
                    let line = stream.buf().split_to(end + 2);
                    let line = &line[..end];
                    if self.state == State::Trailers {
                        if line.is_empty() {
                            self.state = State::Done;
                            return Poll::Ready(None);
                        }
                        continue;
                    }
                    match chunk_size(line) {
                        Some(0) => self.state = State::Trailers,
                        Some(size) => self.state = State::ChunkData(size),
                        None => return self.fail(stream.message(), "a chunk size is malformed"),
                    }
                }
            }
        }
    }

    /// Read more; the end of the stream is an error here.
    fn fill_or_fail(
        &mut self,
        stream: &mut impl Fill,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match ready!(stream.poll_fill(cx)) {
            Ok(0) => {
                self.state = State::Done;
                Poll::Ready(Err(early_end(stream.message())))
            }
            Ok(_) => Poll::Ready(Ok(())),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn fail(&mut self, message: &str, why: &str) -> Poll<Option<io::Result<Bytes>>> {
        self.state = State::Done;
        Poll::Ready(Some(Err(invalid(format!(
            "its chunked {message} is malformed: {why}"
        )))))
    }
}

/// `n` in decimal, written into `buf`.
pub(crate) fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The size a chunk-size line gives (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?;
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

pub(crate) fn early_end(message: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the connection was closed before the end of the {message}'s body"),
    )
}

pub(crate) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn head_of(bytes: &[u8], method: Method) -> io::Result<Option<Parsed>> {
        parse_head(&mut BytesMut::from(bytes), &mut Spans::default(), &method)
    }

    fn final_of(bytes: &[u8], method: Method) -> (Response<()>, BodyKind) {
        match head_of(bytes, method) {
            Ok(Some(Parsed::Final(answer, kind))) => (answer, kind),
            other => panic!("not a final answer: {:?}", other.map(|p| p.is_some())),
        }
    }

    #[test]
    fn a_head_is_parsed_into_status_version_and_shared_headers() {
        let (answer, kind) = final_of(
            b"HTTP/1.0 201 Created\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 7\r\n\r\n",
            Method::POST,
        );
        assert_eq!(answer.status(), 201);
        assert_eq!(answer.version(), Version::HTTP_10);
        assert_eq!(answer.headers()["content-type"], "application/json");
        let all: Vec<_> = answer.headers().get_all("x-a").iter().collect();
        assert_eq!(all, ["1", "2"]);
        assert_eq!(kind, BodyKind::Length(7));
    }

    #[test]
    fn an_incomplete_head_waits_and_a_malformed_one_fails() {
        assert!(matches!(
            head_of(b"HTTP/1.1 200 OK\r\nA: b\r\n", Method::GET),
            Ok(None)
        ));
        assert!(head_of(b"HTTP/1.1 2x0 OK\r\n\r\n", Method::GET).is_err());
        assert!(head_of(b"garbage\r\n\r\n", Method::GET).is_err());
    }

    #[test]
    fn an_informational_answer_is_consumed_and_skipped() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..],
        );
        assert!(matches!(
            parse_head(&mut buf, &mut Spans::default(), &Method::GET),
            Ok(Some(Parsed::Interim))
        ));
        let Ok(Some(Parsed::Final(answer, kind))) =
            parse_head(&mut buf, &mut Spans::default(), &Method::GET)
        else {
            panic!("no final answer");
        };
        assert_eq!((answer.status().as_u16(), kind), (200, BodyKind::Length(2)));
        assert_eq!(&buf[..], b"ok");
        assert!(head_of(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET).is_err());
    }

    #[test]
    fn body_length_follows_rfc_9112() {
        let kind = |method: Method, head: &str| {
            head_of(head.as_bytes(), method).map(|p| match p {
                Some(Parsed::Final(_, kind)) => kind,
                _ => panic!("not final"),
            })
        };
        let cl = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(kind(Method::GET, cl).unwrap(), BodyKind::Length(5));
        assert_eq!(kind(Method::HEAD, cl).unwrap(), BodyKind::Empty);
        for status in ["204 No Content", "304 Not Modified"] {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
            assert_eq!(
                kind(Method::GET, &head).unwrap(),
                BodyKind::Empty,
                "{status}"
            );
        }
        assert_eq!(
            kind(Method::GET, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap(),
            BodyKind::Empty
        );
        assert_eq!(
            kind(
                Method::GET,
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n"
            )
            .unwrap(),
            BodyKind::Length(5)
        );
        assert!(
            kind(
                Method::GET,
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"
            )
            .is_err()
        );
        assert!(kind(Method::GET, "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n").is_err());
        // Empty items, and a length past u64, are not lengths.
        assert!(kind(Method::GET, "HTTP/1.1 200 OK\r\ncontent-length: 5,\r\n\r\n").is_err());
        assert!(
            kind(
                Method::GET,
                "HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551616\r\n\r\n"
            )
            .is_err()
        );
        assert!(
            kind(
                Method::GET,
                "HTTP/1.1 200 OK\r\ncontent-length: five\r\n\r\n"
            )
            .is_err()
        );
        assert_eq!(
            kind(Method::GET, "HTTP/1.1 200 OK\r\n\r\n").unwrap(),
            BodyKind::Close
        );
        assert_eq!(
            kind(
                Method::GET,
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n"
            )
            .unwrap(),
            BodyKind::Chunked
        );
        assert_eq!(
            kind(
                Method::GET,
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"
            )
            .unwrap(),
            BodyKind::Close
        );
        // Transfer-Encoding wins, and the Content-Length is not passed on.
        let (answer, kind) = final_of(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(kind, BodyKind::Chunked);
        assert!(answer.headers().get("content-length").is_none());
    }

    #[test]
    fn chunk_sizes_are_hex_with_extensions_ignored() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"A;name=value"), Some(10));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b"ffffffffffffffffff"), None);
    }

    #[test]
    fn a_request_head_carries_its_host_and_framing_once() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("client"));
        headers.insert("content-length", HeaderValue::from_static("999"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        let host = HeaderValue::from_static("127.0.0.1:5000");
        let client = crate::forward::ForwardedFor::new("10.1.2.3".parse().unwrap());
        let rewrite = crate::forward::Rewrite::new(&headers, &client);
        let head = RequestHead {
            method: &Method::POST,
            path: "/score",
            query: Some("a=1&b=%20"),
            host: &host,
            headers: &headers,
            rewrite: &rewrite,
        };
        let mut out = Vec::new();
        encode_head(&mut out, &head, Framing::Length(4));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /score?a=1&b=%20 HTTP/1.1\r\nhost: 127.0.0.1:5000\r\naccept: */*\r\n\
             x-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\nx-forwarded-host: client\r\n\
             content-length: 4\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_head(&mut out, &head, Framing::Chunked);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("x-forwarded-host: client\r\ntransfer-encoding: chunked\r\n\r\n")
        );
    }

    /// A request head to host `r:1` with no other header fields.
    fn bare(method: &'static Method, path: &'static str) -> RequestHead<'static> {
        let headers: &'static HeaderMap = Box::leak(Box::new(HeaderMap::new()));
        let client = Box::leak(Box::new(crate::forward::ForwardedFor::new(
            "127.0.0.1".parse().unwrap(),
        )));
        RequestHead {
            method,
            path,
            query: None,
            host: Box::leak(Box::new(HeaderValue::from_static("r:1"))),
            headers,
            rewrite: Box::leak(Box::new(crate::forward::Rewrite::new(headers, client))),
        }
    }

    /// A connected pair: our stream and the replica's end.
    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (Stream::new(ours), theirs)
    }

    async fn decode(stream: &mut Stream, kind: BodyKind) -> io::Result<Vec<u8>> {
        let mut decoder = Decoder::new(kind);
        let mut body = Vec::new();
        while let Some(data) = std::future::poll_fn(|cx| decoder.poll_data(stream, cx)).await {
            body.extend_from_slice(&data?);
        }
        Ok(body)
    }

    #[tokio::test]
    async fn a_chunked_body_sent_in_odd_pieces_is_dechunked_and_trailers_dropped() {
        let (mut ours, mut theirs) = pair().await;
        let wire = b"5;ext=1\r\nhello\r\n1\r\n \r\nC\r\nworld, again\r\n0\r\nx-trailer: t\r\n\r\n";
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(3) {
                theirs.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            theirs
        });
        let body = decode(&mut ours, BodyKind::Chunked).await.unwrap();
        assert_eq!(body, b"hello world, again");
        let _theirs = writer.await.unwrap();
        assert!(ours.buf.is_empty(), "nothing read past the body");
    }

    #[tokio::test]
    async fn a_body_cut_short_or_badly_chunked_is_an_error() {
        for (kind, wire) in [
            (BodyKind::Length(10), &b"short"[..]),
            (BodyKind::Chunked, &b"5\r\nhel"[..]),
            (BodyKind::Chunked, &b"5\r\nhelloXX0\r\n\r\n"[..]),
            (BodyKind::Chunked, &b"q\r\n"[..]),
        ] {
            let (mut ours, mut theirs) = pair().await;
            theirs.write_all(wire).await.unwrap();
            drop(theirs);
            assert!(decode(&mut ours, kind).await.is_err(), "{kind:?} {wire:?}");
        }
    }

    #[tokio::test]
    async fn a_body_until_close_ends_with_the_connection() {
        let (mut ours, mut theirs) = pair().await;
        theirs.write_all(b"all of it").await.unwrap();
        drop(theirs);
        assert_eq!(
            decode(&mut ours, BodyKind::Close).await.unwrap(),
            b"all of it"
        );
    }

    /// Wait (5 s at most) until `stream` is no longer usable when idle.
    async fn until_unusable(stream: &mut Stream, what: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while stream.idle_usable() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} was never seen"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_unusable_once_closed_or_talked_on() {
        let (mut ours, theirs) = pair().await;
        assert!(ours.idle_usable());
        drop(theirs);
        // The reactor sees the close once it polls.
        until_unusable(&mut ours, "the close").await;
        let (mut ours, mut theirs) = pair().await;
        theirs.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        until_unusable(&mut ours, "unasked bytes").await;
    }

    #[tokio::test]
    async fn an_exchange_sends_head_and_body_in_one_write_and_reads_the_answer() {
        let (mut ours, mut theirs) = pair().await;
        let replica = tokio::spawn(async move {
            let mut got = vec![0u8; 4096];
            let n = theirs.read(&mut got).await.unwrap();
            got.truncate(n);
            theirs
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            (got, theirs)
        });
        let head = bare(&Method::POST, "/s");
        let mut body = RequestBody::Read(Bytes::from_static(b"{}"));
        let (answer, kind) = ours.exchange(&head, &mut body).await.unwrap();
        assert_eq!((answer.status().as_u16(), kind), (200, BodyKind::Length(2)));
        assert_eq!(ours.read_whole(2).await.unwrap(), "ok");
        let (got, _theirs) = replica.await.unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "POST /s HTTP/1.1\r\nhost: r:1\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\ncontent-length: 2\r\n\r\n{}"
        );
        assert!(body.replayable());
    }

    #[tokio::test]
    async fn a_connection_closed_before_any_answer_says_so() {
        let (mut ours, theirs) = pair().await;
        drop(theirs);
        let head = bare(&Method::GET, "/");
        let failed = ours
            .exchange(&head, &mut RequestBody::Read(Bytes::new()))
            .await
            .unwrap_err();
        assert!(matches!(failed, Failed::Closed { .. }), "{failed:?}");
    }
}
