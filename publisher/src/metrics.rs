//! The process-wide Prometheus recorder (rendered by `GET /metrics`), and the middleware
//! counting requests by route and status.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::OnceLock;

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        plumbing::health::install_recorder(PrometheusBuilder::new().set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("verification_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        ))
    })
}

/// Every series the publisher (and its guards) records, with its help text. The ones without
/// labels are registered at zero, so a dashboard sees them before anything happened.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    // PEERS_CONNECT may name a host name to follow.
    plumbing::resolve::describe_metrics();
    const PLAIN_COUNTERS: &[(&str, &str)] = &[
        (
            "http_requests_shed_total",
            "Requests answered 503 at once past MAX_CONCURRENT_REQUESTS.",
        ),
        (
            "http_requests_timed_out_total",
            "Requests cut at REQUEST_TIMEOUT.",
        ),
        (
            "http_accept_errors_total",
            "Errors accepting HTTP connections (out of file descriptors, say).",
        ),
        (
            "tasks_sent_total",
            "Verification tasks sent for the first time.",
        ),
        (
            "tasks_resent_total",
            "Verification tasks sent again after their deadline or an error verdict.",
        ),
        (
            "tasks_failed_total",
            "Signature requests ended as error after their last attempt.",
        ),
        (
            "tasks_duplicate_results_total",
            "Late or duplicate verdicts, ignored.",
        ),
        (
            "tasks_send_skipped_total",
            "Task sends skipped because the outbox was full (the deadline re-sends).",
        ),
        ("replay_requests_total", "Replay requests answered."),
        (
            "replay_requests_dropped_total",
            "Replay requests dropped (undecodable, untagged, or too many at once).",
        ),
        ("events_replayed_total", "Events sent again by replay."),
        ("journal_fsyncs_total", "fdatasync calls of the journal."),
        ("journal_events_total", "Events written to the journal."),
        ("journal_bytes_total", "Bytes written to the journal."),
        (
            "journal_write_errors_total",
            "Journal writes that failed (and were retried).",
        ),
        (
            "journal_segments_deleted_total",
            "Old journal segments deleted by size or age.",
        ),
        (
            "journal_damage_total",
            "Damaged places in the journal repaired at start.",
        ),
        (
            "peer_events_received_total",
            "Signature events taken in from peer publishers (PEERS_CONNECT).",
        ),
        (
            "peer_lookups_answered_total",
            "GET /signatures/{id} answered from what peers' events said.",
        ),
    ];
    for &(name, help) in PLAIN_COUNTERS {
        describe_counter!(name, help);
        metrics::counter!(name).absolute(0);
    }
    describe_counter!("http_requests_total", "HTTP requests by route and status.");
    describe_counter!(
        "events_published_total",
        "Events sent on the PUB socket, by topic."
    );
    describe_counter!(
        "tasks_completed_total",
        "Signature requests ended by a verdict, by status."
    );
    describe_counter!(
        "messages_rejected_total",
        "ZMQ messages dropped as undecodable, by socket."
    );
    describe_counter!(
        "guard_connections_total",
        "Connections the socket guards accepted, by socket."
    );
    describe_counter!(
        "guard_cut_total",
        "Connections the socket guards cut, by socket and reason."
    );
    describe_gauge!(
        "guard_connections_active",
        "Connections open through the socket guards of each name."
    );
    describe_gauge!("replay_window_events", "Events held in the replay window.");
    describe_gauge!("replay_window_bytes", "Bytes held in the replay window.");
    describe_gauge!("journal_segments", "Journal segments kept.");
    describe_gauge!(
        "peer_requests_known",
        "Peer publishers' signature requests known from their events."
    );
    describe_gauge!(
        "peer_publishers_known",
        "Peer publishers heard from (events or heartbeats)."
    );
    metrics::gauge!("peer_requests_known").set(0.0);
    metrics::gauge!("peer_publishers_known").set(0.0);
    describe_histogram!(
        "verification_seconds",
        "Time from a task's first send to its verdict."
    );
    describe_histogram!(
        "journal_batch_events",
        "Events per journal write (group commit)."
    );
}

/// Folds histogram samples every few seconds on a task of the current runtime, once per
/// process: the recorder otherwise keeps every sample until `/metrics` is read, so a
/// publisher nobody scrapes would grow by one sample per verification and journal write.
pub fn start_upkeep() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        tokio::spawn(plumbing::health::fold_histograms(handle()));
    });
}

/// Counts every request by its route template and answer status.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    count_request(route, response.status().as_u16());
    response
}

thread_local! {
    /// `http_requests_total` handles by status, then route: registering a labelled counter
    /// (building its key, hashing it, a look-up in the recorder's registry) costs more than
    /// counting, and the routes and statuses seen are few. Per thread, so no lock is shared.
    static REQUEST_COUNTERS: std::cell::RefCell<HashMap<u16, HashMap<String, metrics::Counter>>> =
        std::cell::RefCell::new(HashMap::new());
}

/// Counts one request in the `http_requests_total` series of `route` and `status`,
/// registering the series on first use.
fn count_request(route: &str, status: u16) {
    REQUEST_COUNTERS.with_borrow_mut(|by_status| {
        let by_route = by_status.entry(status).or_default();
        if let Some(counter) = by_route.get(route) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            "http_requests_total",
            "route" => route.to_owned(),
            "status" => status.to_string()
        );
        counter.increment(1);
        by_route.insert(route.to_owned(), counter);
    })
}
