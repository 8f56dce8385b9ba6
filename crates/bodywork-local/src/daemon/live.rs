//! The live stream of a run's log to the CLI that started it, bounded: a
//! client that reads slowly, or not at all (stopped with SIGSTOP), never
//! makes the daemon buffer more than [`CLIENT_QUEUE_MAX`] bytes, and never
//! slows the stage or the daemon down. Lines of stage output that find the
//! queue full are skipped, and the client is told how many at the place
//! they were skipped; the run's log file has them all. The run's own
//! messages have as much room again, and the frames that start and end it
//! always arrive.

use std::collections::VecDeque;
use std::sync::Mutex;

use bodywork_runtime::LogEvent;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::protocol::{Response, encode_frame};

/// The most a client's live stream may hold queued (encoded frames), in bytes.
pub(crate) const CLIENT_QUEUE_MAX: usize = 4 << 20;

/// The line a client gets where log lines were skipped.
pub(crate) fn skipped_marker(skipped: u64, hint: &str) -> String {
    format!("[bodywork: {skipped} lines skipped, the client read too slowly; see {hint}]")
}

#[derive(Default)]
struct Queue {
    /// Encoded frames, each with whether it is the last one.
    frames: VecDeque<(Vec<u8>, bool)>,
    bytes: usize,
    /// Lines skipped since the last frame queued.
    skipped: u64,
}

impl Queue {
    fn push(&mut self, frame: Vec<u8>, last: bool) {
        self.bytes += frame.len();
        self.frames.push_back((frame, last));
    }
}

/// Says where the skipped lines can be read (`` `bodywork logs ...` ``),
/// asked when they are (the namespace may be known only by then).
pub(crate) type Hint = Box<dyn Fn() -> String + Send + Sync>;

pub(crate) struct LiveStream {
    queue: Mutex<Queue>,
    ready: Notify,
    limit: usize,
    hint: Hint,
}

impl LiveStream {
    /// A stream that holds at most `limit` bytes of stage output (the run's
    /// own messages may take as much again); `hint` says where the whole
    /// log is.
    pub fn new(limit: usize, hint: Hint) -> LiveStream {
        LiveStream {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            limit,
            hint,
        }
    }

    /// Queue `frame` if the queue then holds at most `room` bytes, else
    /// count it as skipped.
    fn queue(&self, frame: &Response, room: usize) {
        let Ok(bytes) = encode_frame(frame) else {
            return;
        };
        let Ok(mut queue) = self.queue.lock() else {
            return;
        };
        if queue.bytes + bytes.len() > room {
            queue.skipped += 1;
            return;
        }
        if queue.skipped > 0 {
            let line = skipped_marker(std::mem::take(&mut queue.skipped), &(self.hint)());
            if let Ok(marker) = encode_frame(&Response::Event(LogEvent::Text { line })) {
                queue.push(marker, false);
            }
        }
        queue.push(bytes, matches!(frame, Response::End));
        drop(queue);
        self.ready.notify_one();
    }

    /// A line of stage output: skipped when the client is too far behind.
    pub fn offer(&self, frame: &Response) {
        self.queue(frame, self.limit);
    }

    /// A message of the run itself (a few per stage, though an installer's
    /// output comes this way too): skipped only past twice the limit.
    pub fn message(&self, frame: &Response) {
        self.queue(frame, self.limit.saturating_mul(2));
    }

    /// A frame that must arrive: the run's start and end.
    pub fn send(&self, frame: &Response) {
        self.queue(frame, usize::MAX);
    }

    /// The next frame, and whether it is the last; waits for one.
    async fn next(&self) -> (Vec<u8>, bool) {
        loop {
            if let Ok(mut queue) = self.queue.lock()
                && let Some((frame, last)) = queue.frames.pop_front()
            {
                queue.bytes -= frame.len();
                return (frame, last);
            }
            self.ready.notified().await;
        }
    }

