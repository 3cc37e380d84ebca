//! Putting a zeromq socket behind the socket guard (design §7), so that what a peer sends is
//! checked before the library sees it and what a peer leaves unread is bounded.
//!
//! - A socket the process binds ([`bind_guarded`]) binds on an internal address (a Unix
//!   socket in the abstract namespace, [`guard::InnerAddr`]); the guard listens on the
//!   configured address and caps the peers.
//! - A socket the process connects ([`connect_guarded`], [`guard_remote`]) connects to the
//!   guard's own internal listener; the guard connects to the configured address for each
//!   connection the socket makes, so the library's reconnects reach the remote afresh.

use anyhow::Context;
use guard::{Guard, GuardError, InnerAddr, Limits};
use std::time::Duration;
use zeromq::{Socket, ZmqError};

/// Pause after the first failed connect of [`connect_retrying`]; it doubles up to
/// [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between two connects.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// While the remote stays away, one failed connect in this many is logged.
const LOG_EVERY_ATTEMPTS: u64 = 30;

/// The guard's limits as flags; every binary takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct GuardArgs {
    /// Largest ZMQ message accepted from a peer, in bytes (one frame, or all frames of a
    /// multipart message). A peer that announces more is cut before anything is allocated.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_message_bytes: u64,

    /// Most peers connected to one ZMQ socket at once; more are closed at once, and counted.
    #[arg(long, env = "MAX_PEERS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_peers: u64,

    /// Bind and connect the ZMQ sockets directly, with no guard in front (only to measure what
    /// the guard costs: unguarded, one hostile packet can abort the process).
    #[arg(long, env = "GUARD_DISABLED", hide = true, default_value_t = false)]
    pub disabled: bool,
}

impl GuardArgs {
    /// The guard limits these flags give, with `outbound_budget_bytes` for peers that stop
    /// reading; `None` when the guard is disabled.
    pub fn limits(&self, outbound_budget_bytes: usize) -> Option<Limits> {
        (!self.disabled).then(|| Limits {
            max_message_bytes: self.max_message_bytes,
            max_connections: usize::try_from(self.max_peers).unwrap_or(usize::MAX),
            outbound_budget_bytes: Some(outbound_budget_bytes),
            ..Limits::default()
        })
    }
}

/// A socket's guard and the address it listens on.
#[must_use = "dropping the guard closes the socket to its peers"]
#[derive(Debug)]
pub struct Guarded {
    /// Bind side: the address peers reach the socket on (`tcp://IP:PORT`). Connect side: the
    /// guard's internal endpoint, for the socket to connect to. Unguarded, the configured one.
    pub endpoint: String,
    /// Keeps relaying while it lives; hold it as long as the socket. `None`: unguarded.
    pub guard: Option<Guard>,
}

/// Binds `socket` on an internal address and puts a guard named `name` listening on
/// `public` in front of it (or, with no `limits`, binds it on `public` itself). `what` names
/// the setting in errors (`EVENTS_BIND`).
pub async fn bind_guarded<S: Socket>(
    socket: &mut S,
    public: &str,
    limits: Option<Limits>,
    name: &'static str,
    what: &str,
) -> anyhow::Result<Guarded> {
    let Some(limits) = limits else {
        let endpoint = socket
            .bind(public)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind {what} {public}: {e}"))?;
        return Ok(Guarded {
            endpoint: endpoint.to_string(),
            guard: None,
        });
    };
    let inner = InnerAddr::new(name);
    socket.bind(&inner.endpoint()).await.map_err(|e| {
        anyhow::anyhow!("cannot bind the internal endpoint {inner} behind {what}: {e}")
    })?;
    let guard = Guard::bind(public, &inner, limits, name)
        .await
        .with_context(|| format!("cannot bind {what} {public}"))?;
    Ok(Guarded {
        endpoint: guard.local_endpoint(),
        guard: Some(guard),
    })
}

/// Why a socket could not be connected through its guard.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The guard could not start (a malformed remote endpoint, no internal listener).
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The socket could not connect, or its handshake with the remote failed.
    #[error(transparent)]
    Connect(#[from] ZmqError),
}

/// Starts a connect-side guard named `name` in front of `remote` (`tcp://host:port`; the host
/// is resolved at each connection): the returned [`Guarded::endpoint`] is the guard's
/// internal listener, for the socket to connect to. With no `limits` no guard is started and
/// the endpoint is `remote` itself.
pub async fn guard_remote(
    remote: &str,
    limits: Option<Limits>,
    name: &'static str,
) -> Result<Guarded, GuardError> {
    let Some(limits) = limits else {
        return Ok(Guarded {
            endpoint: remote.to_owned(),
            guard: None,
        });
    };
    let guard = Guard::connect_side(remote, limits, name).await?;
    Ok(Guarded {
        endpoint: guard.local_endpoint(),
        guard: Some(guard),
    })
}

/// Connects `socket` to `remote` through a connect-side guard named `name` (see
/// [`guard_remote`]); keep the returned guard as long as the socket. A failed connect drops the
/// guard again.
pub async fn connect_guarded<S: Socket>(
    socket: &mut S,
    remote: &str,
    limits: Option<Limits>,
    name: &'static str,
) -> Result<Guarded, ConnectError> {
    let guarded = guard_remote(remote, limits, name).await?;
    socket.connect(&guarded.endpoint).await?;
    Ok(guarded)
}

/// Connects `socket` to `guarded` (its guard in front of the publisher at `remote`), retrying
/// with a capped backoff until it connects (true) or `stop` resolves first (false). Unguarded,
/// the library itself waits for a remote that is not there yet; a guard accepts at once and
/// closes when it cannot reach the remote, which fails the connect: hence the retries. Later
/// reconnects are the library's own, through the same guard.
pub async fn connect_retrying<S: Socket>(
    socket: &mut S,
    guarded: &Guarded,
    remote: &str,
    stop: impl std::future::Future<Output = ()>,
) -> bool {
    let mut stop = std::pin::pin!(stop);
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1u64.. {
        let connected = tokio::select! {
            connected = socket.connect(&guarded.endpoint) => connected,
            () = &mut stop => return false,
        };
        match connected {
            Ok(()) => return true,
            Err(e) if attempt == 1 || attempt % LOG_EVERY_ATTEMPTS == 0 => {
                tracing::info!(endpoint = %remote, attempt, cause = %e, "publisher not reachable yet; retrying");
            }
            Err(e) => tracing::debug!(endpoint = %remote, attempt, cause = %e, "connect failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut stop => return false,
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
    false
}
