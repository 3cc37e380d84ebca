//! The publisher: an axum HTTP front that answers `/downcase` and signature requests and
//! publishes every outcome as an event on a ZMQ PUB socket (design §2–4). `routes` holds the
//! HTTP API (one file per resource), `events` the publishing path, `verification` the hand-off
//! of signature checks to verifiers, `results` the requests the API can be asked about, and
//! `peers` what other publishers' events said of theirs.
//!
//! [`Publisher::bind`] binds every socket and reports the resolved addresses, so tests can bind
//! port 0; [`Publisher::run`] serves until the shutdown future resolves, then lets the queued
//! events go out before it returns.

mod config;
mod error;
mod events;
mod healthcheck;
pub mod journal;
mod metrics;
mod peers;
mod query;
mod replay;
mod request_id;
mod results;
mod routes;
mod serve;
mod state;
mod verification;

pub use config::{Command, Config, Healthcheck};
pub use error::ApiError;
pub use events::{Events, PublishError, Published};

use anyhow::Context;
use plumbing::resolve::Target;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use wire::Channel;

/// Most bytes held for a verifier or a replay asker that does not read. Neither gets more
/// than it asked for (a verifier's in-flight tasks, one replay chunk), so only a stuck peer
/// comes near it.
const WORKER_BACKLOG_BYTES: usize = 8 * 1024 * 1024;

/// A publisher whose sockets are bound, ready to [`run`](Publisher::run).
pub struct Publisher {
    listener: tokio::net::TcpListener,
    state: state::AppState,
    flusher: events::Flusher,
    dispatcher: tokio::task::JoinHandle<()>,
    replay: Option<replay::ReplayServer>,
    replay_stop: tokio_util::sync::CancellationToken,
    peers: peers::Peers,
    events_endpoint: Option<String>,
    /// The resolved PUSH (tasks) and PULL (results) endpoints.
    verification_endpoints: [String; 2],
    http_limits: config::HttpLimits,
}

