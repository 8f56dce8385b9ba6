//! Shared plumbing of commands served by the local daemon: find the home,
//! start an async runtime only for these commands (so `--version` and
//! `validate` stay instant), connect, and report errors in one line.

use std::future::Future;

use bodywork_local::Home;
use bodywork_local::client::{self, ClientError, Connection};
use bodywork_local::protocol::{Request, Response};

use crate::Outcome;
use crate::output;

/// Run `f` on a fresh single-threaded async runtime.
pub fn block_on<F: Future<Output = Outcome>>(f: F) -> Outcome {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            output::report_message(format!("cannot start the async runtime: {e}"));
            Outcome::Failure
        }
    }
}

pub fn home() -> Result<Home, Outcome> {
    Home::from_env().map_err(|e| {
        output::report_message(e);
        Outcome::Usage
    })
}

pub async fn connect(home: &Home) -> Result<Connection, Outcome> {
    client::connect(home).await.map_err(|e| fail(&e))
}

/// Print a client error and return the failure outcome.
pub fn fail(e: &ClientError) -> Outcome {
    output::report_error(e, None);
    Outcome::Failure
}

/// One request, one answer, on a daemon started if need be.
pub fn call(request: Request, on_answer: impl FnOnce(Response) -> Outcome) -> Outcome {
    let home = match home() {
        Ok(h) => h,
        Err(o) => return o,
    };
    block_on(async move {
        let conn = match connect(&home).await {
            Ok(c) => c,
            Err(o) => return o,
        };
        match conn.call(&request).await {
            Ok(answer) => on_answer(answer),
            Err(e) => fail(&e),
        }
    })
}

/// Print `Lines` answers as they are.
pub fn print_lines(answer: Response) -> Outcome {
    match answer {
        Response::Lines { lines } => {
            for l in lines {
                println!("{l}");
            }
            Outcome::Success
        }
        Response::Ok => Outcome::Success,
        other => unexpected(other),
    }
}

pub fn unexpected(answer: Response) -> Outcome {
    output::report_message(format!("unexpected answer from the daemon: {answer:?}"));
    Outcome::Failure
}

/// Print the `LogLine` frames of a stream to stdout, exactly as sent (safe
/// for `> log.txt`), until its `End`.
pub async fn print_log_lines(conn: &mut Connection) -> Outcome {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    loop {
        match conn.next().await {
            Ok(Response::LogLine { line }) => {
                if let Err(e) = writeln!(out, "{line}") {
                    output::report_error(&e, None);
                    return Outcome::Failure;
                }
            }
            Ok(Response::End) => return Outcome::Success,
            Ok(Response::Error { message }) => {
                output::report_message(message);
                return Outcome::Failure;
            }
            Ok(other) => return unexpected(other),
            Err(e) => return fail(&e),
        }
    }
}
