//! The HTTP gateway against real loopback sockets and tiny hyper upstreams.
//!
//! Each test starts its own gateway and upstreams; shared helpers live in
//! `common`.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::helper::*;
use bodywork_gateway::GatewayOptions;
use bytes::Bytes;
use http::Request;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};

const SEED_PATH: &str = "/api/v1/namespaces/scoring-service/services/bodywork-serve-model-project--scoring-service/proxy/iris/v1/score";
const SEED_DATA: &str =
    r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#;

async fn gateway_with(
    namespace: &str,
    service: &str,
    replicas: &[std::net::SocketAddr],
) -> Gateway {
    let gw = gateway(GatewayOptions::default()).await;
    gw.directory.set(namespace, service, replicas);
    gw
}

#[tokio::test]
async fn seed_tutorial_curl_posts_json_through() {
    let a = upstream("a").await;
    let gw = gateway_with(
        "scoring-service",
        "bodywork-serve-model-project--scoring-service",
        &[a],
    )
    .await;
    let mut client = connect(gw.addr).await;
    client.ready().await.unwrap();
    let request = Request::post(SEED_PATH)
        .header("host", "localhost:8001")
        .header("content-type", "application/json")
        .body(text_body(SEED_DATA))
        .unwrap();
    let response = client.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/iris/v1/score");
    assert_eq!(seen["body"], SEED_DATA);
    assert_eq!(seen["headers"]["content-type"], "application/json");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["x-forwarded-host"], "localhost:8001");
    assert_eq!(seen["headers"]["host"], a.to_string());
}

#[tokio::test]
async fn every_route_form_reaches_the_service_with_its_query() {
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    let mut client = connect(gw.addr).await;
    for prefix in [
        "/api/v1/namespaces/ns/services/web/proxy",
        "/api/v1/namespaces/ns/services/web:5000/proxy",
        "/api/v1/namespaces/ns/services/http:web:5000/proxy",
        "/api/v1/namespaces/ns/services/web:/proxy",
        "/ns/web",
        // Repeated slashes merged, as ingress-nginx merges them.
        "/ns//web/",
    ] {
        let answer = send(
            &mut client,
            "GET",
            &format!("{prefix}/v1/x?a=1&b=two%20words"),
            empty(),
        )
        .await;
        assert_eq!(answer.status, 200, "{prefix}");
        let seen = answer.json();
        assert_eq!(seen["path"], "/v1/x", "{prefix}");
        assert_eq!(seen["query"], "a=1&b=two%20words", "{prefix}");
        assert_eq!(seen["replica"], "a");
    }
    let root = send(&mut client, "GET", "/ns/web", empty()).await;
    assert_eq!(root.json()["path"], "/");
}

#[tokio::test]
async fn a_service_not_exposed_is_reached_only_by_the_kubectl_proxy_path() {
    let a = upstream("a").await;
    let gw = gateway(GatewayOptions::default()).await;
    gw.directory.set_exposed("ns", "private", &[a], false);

    let answer = get(gw.addr, "/api/v1/namespaces/ns/services/private/proxy/x").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.replica(), "a");

    let answer = get(gw.addr, "/ns/private/x").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.headers["content-type"], "application/json");
    let error = answer.json();
    assert_eq!(error["namespace"], "ns");
    assert_eq!(error["service"], "private");
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("not exposed"), "{message}");
    assert!(
        message.contains("/api/v1/namespaces/ns/services/private/proxy/PATH"),
        "{message}"
    );
    // Refused requests count as unrouted, not as the service's own requests.
    let metrics = get(gw.addr, "/metrics").await.text();
    assert!(
        !metrics.contains(r#"service="private",code="404""#),
        "{metrics}"
    );
}

