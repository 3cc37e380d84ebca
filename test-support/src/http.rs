//! The publisher's HTTP API as the tests call it: JSON in and out, every request bounded by a
//! timeout, `/metrics` read as numbers.

use crate::wait::wait_until;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one request may take before the test fails (longer than any `?wait=` used).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a signature request may stay pending (re-sends to another verifier included).
const OUTCOME_WITHIN: Duration = Duration::from_secs(30);

/// A client for one publisher's HTTP API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    /// The API served on `addr`.
    pub fn new(addr: SocketAddr) -> Api {
        Api {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }

    /// The full URL of `path` (which may carry a query).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Any request, e.g. `api.request(Method::PUT, "/downcase")`, to finish and send.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .timeout(REQUEST_TIMEOUT)
    }

    /// `GET path`; panics when no answer comes.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: no answer: {e}"))
    }

    /// `GET path`: the status and the JSON body (panics when the body is not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let body = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: the {status} answer is not JSON: {e}"));
        (status, body)
    }

    /// `GET /downcase?param=…`, asserting a 200; the answer's JSON.
    pub async fn downcase(&self, param: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, "/downcase")
            .query(&[("param", param)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("downcase {param:?}: no answer: {e}"));
        assert_eq!(response.status(), 200, "downcase {param:?}");
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("downcase {param:?}: the answer is not JSON: {e}"))
    }

    /// `POST /signatures{query}` with `body` as JSON: the answer as it came.
    pub async fn post_signature_response(&self, query: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, &format!("/signatures{query}"))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /signatures{query}: no answer: {e}"))
    }

    /// `POST /signatures{query}` (e.g. `?wait=5s`) with `body`: the status and JSON answer.
    pub async fn post_signature(&self, query: &str, body: &Value) -> (u16, Value) {
        self.post_raw(query, body.to_string().into_bytes()).await
    }

    /// `POST /signatures{query}` with raw bytes as an `application/json` body: the status and
    /// the JSON answer (`null` when the answer is not JSON).
    pub async fn post_raw(&self, query: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, &format!("/signatures{query}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /signatures{query}: no answer: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// Polls `GET /signatures/{id}` until the request is no longer `pending`; its last state.
    pub async fn signature_outcome(&self, id: &str) -> Value {
        let path = format!("/signatures/{id}");
        wait_until(
            &format!("{id} to leave pending"),
            OUTCOME_WITHIN,
            async || {
                let (_, body) = self.get_json(&path).await;
                (body["status"] != "pending").then_some(body)
            },
        )
        .await
    }

    /// How many verifiers `/readyz` reports (0 when it is not ready).
    pub async fn verifiers(&self) -> u64 {
        let (_, body) = self.get_json("/readyz").await;
        body["verifiers"].as_u64().unwrap_or(0)
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> Metrics {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200, "GET /metrics");
        Metrics(
            response
                .text()
                .await
                .unwrap_or_else(|e| panic!("GET /metrics: unreadable body: {e}")),
        )
    }
}

/// A `/metrics` page in Prometheus text format.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of `series` — a name with its labels as rendered, e.g. `tasks_sent_total` or
    /// `http_requests_total{route="/signatures",status="200"}` — or `None` when it is absent
    /// (a counter shows only once it has been counted).
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
    }

    /// Whether the page mentions `text` anywhere.
    pub fn contains(&self, text: &str) -> bool {
        self.0.contains(text)
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn a_series_is_read_by_its_name_and_labels_and_an_absent_one_is_none() {
        let page = Metrics(
            "# TYPE tasks_sent_total counter\ntasks_sent_total 400\n\
             tasks_sent_total_other 1\nhttp_requests_total{route=\"/x\",status=\"200\"} 3\n"
                .into(),
        );

        assert_eq!(page.value("tasks_sent_total"), Some(400.0));
        assert_eq!(
            page.value("http_requests_total{route=\"/x\",status=\"200\"}"),
            Some(3.0)
        );
        assert_eq!(page.value("tasks_resent_total"), None);
    }
}
