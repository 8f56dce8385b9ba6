//! Reading output line by line with a length cap, so that whatever a
//! process prints (one 200 MB line, or an endless one with no newline) at
//! most [`MAX_LINE`] bytes of a line are ever held in memory.
//!
//! A longer line is truncated: its first `MAX_LINE` bytes are kept (cut
//! back to a whole UTF-8 character) and a marker saying how many bytes were
//! dropped replaces the rest, e.g. `xxxx… [bodywork: line cut at 65536
//! bytes, 209649664 bytes dropped]`. The dropped bytes are read and thrown
//! away as they come, never buffered.
//!
//! One reader serves pipes (async, the stage runner's pump) and log files
//! (sync or async, the daemon's log readers); a line still without its
//! newline at the end of what is there so far stays pending in the reader,
//! so a file that grows can be followed.

use std::io::BufRead;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest line kept whole, in bytes (without its line ending).
pub const MAX_LINE: usize = 64 * 1024;

/// The longest line a cut can give, its marker included: what a reader of
/// output stored already cut allows.
pub const MAX_CUT_LINE: usize = MAX_LINE + 100;

/// The marker that ends a truncated line.
pub fn cut_marker(cap: usize, dropped: u64) -> String {
    format!("… [bodywork: line cut at {cap} bytes, {dropped} bytes dropped]")
}

/// Assembles capped lines from chunks of input.
#[derive(Debug)]
pub struct CappedLines {
    cap: usize,
    kept: Vec<u8>,
    /// Bytes of the current line past the cap, read and thrown away.
    dropped: u64,
    /// Whether the last byte thrown away was a `\r` (part of a CRLF ending,
    /// not of the line, once the `\n` comes).
    dropped_cr: bool,
}

impl Default for CappedLines {
    fn default() -> CappedLines {
        CappedLines::new(MAX_LINE)
    }
}

impl CappedLines {
    /// Lines of at most `cap` bytes.
    pub fn new(cap: usize) -> CappedLines {
        CappedLines {
            cap,
            kept: Vec::new(),
            dropped: 0,
            dropped_cr: false,
        }
    }

    /// Take bytes of `chunk` up to and including the first newline; returns
    /// how many were used and whether they ended a line.
    fn feed(&mut self, chunk: &[u8]) -> (usize, bool) {
        let (body, used, ended) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = self.cap.saturating_sub(self.kept.len()).min(body.len());
        // Grow by doubling, but never past the cap.
        let want = (self.kept.len() + room)
            .max(self.kept.len() * 2)
            .min(self.cap);
        if want > self.kept.capacity() {
            self.kept.reserve_exact(want - self.kept.len());
        }
        self.kept.extend_from_slice(&body[..room]);
        let rest = &body[room..];
        if let Some(last) = rest.last() {
            self.dropped += rest.len() as u64;
            self.dropped_cr = *last == b'\r';
        }
        (used, ended)
    }

    /// One chunk read: how many bytes were used, and what the read
    /// returns if it is done (a line, or `None` at the end of the input).
    fn step(&mut self, chunk: &[u8]) -> (usize, Option<Option<String>>) {
        if chunk.is_empty() {
            return (0, Some(None));
        }
        let (used, ended) = self.feed(chunk);
        (used, ended.then(|| Some(self.finish(true))))
    }