#[tokio::test]
async fn ten_megabytes_stream_both_ways() {
    const LEN: usize = 10 * 1024 * 1024;
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;

    // Download.
    let answer = get(gw.addr, &format!("/ns/web/big?bytes={LEN}")).await;
    assert_eq!(answer.status, 200);
    assert_pattern(&answer.body, LEN);

    // Upload echoed back, proving both directions stream: the first megabyte
    // must come back before the rest is even sent, which a gateway that
    // buffered whole bodies could never do.
    let mut client = connect(gw.addr).await;
    client.ready().await.unwrap();
    let (mut tx, body) = Channel::<Bytes>::new(4);
    let request = Request::post("/ns/web/echo")
        .header("host", "localhost")
        .header("content-length", LEN.to_string())
        .body(body.boxed())
        .unwrap();
    let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn(async move {
        let chunk = 64 * 1024;
        let first = 1024 * 1024;
        let mut sent = 0;
        while sent < LEN {
            if sent == first {
                wait.await.unwrap();
                // Only reached once; replace with a resolved receiver.
                return (tx, sent);
            }
            let data: Vec<u8> = (sent..sent + chunk).map(pattern_byte).collect();
            tx.send_data(Bytes::from(data)).await.unwrap();
            sent += chunk;
        }
        (tx, sent)
    });
    let response = tokio::time::timeout(Duration::from_secs(10), client.send_request(request))
        .await
        .expect("response head while the upload is still going")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::with_capacity(LEN);
    while received.is_empty() {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("echoed bytes before the upload finished")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            received.extend_from_slice(&data);
        }
    }
    go_on.send(()).unwrap();
    let (mut tx, mut sent) = sender.await.unwrap();
    let rest = tokio::spawn(async move {
        while sent < LEN {
            let data: Vec<u8> = (sent..sent + 64 * 1024).map(pattern_byte).collect();
            tx.send_data(Bytes::from(data)).await.unwrap();
            sent += 64 * 1024;
        }
    });
    let tail = body.collect().await.unwrap().to_bytes();
    received.extend_from_slice(&tail);
    rest.await.unwrap();
    assert_pattern(&received, LEN);
}

#[tokio::test]
async fn each_request_on_a_kept_alive_connection_picks_a_replica() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    let mut client = connect(gw.addr).await;
    let first = send(&mut client, "GET", "/ns/web/x", empty()).await;
    assert_eq!(first.replica(), "a");
    // A rolling update moves traffic to b between two requests of one connection.
    gw.directory.set("ns", "web", &[b]);
    let second = send(&mut client, "GET", "/ns/web/x", empty()).await;
    assert_eq!(second.replica(), "b");
    assert!(!client.is_closed());
}

#[tokio::test]
async fn requests_are_spread_round_robin() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let gw = gateway_with("ns", "web", &[a, b]).await;
    let mut client = connect(gw.addr).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(
            send(&mut client, "GET", "/ns/web/x", empty())
                .await
                .replica()
                .to_owned(),
        );
    }
    assert_eq!(seen.iter().filter(|r| *r == "a").count(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|r| *r == "b").count(), 3, "{seen:?}");
    assert_ne!(seen[0], seen[1]);
}

#[tokio::test]
async fn refused_replica_is_retried_elsewhere_with_no_failed_request() {
    let a = upstream("a").await;
    let dead = refused_addr().await;
    let gw = gateway_with("ns", "web", &[dead, a]).await;
    let mut client = connect(gw.addr).await;
    for i in 0..10 {
        // POST bodies too: they were not read before the refused connect.
        let answer = send(
            &mut client,
            "POST",
            "/ns/web/x",
            text_body(&format!("n={i}")),
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["body"], format!("n={i}"));
    }
    let metrics = get(gw.addr, "/metrics").await.text();
    assert!(
        metrics.contains(
            r#"bodywork_gateway_errors_total{namespace="ns",service="web",kind="connect"} 5"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"bodywork_gateway_requests_total{namespace="ns",service="web",code="200"} 10"#
    ));
}

#[tokio::test]
async fn unknown_service_and_route_are_404_json() {
    let gw = gateway(GatewayOptions::default()).await;
    let answer = get(gw.addr, "/api/v1/namespaces/ns/services/nope/proxy/x").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.headers["content-type"], "application/json");
    let error = answer.json();
    assert_eq!(error["namespace"], "ns");
    assert_eq!(error["service"], "nope");
    assert!(error["error"].as_str().unwrap().contains("not found"));

    let answer = get(gw.addr, "/nothing-here").await;
    assert_eq!(answer.status, 404);
    let error = answer.json();
    assert!(error["service"].is_null());
    assert!(error["error"].as_str().unwrap().contains("no route"));
}

