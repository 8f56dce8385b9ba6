//! `bodywork dashboard [--port N]`: the web dashboard of the runtime
//! `--runtime` names, read through the same connection as every other
//! command and served on 127.0.0.1 until Ctrl-C (or SIGTERM); its only
//! writes are its redeploy and delete forms, each carrying this process's
//! same-origin token.

use std::net::Ipv4Addr;

use bodywork_dashboard::{Site, Token, serve};
use tokio::net::TcpListener;

use super::connect::with_control;
use crate::cli::{DashboardArgs, GlobalArgs};
use crate::{CliError, CliResult, Outcome};

/// The port tried first when none is given (the gateway has 8001).
const DEFAULT_PORT: u16 = 8002;

pub fn run(global: &GlobalArgs, args: &DashboardArgs) -> CliResult {
    let port = args.port;
    let token = Token::random().map_err(|e| CliError::error(&e, Outcome::Failure))?;
    with_control(global, None, async move |cp| {
        let listener = listen(port).await?;
        let port = listener
            .local_addr()
            .map_err(|e| {
                CliError::caused("cannot read the dashboard's address", &e, Outcome::Failure)
            })?
            .port();
        println!(
            "dashboard of the {} runtime at http://127.0.0.1:{port}/ (Ctrl-C stops it)",
            cp.name()
        );
        let site = Site {
            control: cp,
            base: "",
            port,
            token: &token,
        };
        serve(listener, site, super::stage::stopped())
            .await
            .map_err(|e| CliError::error(&e, Outcome::Failure))?;
        Ok(Outcome::Success)
    })
}

/// A listener on 127.0.0.1: on `port` when given, else on 8002, else on
/// a free port.
async fn listen(port: Option<u16>) -> Result<TcpListener, CliError> {
    let bind = |port: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, port));
    match port {
        Some(port) => bind(port).await.map_err(|e| {
            CliError::caused(
                format!("cannot serve the dashboard on 127.0.0.1:{port}"),
                &e,
                Outcome::Failure,
            )
            .with_hint("choose another --port, or leave it out for a free one")
        }),
        None => match bind(DEFAULT_PORT).await {
            Ok(listener) => Ok(listener),
            Err(_) => bind(0).await.map_err(|e| {
                CliError::caused(
                    "cannot serve the dashboard on 127.0.0.1",
                    &e,
                    Outcome::Failure,
                )
            }),
        },
    }
}
