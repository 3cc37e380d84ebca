//! No client can stop the publisher's HTTP front: requests past the concurrency limit are
//! shed with a fast 503, a request that runs too long is cut, a client that dribbles its
//! headers is disconnected, an over-long URI gets a JSON answer, and `HEAD` publishes nothing.
//! Each test drives the real binary over loopback; the stalling clients are raw TCP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use test_support::{Api, PATIENCE, RunningPublisher, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A publisher process on free ports, and its API; the process dies with it.
struct TestApp {
    api: Api,
    http: SocketAddr,
    publisher: RunningPublisher,
    _dir: tempfile::TempDir,
}

/// Starts the publisher binary with `env` on top of port 0 everywhere.
async fn spawn_app(env: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env: Vec<_> = env.iter().map(|&(k, v)| (k, v.to_owned())).collect();
    let publisher =
        RunningPublisher::start(env!("CARGO_BIN_EXE_publisher").as_ref(), dir.path(), &env).await;
    TestApp {
        api: publisher.api(),
        http: publisher.addresses.http,
        publisher,
        _dir: dir,
    }
}

/// A connection that has sent the head of a `POST /signatures` announcing a body it never
/// sends: its request holds one slot of the concurrency limit until it is cut.
async fn stalled_post(http: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(http).await.expect("a connection");
    stream
        .write_all(
            b"POST /signatures HTTP/1.1\r\nhost: test\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n",
        )
        .await
        .expect("the head is sent");
    stream
}

/// Waits until the stalled requests in `holders` hold every slot, and returns the answer of
/// the request shed for it. A probing GET takes a slot while it is served: a stalled POST
/// that arrived meanwhile was the one shed (it has an answer, or is closed), so it is
/// replaced by a new one and the probe goes on.
async fn until_holding_every_slot(app: &TestApp, holders: &mut [TcpStream]) -> reqwest::Response {
    wait_until(
        "the stalled requests to hold every slot",
        PATIENCE,
        async || {
            let response = app.api.get("/downcase?param=x").await;
            if response.status() == 503 {
                return Some(response);
            }
            for holder in holders.iter_mut() {
                let mut byte = [0u8; 1];
                match holder.try_read(&mut byte) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    _ => *holder = stalled_post(app.http).await,
                }
            }
            None
        },
    )
    .await
}

/// Everything the server sends until it closes the connection, as text.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("the connection reads cleanly");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn requests_past_the_concurrency_limit_get_a_fast_503_and_the_service_recovers() {
    // Arrange: two requests hold both slots.
    let app = spawn_app(&[("MAX_CONCURRENT_REQUESTS", "2")]).await;
    let mut holders = vec![stalled_post(app.http).await, stalled_post(app.http).await];
    let shed = until_holding_every_slot(&app, &mut holders).await;

    // Act
    let started = Instant::now();
    let again = app.api.get("/downcase?param=x").await;
    let answered_in = started.elapsed();
    let (health, _) = app.api.get_json("/healthz").await;
    let metrics = app.api.metrics().await;
    holders.clear();
    let recovered = wait_until("the API to answer again", PATIENCE, async || {
        let (status, body) = app.api.get_json("/downcase?param=HeLLo").await;
        (status == 200).then_some(body)
    })
    .await;

    // Assert
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.expect("a JSON answer");
    assert_eq!(
        body["error"],
        "too many requests in progress; retry shortly"
    );
    assert_eq!(again.status(), 503, "still full");
    assert!(
        answered_in < Duration::from_secs(2),
        "shed, not queued: {answered_in:?}"
    );
    assert_eq!(health, 200, "probes stand outside the limit");
    assert!(
        metrics.value("http_requests_shed_total") >= Some(2.0),
        "{}",
        metrics.0
    );
    assert_eq!(recovered["result"], "hello");
}

