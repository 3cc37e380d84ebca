//! Binding a zeromq socket behind the socket guard (design §7): the socket itself binds on an
//! internal loopback port, and the guard listens on the configured address, checks what each
//! peer sends before the library sees it, bounds what a peer may leave unread, and caps the
//! peers. Every socket a binary binds goes through [`bind_guarded`].

use anyhow::Context;
use guard::{Guard, Limits};
use zeromq::Socket;

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

    /// Bind the ZMQ sockets directly, with no guard in front (only to measure what the guard
    /// costs: unguarded, one hostile packet can abort the process).
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

/// A socket's guard and the address peers reach it on.
#[must_use = "dropping the guard closes the socket to its peers"]
pub struct Guarded {
    /// The address the guard listens on, as a zeromq endpoint (`tcp://IP:PORT`).
    pub endpoint: String,
    /// Keeps relaying while it lives; hold it as long as the socket. `None`: unguarded.
    pub guard: Option<Guard>,
}

/// Binds `socket` on an internal loopback port and puts a guard named `name` listening on
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
    let inner = socket
        .bind("tcp://127.0.0.1:0")
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the internal endpoint behind {what}: {e}"))?;
    let guard = Guard::bind(public, &inner.to_string(), limits, name)
        .await
        .with_context(|| format!("cannot bind {what} {public}"))?;
    Ok(Guarded {
        endpoint: format!("tcp://{}", guard.local_addr()),
        guard: Some(guard),
    })
}
