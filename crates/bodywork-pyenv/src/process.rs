//! Running an external tool (uv, pip, python) while streaming its output
//! lines to the caller as they arrive, and keeping the last lines for error
//! messages.
//!
//! This module only runs what it is given; it must not interpret a tool's
//! output or choose tools. Callbacks run on the calling thread (they need
//! not be `Send`): two reader threads forward lines over a channel.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use bodywork_lines::CappedLines;

/// How many trailing lines of each stream are kept for error messages.
pub(crate) const TAIL_LINES: usize = 20;

/// The result of a finished tool run.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    /// Last non-empty stderr lines, trimmed.
    pub stderr_tail: Vec<String>,
    /// Last non-empty stdout lines, trimmed.
    pub stdout_tail: Vec<String>,
}

impl Finished {
    /// The lines that best explain a failure: stderr, else stdout.
    pub(crate) fn error_lines(&self) -> Vec<String> {
        if self.stderr_tail.is_empty() {
            self.stdout_tail.clone()
        } else {
            self.stderr_tail.clone()
        }
    }
}

/// Run `cmd` with stdin closed, calling `on_line` for every output line
/// (stdout and stderr interleaved in arrival order). Fails only if the
/// process cannot be started or waited for; a non-zero exit is reported in
/// [`Finished::status`].
pub(crate) fn run_streaming(
    cmd: &mut Command,
    on_line: &mut dyn FnMut(&str),
) -> io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Under a build's stop (if any): killed with its whole tree when the
    // build is stopped.
    let (mut child, registered) = crate::stop::guard_spawn(cmd)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut stdout_tail = VecDeque::with_capacity(TAIL_LINES);
    let mut stderr_tail = VecDeque::with_capacity(TAIL_LINES);

    std::thread::scope(|scope| {
        if let Some(out) = stdout {
            let tx = tx.clone();
            scope.spawn(move || forward_lines(out, false, &tx));
        }
        if let Some(err) = stderr {
            let tx = tx.clone();
            scope.spawn(move || forward_lines(err, true, &tx));
        }
        drop(tx);
        for (is_stderr, line) in rx {
            on_line(&line);
            if line.is_empty() {
                continue;
            }
            let tail = if is_stderr {
                &mut stderr_tail
            } else {
                &mut stdout_tail
            };
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });

    let status = child.wait()?;
    if registered.as_ref().is_some_and(|r| r.stopped()) {
        return Err(crate::stop::stopped());
    }
    drop(registered);
    Ok(Finished {
        status,
        stderr_tail: stderr_tail.into(),
        stdout_tail: stdout_tail.into(),
    })
}

/// Read `stream` line by line (lossily decoded, trimmed) into `tx`.
/// Send each line of `stream`, cut at [`bodywork_lines::MAX_LINE`] bytes
/// (a package build printing one endless line is never held whole).
fn forward_lines(stream: impl Read, is_stderr: bool, tx: &mpsc::Sender<(bool, String)>) {
    let mut reader = BufReader::new(stream);
    let mut lines = CappedLines::default();
    while let Ok(Some(line)) = lines.next_sync(&mut reader) {
        if tx.send((is_stderr, line.trim().to_owned())).is_err() {
            return;
        }
    }
    if let Some(line) = lines.take_partial() {
        let _ = tx.send((is_stderr, line.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An installer (or a package's build) printing a line of megabytes,
    /// with no newline at the end: what arrives is cut at the cap.
    #[test]
    fn a_huge_line_arrives_cut() {
        let mut seen = Vec::new();
        let finished = run_streaming(
            Command::new("sh").args(["-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done; head -c 2000000 /dev/zero | tr '\\0' y"]),
            &mut |line| seen.push(line.to_owned()),
        )
        .unwrap();
        assert!(finished.status.success());
        assert_eq!(
            seen.len(),
            3,
            "{:?}",
            seen.iter().map(String::len).collect::<Vec<_>>()
        );
        let cap = bodywork_lines::MAX_LINE;
        assert_eq!(
            seen[0],
            format!(
                "{}{}",
                "x".repeat(cap),
                bodywork_lines::cut_marker(cap, 3_000_000 - cap as u64)
            )
        );
        assert_eq!(seen[1], "done");
        assert!(seen[2].starts_with(&"y".repeat(cap)) && seen[2].len() < cap + 100);
    }

    #[test]
    fn streams_lines_and_keeps_tails() {
        let mut seen = Vec::new();
        let finished = run_streaming(
            Command::new("sh").args([
                "-c",
                "echo '  out one  '; echo err one >&2; echo; echo err two >&2; exit 3",
            ]),
            &mut |line| seen.push(line.to_owned()),
        )
        .unwrap();
        assert_eq!(finished.status.code(), Some(3));
        assert_eq!(finished.stdout_tail, vec!["out one"]);
        assert_eq!(finished.stderr_tail, vec!["err one", "err two"]);
        assert_eq!(finished.error_lines(), vec!["err one", "err two"]);
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["", "err one", "err two", "out one"]);
    }

    #[test]
    fn keeps_only_the_last_lines() {
        let finished = run_streaming(
            Command::new("sh").args(["-c", "for i in $(seq 1 50); do echo line $i; done"]),
            &mut |_| {},
        )
        .unwrap();
        assert!(finished.status.success());
        assert!(finished.stderr_tail.is_empty());
        assert_eq!(finished.stdout_tail.len(), TAIL_LINES);
        assert_eq!(
            finished.stdout_tail.first().map(String::as_str),
            Some("line 31")
        );
        // Without stderr, stdout explains the failure.
        assert_eq!(
            finished.error_lines().last().map(String::as_str),
            Some("line 50")
        );
    }

    #[test]
    fn missing_program_is_an_io_error() {
        let err = run_streaming(
            &mut Command::new("/nonexistent/bodywork-no-such-tool"),
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
