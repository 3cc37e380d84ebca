//! The subscriber: connects a SUB socket to every configured publisher — each address of a
//! host name is one, followed as the name's addresses change — and writes one line
//! per event to the log file (design §5), each exactly once and in order per (publisher,
//! epoch), or a gap line naming what is missing and why (design §6). Heartbeats are read,
//! never written: they reveal events that did not arrive and whether the publisher serves
//! replay; a DEALER per publisher asks its replay endpoint for what is missing. Both sockets
//! connect through a socket guard (design §7), so no publisher can make them allocate
//! without bound.
//!
//! | module | what it holds |
//! |---|---|
//! | `connection` | one publisher connection, opened and closed as its address comes and goes |
//! | `receive` | the SUB socket of one publisher |
//! | `replay` | the DEALER socket of one publisher's replay endpoint |
//! | `writer` | the log's single owner: arrivals in, lines and asks out |
//! | `streams` | the state machine deciding what each arrival means |
//! | `log_file`, `log_line`, `log_read` | the file, its line format, reading lines back |
//! | `position`, `recover` | the position file beside the log, and reconciling it at start |
//! | `syncer` | the routine sync of the log and save of the positions, on a thread of its own |
//! | `health` | what the health port (`HEALTH_ADDR`) shows: metrics described, readiness |
//! | `reopen` | SIGHUP: reopen the log by its path (logrotate) |
//! | `rotate` | rotating the log by itself past `LOG_MAX_BYTES` |

mod config;
mod connection;
mod health;
mod log_file;
mod log_line;
mod log_read;
mod position;
mod receive;
mod recover;
mod reopen;
mod replay;
mod rotate;
mod streams;
mod syncer;
mod writer;

pub use config::{Config, ConfigError, Format, PublisherEndpoints, Start};
pub use log_line::escape_into;

use anyhow::Context;
use plumbing::Rejects;
use plumbing::health::HealthServer;
use plumbing::resolve::{self, Follow};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Batches that may wait for the writer before receivers stop reading: at most
/// [`receive::BATCH`] envelopes each, 16 Ki live envelopes in all.
const ARRIVALS_CAPACITY: usize = 16 * 1024 / receive::BATCH;
/// How long a new publisher's events are held for its first heartbeat (they come every
/// second while it is idle) before it is followed as one without replay.
const HEARTBEAT_WAIT: Duration = Duration::from_secs(3);
/// Live events held per publisher while a hole before them is filled.
const MAX_HELD: usize = 50_000;
/// What the guards in front of the SUB and DEALER sockets hold of what the subscriber sends a
/// publisher that does not read it (subscriptions and replay requests: a few bytes).
const GUARD_OUTBOUND_BUDGET_BYTES: usize = 1024 * 1024;

/// Runs until `shutdown` resolves (or the log file cannot be written), then writes out
/// everything received and returns. SIGHUP reopens the log file by its path.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // First of all: from here on a SIGHUP reopens the log instead of ending the process.
    let reopen = reopen::on_sighup()?;
    let codec = config.common.codec()?;
    let publishers = config.publishers()?;
    let targets = publishers
        .iter()
        .map(PublisherEndpoints::target)
        .collect::<Result<Vec<_>, _>>()?;
    let replay_on = publishers.iter().any(|p| p.replay.is_some());
    let topics = config.topic_prefixes();
    let (readiness, ready_state) = watch::channel(Err("reading the log back".to_owned()));
    let health =
        HealthServer::start(&config.health_addr, move || ready_state.borrow().clone()).await?;
    health::describe();
    let health_addr = health
        .as_ref()
        .map_or_else(|| "off".to_owned(), |h| h.local_addr().to_string());
    let ready = health::Ready::new(readiness);
    let pos_path = position::path_for(&config.log_file);
    let (log_path, pos) = (config.log_file.clone(), pos_path.clone());
    let recovered = tokio::task::spawn_blocking(move || recover::recover(&log_path, &pos))
        .await
        .context("log recovery panicked")??;
    let log = log_file::LogFile::open(&config.log_file, config.format)?;

    let (arrivals, queue) = mpsc::channel(ARRIVALS_CAPACITY);
    let stop = CancellationToken::new();
    let rejects = Arc::new(Rejects::new("a message that could not be decoded"));
    let origin = wire::Origin::starting_now(format!(
        "subscriber-{}-{}",
        plumbing::default_instance_id(),
        std::process::id()
    ));
    let connections = Arc::new(connection::Connections {
        codec,
        origin,
        topics: topics.clone(),
        chunk: config.replay_chunk,
        replay_timeout: config.replay_timeout,
        arrivals,
        rejects: Arc::clone(&rejects),
        limits: config.common.guard.limits(GUARD_OUTBOUND_BUDGET_BYTES),
        next: AtomicUsize::new(0),
    });
    let follow = Follow::start(targets, config.follow.dns_refresh);
    let following = tokio::spawn(resolve::for_each_peer(
        follow,
        stop.clone(),
        move |peer, gone| connections.open(peer, gone),
    ));
    let settings = streams::Settings {
        start: config.from,
        replay: replay_on,
        heartbeat_wait: HEARTBEAT_WAIT,
        replay_timeout: config.replay_timeout,
        give_up: config.replay_give_up,
        max_held: MAX_HELD,
        filtered: !topics.is_empty(),
    };
    let streams = streams::Streams::new(settings, recovered.resume);
    let keeping = writer::Keeping {
        sync: config.log_sync,
        rotation: config.log_max_bytes.map(|max_bytes| rotate::Rotation {
            max_bytes,
            keep: config.log_keep,
        }),
    };
    let positions =
        position::PositionFile::new(pos_path, recovered.positions, keeping.save_every());
    let writer = writer::Writer::new(log, streams, positions, ready, reopen, keeping)
        .context("cannot start the log-sync thread")?;
    let runtime = tokio::runtime::Handle::current();
    let mut writer = tokio::task::spawn_blocking(move || writer.run(queue, runtime));
    tracing::info!(
        path = %config.log_file.display(),
        sync = %config.log_sync,
        max_bytes = ?config.log_max_bytes,
        from = ?config.from,
        ?topics,
        health = %health_addr,
        "subscriber running"
    );

    tokio::select! {
        () = shutdown => {}
        finished = &mut writer => {
            // The writer only ends early when the file cannot be written.
            stop.cancel();
            return finished.context("log writer panicked")?;
        }
    }
    stop.cancel();
    match following.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(cause = %e, "a publisher connection failed"),
        Err(e) => tracing::error!(cause = %e, "following the publishers failed"),
    }
    let written = writer.await.context("log writer panicked")?;
    drop(health);
    tracing::info!(rejected = rejects.total(), "subscriber stopped");
    written
}
