//! A cluster address with a fixed directory, for the benchmark
//! (`bench/cluster_address.sh`): balances connections to LISTEN over the
//! given replica addresses, as the daemon's cluster address of service
//! bench/up would.
//!
//! Usage: `bench_cluster LISTEN REPLICA...`, e.g.
//! `bench_cluster 127.0.0.1:18002 127.0.0.1:18080`.

use std::net::SocketAddr;
use std::sync::Arc;

use bodywork_gateway::{ConnectionLimit, Directory, Traffic, serve_cluster_address};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Fixed(Vec<SocketAddr>);

impl Directory for Fixed {
    fn ready_replicas(&self, namespace: &str, service: &str) -> Option<Vec<SocketAddr>> {
        (namespace == "bench" && service == "up").then(|| self.0.clone())
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
    let [listen, replicas @ ..] = args.as_slice() else {
        return Err("usage: bench_cluster LISTEN REPLICA...".into());
    };
    let replicas = replicas
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    // Cluster addresses run on the daemon's multi-threaded runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen.as_str()).await?;
        eprintln!("bench_cluster listening on {}", listener.local_addr()?);
        serve_cluster_address(
            listener,
            "bench".into(),
            "up".into(),
            Arc::new(Fixed(replicas)),
            Traffic::new(),
            ConnectionLimit::new(4096),
            CancellationToken::new(),
        )
        .await?;
        Ok(())
    })
}