impl Publisher {
    /// Binds the HTTP listener, the event socket and the task and result sockets, and starts
    /// the tasks behind them.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        // The recorder first: counters taken before it is installed count nowhere.
        metrics::handle();
        metrics::describe();
        metrics::start_upkeep();
        let codec = config.common.codec()?;
        let http_limits = config.http_limits().map_err(anyhow::Error::msg)?;
        // Nothing is published with events disabled, so nothing is journaled either.
        let journal_dir = config
            .journal_dir
            .as_deref()
            .filter(|_| !config.events_disabled);
        let recovered = match journal_dir {
            Some(dir) => Some(recover_journal(dir, &config).await?),
            None => None,
        };
        let identity = Arc::new(match recovered.as_ref().and_then(|r| r.stream.clone()) {
            Some((id, epoch)) if id == config.id => wire::Origin { id, epoch },
            Some((other, _)) => anyhow::bail!(
                "JOURNAL_DIR holds the journal of publisher {other:?}, not of {:?}: set \
                 PUBLISHER_ID={other} to go on with its stream, or give this publisher a \
                 JOURNAL_DIR of its own",
                config.id
            ),
            None => wire::Origin::starting_now(config.id.clone()),
        });
        let listener = tokio::net::TcpListener::bind(&config.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;
        // Nothing is published with events disabled, so there is nothing to replay either.
        let window = (!config.events_disabled).then(|| {
            let mut window = replay::Window::new(replay::Bounds {
                events: config.replay_window_events,
                bytes: config.replay_window_bytes,
            });
            // The journal's newest events are replayable again, as before the restart.
            for envelope in recovered.iter().flat_map(|r| &r.events) {
                window.lose_until(envelope.seq);
                window.push(envelope.seq, envelope.body.topic(), &codec.encode(envelope));
            }
            Arc::new(std::sync::Mutex::new(window))
        });
        // Subscribers may fall behind by a burst; verifiers and replay askers take what they
        // asked for, so the library's default budget serves them.
        let subscriber_limits = config
            .common
            .guard
            .limits(config.max_subscriber_backlog_bytes);
        let worker_limits = config.common.guard.limits(WORKER_BACKLOG_BYTES);
        let replay_stop = tokio_util::sync::CancellationToken::new();
        let replay = match &window {
            Some(window) => Some(
                replay::start(
                    &config.replay_bind,
                    worker_limits.clone(),
                    codec.clone(),
                    identity.clone(),
                    window.clone(),
                    replay_stop.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let (last_seq, requests, journal) = match journal_dir.zip(recovered) {
            Some((dir, recovered)) => {
                let settings = journal::Settings {
                    dir: dir.to_owned(),
                    sync: config.journal_sync,
                    max_bytes: config.journal_max_bytes,
                    max_age: config.journal_max_age,
                    segment_bytes: config.journal_segment_bytes,
                };
                let files = journal::writer::Files::new(settings, &identity, recovered.segments);
                (recovered.last_seq, recovered.requests, Some(files))
            }
            None => (0, Vec::new(), None),
        };
        let journaled = journal.is_some();
        let publishing = events::Settings {
            bind: config.events_bind.clone(),
            heartbeat_interval: config.heartbeat_interval,
            disabled: config.events_disabled,
            window,
            limits: subscriber_limits,
            last_seq,
            journal,
        };
        let (events, flusher, events_endpoint) =
            events::start(identity, publishing, codec.clone()).await?;
        let results = Arc::new(results::Results::new(
            config.results_capacity,
            config.results_ttl,
        ));
        let settings = verification::Settings {
            tasks_bind: config.tasks_bind.clone(),
            results_bind: config.results_bind.clone(),
            task_timeout: config.task_timeout,
            task_attempts: config.task_attempts,
            verifier_timeout: config.verifier_timeout,
            queue_capacity: config.task_queue,
            // The results store never evicts a pending request, so the API stops taking
            // requests at about this many in flight anyway; the dispatcher's own bound is
            // reached first only while outcomes wait for a stalled event queue.
            max_in_flight: config.results_capacity,
            limits: worker_limits.clone(),
            journaled,
        };
        let (verification, dispatcher, verification_endpoints) =
            verification::start(&settings, codec.clone(), events.clone()).await?;
        let targets = config.peers().into_iter().map(|endpoint| {
            Target::new(&[endpoint.as_str()]).with_context(|| format!("PEERS_CONNECT {endpoint}"))
        });
        let following = peers::Settings {
            connect: targets.collect::<anyhow::Result<_>>()?,
            dns_refresh: config.follow.dns_refresh,
            capacity: config.results_capacity,
            ttl: config.results_ttl,
            limits: worker_limits,
        };
        let peers = peers::Peers::start(following, events.identity().clone(), codec);
        restore_requests(requests, &results, &verification);
        let [tasks, results_endpoint] = &verification_endpoints;
        tracing::info!(
            http = %listener.local_addr()?,
            events = events_endpoint.as_deref().unwrap_or("disabled"),
            tasks = %tasks,
            results = %results_endpoint,
            replay = replay.as_ref().map_or("disabled", |r| r.endpoint.as_str()),
            id = %config.id,
            epoch = events.identity().epoch,
            "publisher listening"
        );
        let state = state::AppState {
            events,
            verification,
            results,
            ids: request_id::Tag::of(&config.id),
            peers: peers.statuses.clone(),
            peer_wait: config.peer_wait,
            max_param_bytes: config.max_param_bytes,
            max_body_bytes: config.max_body_bytes,
            max_wait: config.max_wait,
        };
        Ok(Publisher {
            listener,
            state,
            flusher,
            dispatcher,
            replay,
            replay_stop,
            peers,
            events_endpoint,
            verification_endpoints,
            http_limits,
        })
    }

    /// The address HTTP is served on.
    pub fn http_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The resolved PUB endpoint, `None` when publishing is disabled.
    pub fn events_endpoint(&self) -> Option<&str> {
        self.events_endpoint.as_deref()
    }

    /// A handle on the publishing path, as request handlers have: what it publishes is
    /// numbered and sent like every other event. [`run`](Publisher::run) ends only once
    /// every such handle is dropped.
    pub fn events(&self) -> Events {
        self.state.events.clone()
    }

    /// The resolved PUSH endpoint verifiers take tasks from.
    pub fn tasks_endpoint(&self) -> &str {
        &self.verification_endpoints[0]
    }

    /// The resolved PULL endpoint verifiers send verdicts and heartbeats to.
    pub fn results_endpoint(&self) -> &str {
        &self.verification_endpoints[1]
    }

    /// Serves until `shutdown` resolves; then finishes the requests in progress, sends every
    /// queued event, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = routes::router(self.state, &self.http_limits);
        serve::serve(
            self.listener,
            app,
            self.http_limits.header_read_timeout,
            shutdown,
        )
        .await;
        // The router is gone: the dispatcher lets in-flight checks finish and stops, and then
        // the last handle on the event queue is gone, so the socket task drains it and ends.
        if let Err(e) = self.dispatcher.await {
            tracing::error!(cause = %e, "verification dispatcher failed");
        }
        self.peers.stop().await;
        self.flusher.flushed().await;
        // Replay answers until the last event is out, so a subscriber catching up at the end
        // still gets it.
        self.replay_stop.cancel();
        if let Some(replay) = self.replay {
            if let Err(e) = replay.task.await {
                tracing::error!(cause = %e, "replay server failed");
            }
        }
        tracing::info!("publisher stopped");
        Ok(())
    }
}

/// Reads the journal in `dir` on a blocking thread (it may be large), repairing what is damaged.
async fn recover_journal(
    dir: &std::path::Path,
    config: &Config,
) -> anyhow::Result<journal::Recovered> {
    let (dir, keep) = (dir.to_owned(), config.replay_window_events);
    let shown = dir.display().to_string();
    let recovered = tokio::task::spawn_blocking(move || journal::recover::recover(&dir, keep))
        .await
        .context("reading the journal failed")?
        .with_context(|| format!("cannot read the journal in JOURNAL_DIR {shown}"))?;
    tracing::info!(
        dir = %shown,
        segments = recovered.segments.len(),
        records = recovered.records,
        last_seq = recovered.last_seq,
        epoch = recovered.stream.as_ref().map_or(0, |s| s.1),
        replayable = recovered.events.len(),
        requests = recovered.requests.len(),
        damaged = recovered.damage.len(),
        "journal read"
    );
    Ok(recovered)
}

/// Puts the accepted signature requests read from the journal back in the results store: those
/// with a journaled verdict answer it, the others are verified again (once a verifier is there)
/// and answer `pending` until then. Requests older than the results' TTL stay expired.
fn restore_requests(
    requests: Vec<journal::Restored>,
    results: &Arc<results::Results>,
    verification: &verification::Verification,
) {
    let now = wire::now_ms();
    let mut again = Vec::new();
    for restored in requests {
        let age = std::time::Duration::from_millis(now.saturating_sub(restored.accepted_ms));
        let Some(request) = results.restore(&restored.id, restored.key, age) else {
            continue;
        };
        match restored.outcome {
            Some(outcome) => {
                request.finish(results::State::Done {
                    status: outcome.status,
                    reason: outcome.reason,
                    verified_by: outcome.verified_by,
                });
            }
            None => again.push(verification::Job {
                request,
                sha256: restored.accepted.sha256,
                signature: restored.accepted.signature,
            }),
        }
    }
    if again.is_empty() {
        return;
    }
    tracing::info!(
        requests = again.len(),
        "signature requests from the journal are verified again"
    );
    let mut resubmitter = verification.resubmitter();
    tokio::spawn(async move {
        for job in again {
            if resubmitter.resubmit(job).await.is_err() {
                return;
            }
        }
    });
}