#[tokio::test]
async fn a_port_the_service_does_not_serve_is_503_as_the_api_server_answers() {
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    for (name, says) in [
        ("web:5001", "no service port 5001 found for service \"web\""),
        (
            "http:web:5001",
            "no service port 5001 found for service \"web\"",
        ),
        (
            "web:grpc",
            "no endpoints available for service \"web:grpc\"",
        ),
        ("https:web:5000", "plain HTTP"),
    ] {
        let answer = get(
            gw.addr,
            &format!("/api/v1/namespaces/ns/services/{name}/proxy/x"),
        )
        .await;
        assert_eq!(answer.status, 503, "{name}");
        assert_eq!(answer.headers["content-type"], "application/json");
        let error = answer.json();
        assert_eq!(error["service"], "web", "{name}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            error.get("replica").is_none(),
            "{name}: reached the service"
        );
    }
    // The service's own port (and no port) still reach it.
    for name in ["web:5000", "http:web:5000", "web"] {
        let answer = get(
            gw.addr,
            &format!("/api/v1/namespaces/ns/services/{name}/proxy/x"),
        )
        .await;
        assert_eq!(answer.status, 200, "{name}");
        assert_eq!(answer.json()["replica"], "a", "{name}");
    }
}

#[tokio::test]
async fn no_ready_replica_is_503_json() {
    let gw = gateway_with("ns", "web", &[]).await;
    let answer = get(gw.addr, "/ns/web/x").await;
    assert_eq!(answer.status, 503);
    let error = answer.json();
    assert_eq!(
        (error["namespace"].as_str(), error["service"].as_str()),
        (Some("ns"), Some("web"))
    );
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("no ready replica")
    );
}

#[tokio::test]
async fn failing_upstreams_are_502_json() {
    // Every replica refuses.
    let dead = refused_addr().await;
    let gw = gateway_with("ns", "web", &[dead]).await;
    let answer = get(gw.addr, "/ns/web/x").await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["service"], "web");

    // A replica that takes the request and hangs up without answering.
    let rude = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut stream, _)) = rude.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            drop(stream);
        }
    });
    gw.directory.set("ns", "rude", &[rude_addr]);
    let answer = get(gw.addr, "/ns/rude/x").await;
    assert_eq!(answer.status, 502);
    let error = answer.json();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains(&rude_addr.to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_json() {
    let a = upstream("a").await;
    let gw = gateway(GatewayOptions {
        upstream_timeout: Duration::from_millis(200),
        ..GatewayOptions::default()
    })
    .await;
    gw.directory.set("ns", "web", &[a]);
    let answer = get(gw.addr, "/ns/web/slow?ms=3000").await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["namespace"], "ns");
    let quick = get(gw.addr, "/ns/web/slow?ms=1").await;
    assert_eq!(quick.status, 200);
}

#[tokio::test]
async fn healthz_answers_ok() {
    let gw = gateway(GatewayOptions::default()).await;
    let answer = get(gw.addr, "/healthz").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "ok");
}

