//! Following peers: one task per peer event endpoint (per address, for a followed host name)
//! owns a SUB socket, subscribed to the
//! `signature.` events and the heartbeats, behind a connect-side guard (`peers-in`) that checks
//! what the peer sends before the library sees it. What decodes (tags checked with the shared
//! key, like every receiver) goes into [`PeerStatuses`]; the rest is counted and dropped.
//!
//! The guard closes the socket's connection when the peer cannot be reached, so the first
//! connect is retried ([`plumbing::connect_retrying`]); later ones are the library's own.

use super::statuses::{Applied, PeerStatuses};
use guard::Limits;
use plumbing::Rejects;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wire::{Broadcast, Codec};
use zeromq::{Socket, SocketOptions, SocketRecv, SubSocket};

/// Topic prefixes followed: the signature events, and heartbeats, which tell which peers are
/// alive before any of their requests is heard of.
const PREFIXES: [&str; 2] = ["signature.", wire::HEARTBEAT_TOPIC];

/// Receives from the peer at `endpoint` into `statuses` until `stop` is cancelled.
pub(super) async fn follow(
    endpoint: String,
    statuses: Arc<PeerStatuses>,
    codec: Codec,
    limits: Option<Limits>,
    rejects: Arc<Rejects>,
    stop: CancellationToken,
) {
    // Held as long as the socket: dropping it would close the socket's connection for good.
    let guarded = match plumbing::guard_remote(&endpoint, limits, "peers-in").await {
        Ok(guarded) => guarded,
        Err(e) => {
            tracing::error!(%endpoint, cause = %e, "cannot guard the peer's event endpoint");
            return;
        }
    };
    let mut options = SocketOptions::default();
    // A peer may start later than this publisher, or be away a while: wait as long as we run.
    options.no_connect_timeout();
    let mut socket = SubSocket::with_options(options);
    if !plumbing::connect_retrying(&mut socket, &guarded, &endpoint, stop.cancelled()).await {
        return;
    }
    for prefix in PREFIXES {
        if let Err(e) = socket.subscribe(prefix).await {
            tracing::error!(%endpoint, prefix, cause = %e, "cannot subscribe to the peer");
            return;
        }
    }
    tracing::info!(%endpoint, "following peer");
    loop {
        let message = tokio::select! {
            m = socket.recv() => m,
            () = stop.cancelled() => break,
        };
        let message = match message {
            Ok(message) => message,
            // The connection dropped; the socket reconnects by itself.
            Err(e) => {
                tracing::debug!(%endpoint, cause = %e, "peer receive interrupted");
                continue;
            }
        };
        let applied = match codec.decode::<Broadcast>(&message) {
            Ok(envelope) => statuses.apply(envelope),
            Err(e) => {
                rejects.record(&endpoint, &e);
                continue;
            }
        };
        match applied {
            Ok(Applied::Event) => metrics::counter!("peer_events_received_total").increment(1),
            Ok(Applied::Heard | Applied::Own) => {}
            Err(refused) => {
                rejects.record(&endpoint, &refused);
            }
        }
    }
}