    /// Write the frames to `write` as they come, up to the last one or
    /// until the client is gone.
    pub async fn write_to<W: AsyncWriteExt + Unpin>(&self, write: &mut W) {
        loop {
            let (frame, last) = self.next().await;
            if write.write_all(&frame).await.is_err() || last {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    fn hint(text: &'static str) -> Hint {
        Box::new(move || text.to_string())
    }

    fn line(n: usize) -> Response {
        Response::Event(LogEvent::Stage {
            source: "p--s".into(),
            line: format!("{n:04} {}", "z".repeat(95)),
        })
    }

    /// Read every frame a stream writes, as the client would.
    async fn received(stream: &LiveStream) -> Vec<Response> {
        let (mut client, mut daemon) = tokio::io::duplex(1 << 20);
        stream.write_to(&mut daemon).await;
        drop(daemon);
        let mut reader = BufReader::new(&mut client);
        let mut out = Vec::new();
        let mut text = String::new();
        while reader.read_line(&mut text).await.unwrap() > 0 {
            out.push(serde_json::from_str(&text).unwrap());
            text.clear();
        }
        out
    }

    fn text_of(frame: &Response) -> String {
        match frame {
            Response::Event(LogEvent::Stage { line, .. }) => line[..4].to_string(),
            Response::Event(LogEvent::Text { line }) => line.clone(),
            Response::RunStarted { .. } => "started".into(),
            Response::End => "end".into(),
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_gets_a_marker_instead_of_a_queue_without_bound() {
        let one = encode_frame(&line(0)).unwrap().len();
        let started = Response::RunStarted { run: 7 };
        // Room for the start and four lines; nothing is read while 1000 are offered.
        let limit = encode_frame(&started).unwrap().len() + 4 * one;
        let stream = LiveStream::new(limit, hint("bodywork logs --namespace ns 7"));
        stream.send(&started);
        for n in 0..1000 {
            stream.offer(&line(n));
            let held = stream.queue.lock().unwrap().bytes;
            assert!(held <= limit, "{held} bytes queued");
        }
        stream.send(&Response::End);
        let got: Vec<String> = received(&stream).await.iter().map(text_of).collect();
        let marker = skipped_marker(996, "bodywork logs --namespace ns 7");
        assert_eq!(
            got,
            ["started", "0000", "0001", "0002", "0003", &marker, "end"]
        );
    }

    #[tokio::test]
    async fn lines_skipped_are_marked_where_they_were_skipped() {
        let one = encode_frame(&line(0)).unwrap().len();
        let stream = LiveStream::new(2 * one, hint("the log"));
        stream.offer(&line(0));
        stream.offer(&line(1));
        stream.offer(&line(2));
        stream.offer(&line(3));
        // The client catches up: the next line comes after the marker.
        let (first, _) = stream.next().await;
        let (second, _) = stream.next().await;
        assert_eq!(first, encode_frame(&line(0)).unwrap());
        assert_eq!(second, encode_frame(&line(1)).unwrap());
        stream.offer(&line(4));
        stream.send(&Response::End);
        let got: Vec<String> = received(&stream).await.iter().map(text_of).collect();
        assert_eq!(got, [skipped_marker(2, "the log").as_str(), "0004", "end"]);
    }

    #[tokio::test]
    async fn the_runs_own_messages_have_as_much_room_again_and_the_end_always_arrives() {
        let one = encode_frame(&line(0)).unwrap().len();
        let stream = LiveStream::new(2 * one, hint("the log"));
        for n in 0..10 {
            stream.offer(&line(n));
        }
        for n in 10..20 {
            stream.message(&line(n));
        }
        stream.send(&Response::End);
        let got: Vec<String> = received(&stream).await.iter().map(text_of).collect();
        // Each marker takes its place in the queue too.
        let (first, second) = (skipped_marker(8, "the log"), skipped_marker(9, "the log"));
        assert_eq!(got, ["0000", "0001", &first, "0010", &second, "end"]);
    }

    #[tokio::test]
    async fn a_client_that_keeps_up_misses_nothing() {
        let stream = std::sync::Arc::new(LiveStream::new(4096, hint("the log")));
        let (client, mut daemon) = tokio::io::duplex(256);
        let writer = {
            let stream = stream.clone();
            tokio::spawn(async move { stream.write_to(&mut daemon).await })
        };
        let reader = tokio::spawn(async move {
            let mut reader = BufReader::new(client);
            let mut count = 0;
            let mut text = String::new();
            while reader.read_line(&mut text).await.unwrap() > 0 {
                count += 1;
                text.clear();
            }
            count
        });
        for n in 0..500 {
            stream.offer(&line(n));
            // A sender that waits for room, as a stage printing slowly does.
            while stream.queue.lock().unwrap().bytes > 2048 {
                tokio::task::yield_now().await;
            }
        }
        stream.send(&Response::End);
        writer.await.unwrap();
        assert_eq!(reader.await.unwrap(), 501);
    }
}