#[tokio::test]
async fn metrics_count_requests_and_latency() {
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    gw.directory.set("ns", "idle", &[]);
    let mut client = connect(gw.addr).await;
    for _ in 0..3 {
        assert_eq!(
            send(&mut client, "GET", "/ns/web/x", empty()).await.status,
            200
        );
    }
    assert_eq!(
        send(&mut client, "GET", "/ns/idle/x", empty()).await.status,
        503
    );
    assert_eq!(
        send(&mut client, "GET", "/ns/ghost/x", empty())
            .await
            .status,
        404
    );
    let answer = send(&mut client, "GET", "/metrics", empty()).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = answer.text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
            .parse()
            .unwrap()
    };
    let web = r#"namespace="ns",service="web""#;
    let idle = r#"namespace="ns",service="idle""#;
    assert_eq!(
        value(&format!(
            "bodywork_gateway_requests_total{{{web},code=\"200\"}}"
        )),
        3.0
    );
    assert_eq!(
        value(&format!(
            "bodywork_gateway_requests_total{{{idle},code=\"503\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "bodywork_gateway_errors_total{{{idle},kind=\"no_ready_replica\"}}"
        )),
        1.0
    );
    assert_eq!(value("bodywork_gateway_unrouted_requests_total"), 1.0);
    assert_eq!(
        value(&format!(
            "bodywork_gateway_request_duration_seconds_count{{{web}}}"
        )),
        3.0
    );
    assert_eq!(
        value(&format!(
            "bodywork_gateway_request_duration_seconds_bucket{{{web},le=\"+Inf\"}}"
        )),
        3.0
    );
    assert_eq!(
        value(&format!(
            "bodywork_gateway_request_duration_seconds_bucket{{{web},le=\"60\"}}"
        )),
        3.0
    );
    assert!(
        value(&format!(
            "bodywork_gateway_request_duration_seconds_sum{{{web}}}"
        )) > 0.0
    );
    assert!(
        !text.contains("ghost"),
        "unknown services must not create series"
    );
}

#[tokio::test]
async fn in_flight_rises_during_a_slow_request_and_returns_to_zero() {
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    assert_eq!(gw.traffic.in_flight(a), 0);
    let addr = gw.addr;
    let slow = tokio::spawn(async move { get(addr, "/ns/web/slow?ms=400").await });
    let traffic = gw.traffic.clone();
    wait_until("the slow request is in flight", || {
        traffic.in_flight(a) == 1
    })
    .await;
    let answer = slow.await.unwrap();
    assert_eq!(answer.text(), "a");
    wait_until("the replica is idle again", || traffic.in_flight(a) == 0).await;
}

#[tokio::test]
async fn shutdown_stops_the_listener_and_lets_requests_in_flight_finish() {
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    assert_eq!(get(gw.addr, "/healthz").await.status, 200);
    let addr = gw.addr;
    let slow = tokio::spawn(async move { get(addr, "/ns/web/slow?ms=300").await });
    let traffic = gw.traffic.clone();
    wait_until("the slow request is in flight", || {
        traffic.in_flight(a) == 1
    })
    .await;
    gw.shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("serve_gateway returns after shutdown")
        .unwrap();
    assert!(result.is_ok());
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
    let answer = slow.await.unwrap();
    assert_eq!((answer.status.as_u16(), answer.text().as_str()), (200, "a"));
}

/// A connection that has been answered one request and is kept alive.
async fn kept_alive(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    conn
}

#[tokio::test]
async fn dropping_the_gateway_future_ends_its_workers_and_their_connections() {
    use tokio::io::AsyncReadExt;
    let gw = gateway(GatewayOptions::default()).await;
    // A kept-alive connection, idle on a worker.
    let mut conn = kept_alive(gw.addr).await;
    // Dropped, not shut down: the workers' channels close (nothing, not
    // even the deadline ticker, keeps them), so they end and close it.
    gw.task.abort();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed once the workers end")
        .unwrap();
}

#[tokio::test]
async fn a_connection_accepted_before_shutdown_gets_its_first_request_answered() {
    // As when a daemon hands over: the client has connected (the old
    // gateway accepted it) but its request arrives after the shutdown.
    use tokio::io::AsyncReadExt;
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // Accepted and handed to a worker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
        .write_all(b"GET /ns/web/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains(r#""replica":"a""#), "{answer:?}");
    tokio::time::timeout(Duration::from_secs(5), gw.task)
        .await
        .expect("serve_gateway returns after shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connection_header_named_headers_are_not_forwarded() {
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    let mut client = connect(gw.addr).await;
    client.ready().await.unwrap();
    let request = Request::get("/ns/web/x")
        .header("host", "localhost")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "private")
        .header("x-end", "kept")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let response = client.send_request(request).await.unwrap();
    let seen: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen["headers"]["x-end"], "kept");
    assert!(seen["headers"].get("x-hop").is_none(), "{seen}");
}

#[tokio::test]
async fn replicas_closing_idle_connections_cost_no_request() {
    // Answers one request per connection, keep-alive style, then hangs up
    // shortly after, as servers with a short keep-alive timeout do.
    let addr = raw_upstream(|mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
    .await;
    let gw = gateway_with("ns", "web", &[addr]).await;
    let mut client = connect(gw.addr).await;
    for _ in 0..5 {
        let answer = send(&mut client, "GET", "/ns/web/x", empty()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.text().as_str()),
            (200, "ok")
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let (a, accepted) = upstream_counted("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    // Sequential requests of one client connection share one upstream connection.
    let mut client = connect(gw.addr).await;
    for _ in 0..10 {
        assert_eq!(
            send(&mut client, "GET", "/ns/web/x", empty()).await.status,
            200
        );
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Other client connections may land on another gateway worker thread
    // (each has its own pool, at most 4), but never cost one connection per request.
    for _ in 0..6 {
        let mut client = connect(gw.addr).await;
        for _ in 0..5 {
            assert_eq!(
                send(&mut client, "GET", "/ns/web/x", empty()).await.status,
                200
            );
        }
    }
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) <= 4);
}

/// An upstream that sends its response head, waits, then sends the body in two pieces.
async fn upstream_pausing_before_the_body(
    pause: Duration,
    connection: &'static str,
) -> std::net::SocketAddr {
    raw_upstream(move |mut stream| async move {
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: {connection}\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes()).await;
        // The body in two pieces, so the gateway has to join them.
        tokio::time::sleep(pause / 2).await;
        let _ = stream.write_all(b"{\"ok\"").await;
        tokio::time::sleep(pause / 2).await;
        let _ = stream.write_all(b":true}").await;
    })
    .await
}

/// A hand-written HTTP upstream: for each connection, reads one request head
/// (a body-less request), then lets `answer` write whatever it likes.
async fn raw_upstream<F, Fut>(answer: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                answer(stream).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_small_answer_reaches_the_client_in_one_piece() {
    use tokio::io::AsyncReadExt;
    let a = upstream_pausing_before_the_body(Duration::from_millis(300), "close").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET /ns/web/x HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        // Head and body were written together: the first read holds both,
        // although the replica paused between them.
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"ok\":true}"), "{text}");
        // The replica's `connection: close` concerns only its own connection.
        assert!(
            !text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_small_answer_too_slow_to_finish_is_504() {
    let a = upstream_pausing_before_the_body(Duration::from_secs(3), "keep-alive").await;
    let gw = gateway(GatewayOptions {
        upstream_timeout: Duration::from_millis(200),
        ..GatewayOptions::default()
    })
    .await;
    gw.directory.set("ns", "web", &[a]);
    let answer = get(gw.addr, "/ns/web/x").await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["service"], "web");
}

#[tokio::test]
async fn a_small_request_body_sent_in_pieces_arrives_whole() {
    use tokio::io::AsyncReadExt;
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    let body: String = (0..30_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /ns/web/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(10_000) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(piece).await.unwrap();
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(seen["body"].as_str().unwrap().len(), body.len());
    assert_eq!(seen["body"], body.as_str());
}

#[tokio::test]
async fn head_requests_get_the_length_and_no_body_on_a_reused_connection() {
    let a = upstream("a").await;
    let gw = gateway_with("ns", "web", &[a]).await;
    let mut client = connect(gw.addr).await;
    // This path answers the replica's name, whatever the method.
    let full = send(&mut client, "GET", "/ns/web/slow?ms=0", empty()).await;
    assert_eq!(full.text(), "a");
    for _ in 0..3 {
        let head = send(&mut client, "HEAD", "/ns/web/slow?ms=0", empty()).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.headers["content-length"],
            full.body.len().to_string().as_str()
        );
    }
    // The connection still serves ordinary requests after the HEADs.
    assert_eq!(
        send(&mut client, "GET", "/ns/web/slow?ms=0", empty())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_request_for_another_host_is_refused_as_kubectl_proxy_does() {
    // DNS rebinding: a web page's own name resolving to 127.0.0.1 must not
    // reach the services through the visitor's browser.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = upstream("a").await;
    let gw = gateway(GatewayOptions::default()).await;
    gw.directory.set("ns", "web", &[a]);
    let ask = |host: &'static str| async move {
        let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let request =
            format!("GET /ns/web/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let refused = ask("evil.example:8001").await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused.contains("BODYWORK_GATEWAY_ACCEPT_HOSTS"),
        "{refused}"
    );
    let local = ask("localhost:8001").await;
    assert!(local.starts_with("HTTP/1.1 200"), "{local}");
}

/// Write `request` on a new connection and read the answer to its end.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_http_1_1_request_without_a_host_is_400() {
    let gw = gateway_with("ns", "web", &[upstream("a").await]).await;
    let answer = raw(
        gw.addr,
        "GET /ns/web/x HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("must have a Host header"), "{answer}");
    // HTTP/1.0 may go without (no browser does). The answer is HTTP/1.1,
    // as RFC 9110 §2.5 asks (nginx does the same), and closes.
    let old = raw(gw.addr, "GET /ns/web/x HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.1 200"), "{old}");
    assert!(old.contains("connection: close\r\n"), "{old}");
}

#[tokio::test]
async fn a_request_with_two_hosts_is_400() {
    let gw = gateway_with("ns", "web", &[upstream("a").await]).await;
    for hosts in [
        "Host: localhost\r\nHost: localhost\r\n",
        "Host: localhost\r\nHost: evil.example\r\n",
    ] {
        let answer = raw(
            gw.addr,
            &format!("GET /ns/web/x HTTP/1.1\r\n{hosts}Connection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("more than one Host"), "{answer}");
    }
}

#[tokio::test]
async fn an_absolute_target_naming_another_host_than_host_is_400() {
    let gw = gateway_with("ns", "web", &[upstream("a").await]).await;
    let answer = raw(
        gw.addr,
        "GET http://evil.example/ns/web/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("evil.example"), "{answer}");
    // The same host both ways is served.
    let same = raw(
        gw.addr,
        "GET http://localhost:8001/ns/web/x HTTP/1.1\r\nHost: localhost:8001\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(same.starts_with("HTTP/1.1 200"), "{same}");
}

#[tokio::test]
async fn a_host_port_out_of_range_is_400() {
    let gw = gateway_with("ns", "web", &[upstream("a").await]).await;
    for host in ["localhost:65536", "127.0.0.1:99999", "localhost:8001x"] {
        let answer = raw(
            gw.addr,
            &format!("GET /ns/web/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{host}: {answer}");
    }
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_400_not_502() {
    let gw = gateway_with("ns", "web", &[upstream("a").await]).await;
    // A good first chunk, then a chunk size that is not hexadecimal.
    let answer = raw(
        gw.addr,
        "POST /ns/web/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nnot a chunk\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("request body"), "{answer}");
    // A well-formed one goes through.
    let good = raw(
        gw.addr,
        "POST /ns/web/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(good.starts_with("HTTP/1.1 200"), "{good}");
    assert!(good.contains(r#""body":"hello""#), "{good}");
}

#[tokio::test]
async fn connections_over_the_limit_wait_in_the_backlog_until_one_ends() {
    let gw = gateway(GatewayOptions {
        max_connections: 2,
        ..GatewayOptions::default()
    })
    .await;
    // Two kept-alive connections take both slots.
    let mut first = connect(gw.addr).await;
    assert_eq!(
        send(&mut first, "GET", "/healthz", empty()).await.status,
        200
    );
    let mut second = connect(gw.addr).await;
    assert_eq!(
        send(&mut second, "GET", "/healthz", empty()).await.status,
        200
    );
    // A third is connected (the kernel's backlog) but not served...
    let mut third = tokio::spawn(get(gw.addr, "/healthz"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "served over the limit"
    );
    // ... until one of the two ends.
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        send(&mut second, "GET", "/healthz", empty()).await.status,
        200
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let gw = gateway(GatewayOptions {
        idle_timeout: Duration::from_millis(200),
        ..GatewayOptions::default()
    })
    .await;
    let closed = |mut conn: tokio::net::TcpStream| async move {
        let mut buf = [0u8; 1024];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
                .await
                .expect("closed in time")
                .unwrap_or(0);
            if n == 0 {
                return;
            }
        }
    };
    // Silent from the start.
    closed(tokio::net::TcpStream::connect(gw.addr).await.unwrap()).await;
    // Silent after a request, kept alive.
    let conn = kept_alive(gw.addr).await;
    closed(conn).await;
}

#[tokio::test]
async fn a_replica_whose_new_connection_is_refused_is_skipped_and_none_left_is_503() {
    // As the local runtime refuses a replica whose pod address someone
    // else listens on: another replica answers, with no failed request.
    let a = upstream("a").await;
    let b = upstream("b").await;
    let gw = gateway_with("ns", "web", &[a, b]).await;
    gw.directory
        .refuse(a, "pod address held by pid 1234 (python3 squat.py)");
    for _ in 0..4 {
        let answer = get(gw.addr, "/ns/web/x").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["replica"], "b");
    }
    // Connections to b were vetted twice each (before and once open), then
    // reused from the pool without asking again.
    let vetted = gw.directory.vettings();
    let mut client = connect(gw.addr).await;
    for _ in 0..4 {
        let answer = send(&mut client, "GET", "/ns/web/x", text_body("")).await;
        assert_eq!(answer.json()["replica"], "b");
    }
    assert!(
        gw.directory.vettings() - vetted <= 4,
        "pooled connections vetted again"
    );
    // Every replica refused: 503, saying why.
    gw.directory
        .refuse(b, "pod address held by pid 1235 (python3 squat.py)");
    gw.directory.set("ns", "other", &[a]);
    let answer = get(gw.addr, "/ns/other/x").await;
    assert_eq!(answer.status, 503);
    let error = answer.json();
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("no ready replica"), "{message}");
    assert!(message.contains("held by pid 1234"), "{message}");
}

#[tokio::test]
async fn chunked_interim_and_close_delimited_answers_reach_the_client_whole() {
    // An early hint, then a chunked answer in pieces, with a trailer.
    let chunked = raw_upstream(|mut stream| async move {
        for piece in [
            &b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n6;ext=1\r\n world\r\n",
            b"0\r\nx-trailer: t\r\n\r\n",
        ] {
            let _ = stream.write_all(piece).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // No length: the body ends where the replica closes.
    let until_close = raw_upstream(|mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _ = stream.write_all(b"the close").await;
    })
    .await;
    let gw = gateway(GatewayOptions::default()).await;
    gw.directory.set("ns", "chunked", &[chunked]);
    gw.directory.set("ns", "close", &[until_close]);
    for _ in 0..2 {
        let answer = get(gw.addr, "/ns/chunked/x").await;
        assert_eq!(
            (answer.status.as_u16(), answer.text().as_str()),
            (200, "hello world")
        );
        assert!(
            answer.headers.get("link").is_none(),
            "the interim answer is not passed on"
        );
        let answer = get(gw.addr, "/ns/close/x").await;
        assert_eq!(
            (answer.status.as_u16(), answer.text().as_str()),
            (200, "until the close")
        );
    }
}

#[tokio::test]
async fn a_post_whose_replica_closes_without_answering_is_502_and_not_sent_twice() {
    // The replica reads the request, then hangs up unanswered: it may have
    // acted on it, so a POST is not sent again; a GET is, to the next replica.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = seen.clone();
    let hangs_up = raw_upstream(move |stream| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { drop(stream) }
    })
    .await;
    let gw = gateway_with("ns", "web", &[hangs_up]).await;
    let mut client = connect(gw.addr).await;
    let answer = send(&mut client, "POST", "/ns/web/x", text_body("{}")).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);

    let b = upstream("b").await;
    gw.directory.set("ns", "web", &[hangs_up, b]);
    for _ in 0..4 {
        let answer = send(&mut client, "GET", "/ns/web/x", empty()).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(
            answer.text().contains(r#""replica":"b""#),
            "{}",
            answer.text()
        );
    }
}
