//! The gateway with a fixed directory, for the benchmark (`bench/gateway.sh`):
//! serves one service NAMESPACE/NAME whose ready replicas are the given
//! addresses.
//!
//! Usage: `bench_gateway LISTEN NAMESPACE NAME REPLICA...`, e.g.
//! `bench_gateway 127.0.0.1:18001 bench up 127.0.0.1:18080`.

use std::net::SocketAddr;
use std::sync::Arc;

use bodywork_gateway::{Directory, GatewayOptions, Traffic, serve_gateway};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Fixed {
    namespace: String,
    name: String,
    replicas: Vec<SocketAddr>,
}

impl Directory for Fixed {
    fn ready_replicas(&self, namespace: &str, service: &str) -> Option<Vec<SocketAddr>> {
        (namespace == self.namespace && service == self.name).then(|| self.replicas.clone())
    }

    fn exposed(&self, _namespace: &str, _service: &str) -> bool {
        true
    }

    fn port(&self, _namespace: &str, _service: &str) -> Option<u16> {
        None
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, namespace, name, replicas @ ..] = args.as_slice() else {
        return Err("usage: bench_gateway LISTEN NAMESPACE NAME REPLICA...".into());
    };
    let replicas = replicas
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    let directory = Arc::new(Fixed {
        namespace: namespace.clone(),
        name: name.clone(),
        replicas,
    });
    // serve_gateway runs its own worker threads; this runtime only accepts.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen.as_str()).await?;
        eprintln!("bench_gateway listening on {}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        serve_gateway(
            listener,
            directory,
            Traffic::new(),
            GatewayOptions {
                // BENCH_GATEWAY_WORKERS=N: N worker threads instead of one per core.
                workers: std::env::var("BENCH_GATEWAY_WORKERS")
                    .ok()
                    .and_then(|n| n.parse().ok()),
                ..GatewayOptions::default()
            },
            shutdown,
        )
        .await?;
        Ok(())
    })
}
