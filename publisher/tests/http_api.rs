//! The HTTP API over a real socket: answers, and a clear 4xx for each kind of bad input.

use clap::Parser;
use publisher::{Config, Publisher};
use std::time::Duration;

/// A publisher on free ports, served until the test ends; returns its base URL.
async fn spawn_publisher(extra: &[&str]) -> String {
    let mut args = vec![
        "publisher",
        "--http-addr",
        "127.0.0.1:0",
        "--events-bind",
        "tcp://127.0.0.1:0",
        "--tasks-bind",
        "tcp://127.0.0.1:0",
        "--results-bind",
        "tcp://127.0.0.1:0",
        "--id",
        "api-test",
    ];
    args.extend_from_slice(extra);
    let publisher = Publisher::bind(Config::parse_from(args))
        .await
        .expect("binds");
    let url = format!("http://{}", publisher.http_addr());
    tokio::spawn(publisher.run(std::future::pending()));
    url
}

async fn get(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn downcase_answers_with_the_lower_cased_param_and_its_event() {
    let url = spawn_publisher(&[]).await;
    let (status, body) = get(&format!("{url}/downcase?param=HeLLo")).await;
    assert_eq!(status, 200);
    assert_eq!(body["param"], "HeLLo");
    assert_eq!(body["result"], "hello");
    assert_eq!(body["event"]["publisher"], "api-test");
    assert_eq!(body["event"]["seq"], 1);
    let (_, body) = get(&format!("{url}/downcase/?param=%CE%A3%CE%91%CE%A3")).await;
    assert_eq!(body["result"], "σας", "final sigma, trailing-slash route");
    assert_eq!(body["event"]["seq"], 2);
}

#[tokio::test]
async fn a_missing_param_is_rejected_with_400() {
    let url = spawn_publisher(&[]).await;
    for query in ["", "?", "?other=1"] {
        let (status, body) = get(&format!("{url}/downcase{query}")).await;
        assert_eq!(status, 400);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("missing query parameter `param`")
        );
    }
}

#[tokio::test]
async fn an_over_long_param_is_rejected_with_414_and_the_limit() {
    let url = spawn_publisher(&["--max-param-bytes", "64"]).await;
    let (status, _) = get(&format!("{url}/downcase?param={}", "a".repeat(64))).await;
    assert_eq!(status, 200);
    let (status, body) = get(&format!("{url}/downcase?param={}", "a".repeat(65))).await;
    assert_eq!(status, 414);
    assert_eq!(body["error"], "`param` is 65 bytes; the limit is 64 bytes");
}

#[tokio::test]
async fn a_repeated_or_undecodable_param_is_rejected_with_400() {
    let url = spawn_publisher(&[]).await;
    let (status, body) = get(&format!("{url}/downcase?param=a&param=b")).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "`param` is given more than once")
    );
    let (status, body) = get(&format!("{url}/downcase?param=%FF%FE")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("not valid UTF-8"));
}

#[tokio::test]
async fn a_non_get_method_is_rejected_with_405_and_allow() {
    let url = spawn_publisher(&[]).await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = reqwest::Client::new()
            .request(method.clone(), format!("{url}/downcase?param=x"))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("method not allowed")
        );
    }
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let url = spawn_publisher(&[]).await;
    let (status, body) = get(&format!("{url}/etc/passwd")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no such resource: /etc/passwd");
}

#[tokio::test]
async fn health_is_reported() {
    let url = spawn_publisher(&[]).await;
    assert_eq!(get(&format!("{url}/healthz")).await.0, 200);
}
