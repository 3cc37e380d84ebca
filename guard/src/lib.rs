//! The socket guard (design §7): a project-owned TCP relay that stands between a zeromq
//! socket and its untrusted peers and covers three gaps of the `zeromq` 0.7 library — no
//! maximum message size (its decoder reserves whatever a frame header announces), no bound
//! on what it queues for a peer that stops reading, and no connection cap.
//!
//! - **Bind side** ([`Guard::bind`]): the zeromq socket binds on an internal address
//!   ([`InnerAddr`], a Unix socket in Linux's abstract namespace); the guard listens on the
//!   public address and, per peer, connects to the internal one and relays both ways.
//! - **Connect side** ([`Guard::connect_side`]): the zeromq socket connects to the guard's
//!   own internal listener ([`Guard::local_endpoint`]); per connection the guard connects to
//!   the remote `host:port` (resolved anew each time) and relays. A failed or closed remote
//!   closes the local connection, so the library's own reconnect logic takes over.
//!
//! Bytes from the peer pass through a streaming ZMTP inspector ([`zmtp::Inspector`]) before
//! they are forwarded: a bad greeting, a mechanism other than NULL, unknown frame flags, a
//! large command, or a frame or message over [`Limits::max_message_bytes`] cut the
//! connection on the header alone, as does a greeting and READY not done within
//! [`Limits::handshake_timeout`]. Bodies are forwarded as they come and never judged.
//! Bytes toward the peer are drained from the library at once and held by the guard up to
//! [`Limits::outbound_budget_bytes`]; a peer that lets more pile up is cut (the library then
//! drops its queue for that peer, and the peer reconnects and catches up by replay). Past
//! [`Limits::max_connections`] concurrent peers, new ones are accepted and closed at once.
//!
//! Metrics (label `socket` = the guard's name): `guard_connections_total`,
//! `guard_connections_active` (summed over the guards of one name), `guard_cut_total{reason}` with
//! the reasons of [`CutReason`].
//! Each cut is logged at debug; a warning sums them up at most every ten seconds.
//!
//! Costs: one extra hop per connection over a Unix socket (cheaper than the loopback TCP
//! connection it replaces: no TCP stack, no packet filter on the way) and up to
//! `outbound_budget_bytes` of memory per slow peer, so at most `max_connections ×
//! outbound_budget_bytes` per guard. The library sees every peer as an unnamed Unix socket.
//! The internal address is reachable from the process's network namespace, as a loopback
//! port would be; Linux only, like the rest of the project.

mod guard;
mod relay;
mod report;
pub mod zmtp;

use std::time::Duration;

pub use guard::{Guard, InnerAddr};
pub use report::CutReason;

/// What a guard enforces on each connection and on its number of connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted from a peer: one frame, or all frames of a multipart
    /// message together.
    pub max_message_bytes: u64,
    /// Largest command frame accepted from a peer (READY, SUBSCRIBE, PING are tiny).
    pub max_command_bytes: u64,
    /// Most peers relayed at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Most bytes the guard holds for a peer that does not take them (on top of what the
    /// kernel's socket buffers hold); one byte more and the peer is cut at once. It must
    /// exceed the largest burst a healthy peer may fall behind by. `None` relays with plain
    /// backpressure, leaving the library to queue as it does unguarded.
    pub outbound_budget_bytes: Option<usize>,
    /// Time a peer has to send its greeting and first command (READY); also the bound on
    /// connecting to the other side of the relay.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    /// 4 MiB messages, 64 KiB commands, 1 024 peers, 8 MiB held per peer, 10 s handshake.
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_command_bytes: 64 * 1024,
            max_connections: 1024,
            outbound_budget_bytes: Some(8 * 1024 * 1024),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    fn frame_limits(&self) -> zmtp::FrameLimits {
        zmtp::FrameLimits {
            max_message_bytes: self.max_message_bytes,
            max_command_bytes: self.max_command_bytes,
        }
    }
}

/// Why a guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// An address is not of the form `tcp://host:port` (or `host:port`).
    #[error("`{endpoint}` is not a tcp://host:port endpoint{hint}")]
    Endpoint {
        /// The address as given.
        endpoint: String,
        /// More on what is wrong, or empty.
        hint: &'static str,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {endpoint}")]
    Listen {
        /// The address listened on.
        endpoint: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}
