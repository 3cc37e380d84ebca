//! The HTTP API of the publisher binary over a real socket: answers, and a clear 4xx for each
//! kind of bad input.

use test_support::{Api, RunningPublisher};

/// A publisher process on free ports, and its API; the process dies with it.
struct TestApp {
    api: Api,
    _publisher: RunningPublisher,
    _dir: tempfile::TempDir,
}

/// Starts the publisher binary with `env` on top of port 0 everywhere and id `api-test`.
async fn spawn_app(env: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut all = vec![("PUBLISHER_ID", "api-test".to_owned())];
    all.extend(env.iter().map(|&(k, v)| (k, v.to_owned())));
    let publisher =
        RunningPublisher::start(env!("CARGO_BIN_EXE_publisher").as_ref(), dir.path(), &all).await;
    TestApp {
        api: publisher.api(),
        _publisher: publisher,
        _dir: dir,
    }
}

/// The `error` text of an error answer.
fn error(body: &serde_json::Value) -> &str {
    body["error"]
        .as_str()
        .expect("an error answer has an error text")
}

#[tokio::test]
async fn downcase_answers_with_the_lower_cased_param_and_its_event() {
    // Arrange
    let app = spawn_app(&[]).await;

    // Act
    let (status, first) = app.api.get_json("/downcase?param=HeLLo").await;
    let (_, second) = app
        .api
        .get_json("/downcase/?param=%CE%A3%CE%91%CE%A3")
        .await;

    // Assert
    assert_eq!(status, 200);
    assert_eq!(first["param"], "HeLLo");
    assert_eq!(first["result"], "hello");
    assert_eq!(first["event"]["publisher"], "api-test");
    assert_eq!(first["event"]["seq"], 1);
    assert_eq!(second["result"], "σας", "final sigma, trailing-slash route");
    assert_eq!(second["event"]["seq"], 2);
}

#[tokio::test]
async fn a_missing_param_is_rejected_with_400() {
    let app = spawn_app(&[]).await;
    for query in ["", "?", "?other=1"] {
        let (status, body) = app.api.get_json(&format!("/downcase{query}")).await;

        assert_eq!(status, 400, "{query:?}");
        assert!(
            error(&body).contains("missing query parameter `param`"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_over_long_param_is_rejected_with_414_and_the_limit() {
    // Arrange
    let app = spawn_app(&[("MAX_PARAM_BYTES", "64")]).await;

    // Act
    let (at_limit, _) = app
        .api
        .get_json(&format!("/downcase?param={}", "a".repeat(64)))
        .await;
    let (over, body) = app
        .api
        .get_json(&format!("/downcase?param={}", "a".repeat(65)))
        .await;

    // Assert
    assert_eq!(at_limit, 200);
    assert_eq!(over, 414);
    assert_eq!(body["error"], "`param` is 65 bytes; the limit is 64 bytes");
}

#[tokio::test]
async fn a_repeated_or_undecodable_param_is_rejected_with_400() {
    // Arrange
    let app = spawn_app(&[]).await;

    // Act
    let (repeated, repeated_body) = app.api.get_json("/downcase?param=a&param=b").await;
    let (undecodable, undecodable_body) = app.api.get_json("/downcase?param=%FF%FE").await;

    // Assert
    assert_eq!(
        (repeated, error(&repeated_body)),
        (400, "`param` is given more than once")
    );
    assert_eq!(undecodable, 400);
    assert!(
        error(&undecodable_body).contains("not valid UTF-8"),
        "{undecodable_body}"
    );
}

#[tokio::test]
async fn a_non_get_method_is_rejected_with_405_and_allow() {
    let app = spawn_app(&[]).await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .api
            .request(method.clone(), "/downcase?param=x")
            .send()
            .await
            .expect("an answer");

        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET");
        let body: serde_json::Value = response.json().await.expect("a JSON answer");
        assert!(error(&body).starts_with("method not allowed"), "{body}");
    }
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app(&[]).await;

    let (status, body) = app.api.get_json("/etc/passwd").await;

    assert_eq!(status, 404);
    assert_eq!(body["error"], "no such resource: /etc/passwd");
}

#[tokio::test]
async fn health_is_reported() {
    let app = spawn_app(&[]).await;

    let (status, _) = app.api.get_json("/healthz").await;

    assert_eq!(status, 200);
}

#[tokio::test]
async fn metrics_are_described_and_the_plain_counters_are_there_at_zero_from_the_start() {
    // Arrange
    let app = spawn_app(&[]).await;

    // Act
    let metrics = app.api.metrics().await;

    // Assert
    for series in [
        "tasks_sent_total",
        "journal_fsyncs_total",
        "http_requests_shed_total",
    ] {
        assert_eq!(metrics.value(series), Some(0.0), "{series}:\n{}", metrics.0);
        assert!(
            metrics.contains(&format!("# HELP {series} ")),
            "{series}:\n{}",
            metrics.0
        );
    }
}
