//! Several publishers behind one load balancer: each follows the others' events
//! (`PEERS_CONNECT`), so `GET /signatures/{id}` answers on any of them, not only on the one
//! that took the request. `statuses` holds what was learnt, `follow` the SUB links.
//!
//! Nothing here is needed with one publisher: with no peers the map stays empty and a lookup
//! of an id that is not this publisher's answers at once, as before.

mod follow;
mod statuses;

pub use statuses::PeerStatuses;

use guard::Limits;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Origin};

/// How peers are followed.
pub struct Settings {
    /// The peers' event endpoints (this publisher's own may be among them).
    pub connect: Vec<String>,
    /// Most peer requests kept (`RESULTS_CAPACITY`).
    pub capacity: usize,
    /// How long each is kept (`RESULTS_TTL`).
    pub ttl: Duration,
    /// The guard in front of each peer link.
    pub limits: Option<Limits>,
}

/// The peer links and the purge task of their map; [`stop`](Peers::stop) ends both.
pub struct Peers {
    /// What the peers' events said.
    pub statuses: Arc<PeerStatuses>,
    followers: follow::Followers,
    purge: JoinHandle<()>,
    purge_stop: CancellationToken,
}

impl Peers {
    /// Starts following the peers of `settings` on behalf of the publisher `own`.
    pub fn start(settings: Settings, own: Origin, codec: Codec) -> Peers {
        let statuses = Arc::new(PeerStatuses::new(own, settings.capacity, settings.ttl));
        let purge_stop = CancellationToken::new();
        let purge = tokio::spawn({
            let (statuses, stop) = (statuses.clone(), purge_stop.clone());
            async move { statuses.purge_expired(stop).await }
        });
        let mut followers = follow::Followers::new(statuses.clone(), codec, settings.limits);
        followers.update(&settings.connect);
        Peers {
            statuses,
            followers,
            purge,
            purge_stop,
        }
    }

    /// Closes the links and stops the purge task.
    pub async fn stop(self) {
        self.followers.stop().await;
        self.purge_stop.cancel();
        if let Err(e) = self.purge.await {
            tracing::error!(cause = %e, "peer purge task failed");
        }
    }
}
