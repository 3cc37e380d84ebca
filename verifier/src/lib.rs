//! The verifier (design contract §2, §6): a PULL worker that checks RSA signatures for the
//! publisher and pushes the verdicts back.
//!
//! [`run`] loads the keys, starts the worker threads and keeps one link per publisher — per
//! configured endpoint pair, or per address of a followed host name, added and removed as
//! the name's addresses change:
//! tasks arrive on a PULL socket, are verified by the link itself or, when many queue up, on
//! the [`pool`], and their results go back on a PUSH socket to the same publisher, with a
//! heartbeat announcing the keys every interval. The links survive publisher restarts;
//! shutdown finishes the tasks in flight.
//!
//! Inside (private modules): `link` serves one publisher — connect, serve, drain;
//! `connection` holds its two sockets, each behind a socket guard (design §7), and the ways a
//! connection is lost; `backoff` the pauses between attempts; `in_flight` the budget of tasks
//! taken, their tickets and generations; `health` what the health port (`HEALTH_ADDR`) shows —
//! metrics described, readiness; `reload` the key ring in use and its reloads (SIGHUP, or
//! `KEYS_DIR` seen to change).

mod backoff;
pub mod config;
mod connection;
mod health;
mod in_flight;
mod key_error;
pub mod keys;
mod link;
pub mod pool;
mod reload;
pub mod verify;

pub use config::{Config, ConfigError, PublisherEndpoints};
pub use keys::{KeyError, KeyRing, RsaKey};
pub use pool::Pool;
pub use verify::verify_task;

use in_flight::Budget;
use link::{Link, Shared};
use plumbing::health::HealthServer;
use plumbing::resolve::{self, Follow};
use reload::{LiveKeys, Reloader};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_util::sync::CancellationToken;
use wire::{Codec, SharedKeyError};

/// Tasks a verifier takes per worker thread before it has answered them: enough to keep the
/// workers busy between two reads, few enough that a verifier never hoards work.
pub const IN_FLIGHT_PER_WORKER: usize = 8;

/// What the guard in front of a result socket holds of verdicts and heartbeats a publisher
/// does not read; past it the connection is cut and made afresh (the publisher sends the tasks
/// of lost verdicts again).
const GUARD_OUTBOUND_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Why the verifier could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The flags do not fit together.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// SHARED_KEY_FILE is set but not usable.
    #[error("SHARED_KEY_FILE is not usable: {0}")]
    SharedKey(#[from] SharedKeyError),
    /// KEYS_DIR is not a usable set of RSA public keys.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The worker threads could not be started.
    #[error("cannot start the verification threads: {0}")]
    Threads(std::io::Error),
    /// A publisher link stopped on its own (a bug: links only end at shutdown).
    #[error("a publisher link failed: {0}")]
    Link(String),
    /// The health port could not be served.
    #[error(transparent)]
    Health(#[from] plumbing::health::HealthError),
}

/// Runs the verifier until `shutdown` resolves, then stops taking tasks, pushes the verdicts
/// of those in flight (bounded by a few seconds) and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), VerifierError> {
    let publishers = config.publishers()?;
    let targets = publishers
        .iter()
        .map(PublisherEndpoints::target)
        .collect::<Result<Vec<_>, _>>()?;
    let status = Arc::new(health::Status::new());
    let readiness = Arc::clone(&status);
    let health = HealthServer::start(&config.health_addr, move || readiness.readiness()).await?;
    health::describe();
    let health_addr = health
        .as_ref()
        .map_or_else(|| "off".to_owned(), |h| h.local_addr().to_string());
    let shared_key = config.common.shared_key()?;
    // Before the first load: from here on a SIGHUP reloads the keys instead of ending the process.
    let hangups = reload::hangups();
    let keys = KeyRing::load(&config.keys_dir)?;
    status.keys_loaded(keys.infos().len());
    let workers = config.workers.get();
    let pool = Pool::new(workers).map_err(VerifierError::Threads)?;
    let in_flight_limit = workers * IN_FLIGHT_PER_WORKER;
    let key_infos = keys.infos();
    tracing::info!(
        id = %config.id,
        keys = ?key_infos.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        workers,
        publishers = ?targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        tagged = shared_key.is_some(),
        health = %health_addr,
        "verifier starting"
    );
    let shared = Arc::new(Shared {
        origin: wire::Origin::starting_now(config.id),
        codec: Codec::new(shared_key),
        keys: Arc::new(LiveKeys::new(keys)),
        pool,
        own_share: in_flight::OwnShare::new(),
        budget: Budget::new(in_flight_limit),
        heartbeat_interval: config.heartbeat_interval,
        status: Arc::clone(&status),
        guard_limits: config.common.guard.limits(GUARD_OUTBOUND_BUDGET_BYTES),
    });

    let stop = CancellationToken::new();
    let reloader = Reloader {
        dir: config.keys_dir.clone(),
        keys: Arc::clone(&shared.keys),
        status,
        every: config.keys_check_interval,
    };
    let reloading = tokio::spawn(reloader.run(hangups, stop.child_token()));
    let follow = Follow::start(targets, config.follow.dns_refresh);
    let numbers = AtomicUsize::new(0);
    let links_shared = Arc::clone(&shared);
    let mut links = tokio::spawn(resolve::for_each_peer(
        follow,
        stop.clone(),
        move |peer, gone| {
            let index = numbers.fetch_add(1, Ordering::Relaxed);
            let link = PublisherEndpoints::of_peer(peer)
                .map(|endpoints| Link::new(index, endpoints, Arc::clone(&links_shared), gone));
            async move {
                if let Some(link) = link {
                    link.run().await;
                }
            }
        },
    ));
    let mut failure = None;
    tokio::select! {
        () = shutdown => tracing::info!("stopping: no new tasks, finishing those in flight"),
        ended = &mut links => {
            failure = Some(match ended {
                Ok(Ok(())) => "the links ended before shutdown".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            });
        }
    }
    stop.cancel();
    // It only ends at `stop`; a panic inside it would be a bug, and the links are stopping anyway.
    let _ = reloading.await;
    if failure.is_none() {
        match links.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = Some(error.to_string()),
            Err(error) => failure = Some(error.to_string()),
        }
    }
    // Every link is gone, so this is the last reference; the threads have nothing left to do.
    if let Some(shared) = Arc::into_inner(shared) {
        let _ = tokio::task::spawn_blocking(move || shared.pool.shutdown()).await;
    }
    drop(health);
    match failure {
        Some(reason) => Err(VerifierError::Link(reason)),
        None => {
            tracing::info!("verifier stopped");
            Ok(())
        }
    }
}