#[tokio::test]
async fn a_request_running_past_the_request_timeout_gets_a_json_503() {
    // Arrange
    let app = spawn_app(&[("MAX_WAIT", "500ms"), ("REQUEST_TIMEOUT", "1s")]).await;
    let mut stalled = stalled_post(app.http).await;

    // Act
    let answer = read_to_close(&mut stalled).await;
    let metrics = app.api.metrics().await;

    // Assert
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(
        answer.ends_with(r#"{"error":"the request took too long and was stopped"}"#),
        "{answer}"
    );
    assert_eq!(metrics.value("http_requests_timed_out_total"), Some(1.0));
}

#[tokio::test]
async fn a_request_timeout_not_longer_than_max_wait_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_publisher"))
        .current_dir(dir.path())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("MAX_WAIT", "30s")
        .env("REQUEST_TIMEOUT", "30s")
        .output()
        .expect("the publisher runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("REQUEST_TIMEOUT (30s) must be longer than MAX_WAIT (30s)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_client_dribbling_its_headers_is_disconnected_while_others_are_served() {
    // Arrange
    let timeout = Duration::from_millis(500);
    let app = spawn_app(&[("HEADER_READ_TIMEOUT", "500ms")]).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(app.http).await.expect("a connection");
    slow.write_all(b"GET /downcase?param=x HTTP/1.1\r\nhost: te")
        .await
        .expect("part of a header is sent");
    let mut silent = TcpStream::connect(app.http).await.expect("a connection");

    // Act: others are served while the slow client waits to be cut.
    let served = app.api.downcase("served").await;
    let answer = read_to_close(&mut slow).await;
    let cut_after = started.elapsed();
    let silent_answer = read_to_close(&mut silent).await;
    // On a client of its own: the first one's pooled connection has sat idle past the
    // header-read timeout, which also closes idle keep-alive connections, and reusing it
    // could race the server's close.
    let after = Api::new(app.http).downcase("still served").await;

    // Assert
    assert_eq!(served["result"], "served");
    assert_eq!(answer, "", "cut without an answer");
    assert!(
        cut_after >= timeout,
        "not before the timeout: {cut_after:?}"
    );
    assert_eq!(
        silent_answer, "",
        "a connection that sends nothing is cut too"
    );
    assert_eq!(after["result"], "still served");
}

#[tokio::test]
async fn a_100_kib_param_gets_a_json_414() {
    // Arrange: raw TCP, because no client built on the `http` crate can hold such a URI.
    let app = spawn_app(&[]).await;
    let mut client = TcpStream::connect(app.http).await.expect("a connection");
    let request = format!(
        "GET /downcase?param={} HTTP/1.1\r\nhost: test\r\n\r\n",
        "a".repeat(100 * 1024)
    );

    // Act
    client
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    let answer = read_to_close(&mut client).await;
    let next = app.api.downcase("x").await;

    // Assert
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    assert!(
        answer.contains("content-type: application/json\r\n"),
        "{answer}"
    );
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(
        body["error"],
        "the URI is over 65534 bytes, more than the server reads"
    );
    assert_eq!(
        next["event"]["seq"], 1,
        "the refused request published nothing"
    );
}

#[tokio::test]
async fn a_param_just_under_the_uri_cap_gets_the_api_s_own_414() {
    let app = spawn_app(&[]).await;

    let (status, body) = app
        .api
        .get_json(&format!("/downcase?param={}", "a".repeat(60 * 1024)))
        .await;

    assert_eq!(status, 414);
    assert_eq!(
        body["error"],
        "`param` is 61440 bytes; the limit is 4096 bytes"
    );
}

#[tokio::test]
async fn head_on_downcase_is_refused_and_publishes_nothing() {
    // Arrange
    let app = spawn_app(&[]).await;

    // Act
    let head = app
        .api
        .request(reqwest::Method::HEAD, "/downcase?param=HeLLo")
        .send()
        .await
        .expect("an answer");
    let next = app.api.downcase("x").await;

    // Assert
    assert_eq!(head.status(), 405);
    assert_eq!(head.headers()["allow"], "GET");
    assert_eq!(next["event"]["seq"], 1, "HEAD published no event");
}

#[tokio::test]
async fn a_request_in_progress_at_sigterm_is_answered_before_the_publisher_exits() {
    // Arrange: one slot, taken by a request still sending its body.
    let mut app = spawn_app(&[("MAX_CONCURRENT_REQUESTS", "1")]).await;
    let mut holders = [stalled_post(app.http).await];
    until_holding_every_slot(&app, &mut holders).await;
    let [mut in_progress] = holders;

    // Act
    app.publisher.process.sigterm();
    wait_until("the listener to close", PATIENCE, async || {
        TcpStream::connect(app.http).await.is_err().then_some(())
    })
    .await;
    let body = format!("{:<100}", "{}");
    in_progress
        .write_all(body.as_bytes())
        .await
        .expect("the body is sent");
    let answer = read_to_close(&mut in_progress).await;
    let exit = app.publisher.process.exit_status(PATIENCE).await;

    // Assert
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.ends_with('}'), "a JSON body: {answer}");
    assert!(exit.success(), "exit: {exit}");
}