    /// The line assembled so far, as text, and a fresh start.
    fn finish(&mut self, ended: bool) -> String {
        let mut bytes = std::mem::take(&mut self.kept);
        let mut dropped = std::mem::take(&mut self.dropped);
        if ended && dropped > 0 && std::mem::take(&mut self.dropped_cr) {
            dropped -= 1;
        }
        if dropped == 0 {
            while matches!(bytes.last(), Some(b'\r')) {
                bytes.pop();
            }
            return match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
        }
        // Cut back to a whole character rather than leave half of one.
        if let Err(e) = std::str::from_utf8(&bytes)
            && e.error_len().is_none()
        {
            dropped += (bytes.len() - e.valid_up_to()) as u64;
            bytes.truncate(e.valid_up_to());
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        line.push_str(&cut_marker(self.cap, dropped));
        line
    }

    /// Whether part of a line (no newline yet) is pending.
    pub fn has_partial(&self) -> bool {
        !self.kept.is_empty() || self.dropped > 0
    }

    /// The pending part of a line with no newline (at the end of a stream),
    /// if any.
    pub fn take_partial(&mut self) -> Option<String> {
        self.has_partial().then(|| self.finish(false))
    }

    /// The next whole line of `reader`; `None` at the end of what it has
    /// now (a part of a line read so far stays pending).
    pub async fn next_async<R: AsyncBufRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> std::io::Result<Option<String>> {
        loop {
            let (used, done) = self.step(reader.fill_buf().await?);
            reader.consume(used);
            if let Some(line) = done {
                return Ok(line);
            }
        }
    }

    /// [`CappedLines::next_async`] for a blocking reader (a log file).
    pub fn next_sync<R: BufRead>(&mut self, reader: &mut R) -> std::io::Result<Option<String>> {
        loop {
            let (used, done) = self.step(reader.fill_buf()?);
            reader.consume(used);
            if let Some(line) = done {
                return Ok(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input` read with `cap`, the last one without its
    /// newline included, through a reader of small chunks.
    fn lines(input: &[u8], cap: usize) -> Vec<String> {
        let mut reader = std::io::BufReader::with_capacity(7, input);
        let mut capped = CappedLines::new(cap);
        let mut out = Vec::new();
        while let Some(line) = capped.next_sync(&mut reader).unwrap() {
            assert!(capped.kept.capacity() <= cap.max(8));
            out.push(line);
        }
        out.extend(capped.take_partial());
        out
    }

    #[test]
    fn short_lines_pass_as_they_are() {
        assert_eq!(lines(b"one\ntwo\n\nthree", 16), ["one", "two", "", "three"]);
    }

    #[test]
    fn a_line_longer_than_the_cap_is_cut_with_a_marker() {
        let input = [b"x".repeat(100), b"\nnext\n".to_vec()].concat();
        assert_eq!(
            lines(&input, 10),
            [
                format!("xxxxxxxxxx{}", cut_marker(10, 90)),
                "next".to_string()
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_the_cap_is_kept_whole() {
        let input = [b"y".repeat(10), b"\r\n".to_vec(), b"z".repeat(10)].concat();
        assert_eq!(lines(&input, 10), ["y".repeat(10), "z".repeat(10)]);
        let one_more = [b"y".repeat(11), b"\n".to_vec()].concat();
        assert_eq!(
            lines(&one_more, 10),
            [format!("{}{}", "y".repeat(10), cut_marker(10, 1))]
        );
    }

    #[test]
    fn crlf_endings_are_removed() {
        assert_eq!(lines(b"a\r\nb\r\n", 16), ["a", "b"]);
        let long = [b"w".repeat(20), b"\r\n".to_vec()].concat();
        assert_eq!(
            lines(&long, 10),
            [format!("{}{}", "w".repeat(10), cut_marker(10, 10))]
        );
    }

    #[test]
    fn a_huge_line_without_a_newline_holds_at_most_the_cap() {
        // 50 MB of one line, with no newline: read in chunks, never held.
        let cap = 1000;
        let chunk = vec![b'q'; 1 << 16];
        let mut capped = CappedLines::new(cap);
        let mut total = 0u64;
        for _ in 0..800 {
            let (used, ended) = capped.feed(&chunk);
            assert_eq!((used, ended), (chunk.len(), false));
            assert!(capped.kept.capacity() <= cap);
            total += used as u64;
        }
        let line = capped.take_partial().unwrap();
        assert_eq!(
            line,
            format!("{}{}", "q".repeat(cap), cut_marker(cap, total - cap as u64))
        );
        assert!(capped.take_partial().is_none());
    }

    #[test]
    fn a_cut_line_read_again_within_max_cut_line_is_unchanged() {
        let once = lines(
            &[vec![b'v'; MAX_LINE * 3], b"\n".to_vec()].concat(),
            MAX_LINE,
        );
        assert_eq!(once.len(), 1);
        assert!(once[0].len() <= MAX_CUT_LINE);
        let stored = format!("{}\n", once[0]);
        assert_eq!(lines(stored.as_bytes(), MAX_CUT_LINE), once);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: a cap of 5 would split the third one.
        let input = "ééé\n".as_bytes();
        assert_eq!(lines(input, 5), [format!("éé{}", cut_marker(5, 2))]);
    }

    #[test]
    fn a_pending_part_waits_for_the_rest_of_its_line() {
        let mut capped = CappedLines::new(16);
        let mut first: &[u8] = b"par";
        assert_eq!(capped.next_sync(&mut first).unwrap(), None);
        assert!(capped.has_partial());
        let mut rest: &[u8] = b"tial\n";
        assert_eq!(
            capped.next_sync(&mut rest).unwrap().as_deref(),
            Some("partial")
        );
        assert!(!capped.has_partial());
    }

    #[tokio::test]
    async fn the_async_reader_reads_the_same() {
        let input = [b"x".repeat(100), b"\nok\nend".to_vec()].concat();
        let mut reader = tokio::io::BufReader::with_capacity(9, &input[..]);
        let mut capped = CappedLines::new(10);
        let mut out = Vec::new();
        while let Some(line) = capped.next_async(&mut reader).await.unwrap() {
            out.push(line);
        }
        out.extend(capped.take_partial());
        assert_eq!(
            out,
            [
                format!("xxxxxxxxxx{}", cut_marker(10, 90)),
                "ok".into(),
                "end".into()
            ]
        );
    }
}
