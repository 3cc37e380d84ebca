//! One publisher connection: the SUB socket of its event endpoint and the replay client of its
//! replay endpoint, opened when the publisher's address appears (an endpoint as configured, or
//! one address of a followed host name) and closed when it vanishes. The writer hears of the
//! connection before anything arrives on it and after everything has, so asks never go to a
//! client that is gone; a publisher's stream is keyed by its id, not by the connection, so a
//! publisher that moves to another address is not logged twice.

use crate::config::PublisherEndpoints;
use crate::replay;
use crate::writer::{Arrival, Arrivals};
use guard::Limits;
use plumbing::Rejects;
use plumbing::resolve::Peer;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Origin};

/// Asks that may wait for a replay client; past it the writer tries again on its next tick.
const ASKS_CAPACITY: usize = 64;

/// What every connection shares.
pub struct Connections {
    /// Decodes what arrives, encodes replay requests.
    pub codec: Codec,
    /// Sender id of replay requests.
    pub origin: Origin,
    /// Topic prefixes followed (`TOPICS`); empty: every topic.
    pub topics: Vec<String>,
    /// Events asked for per replay request.
    pub chunk: u32,
    /// `REPLAY_TIMEOUT`.
    pub replay_timeout: Duration,
    /// To the writer.
    pub arrivals: mpsc::Sender<Arrivals>,
    /// Counts what does not decode.
    pub rejects: Arc<Rejects>,
    /// What the guards in front of each socket enforce; `None`: connected directly.
    pub limits: Option<Limits>,
    /// The number of the next connection (numbers are never reused).
    pub next: AtomicUsize,
}

impl Connections {
    /// Serves the connection to `peer` until `gone` is cancelled (the address vanished, or
    /// the process stops), then closes its sockets and tells the writer.
    pub fn open(
        self: &Arc<Self>,
        peer: &Peer,
        gone: CancellationToken,
    ) -> impl Future<Output = ()> + Send + use<> {
        let this = Arc::clone(self);
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let endpoints = PublisherEndpoints::of_peer(peer);
        async move {
            let Some(endpoints) = endpoints else { return };
            this.serve(number, endpoints, gone).await;
        }
    }

    async fn serve(&self, number: usize, endpoints: PublisherEndpoints, gone: CancellationToken) {
        let (asks, asked) = mpsc::channel(ASKS_CAPACITY);
        let joined = Arrival::Joined {
            endpoint: number,
            events: endpoints.events.clone(),
            asks: endpoints.replay.is_some().then_some(asks),
        };
        if self.arrivals.send(vec![joined]).await.is_err() {
            return;
        }
        let replaying = endpoints.replay.map(|endpoint| {
            let client = replay::Client {
                endpoint,
                codec: self.codec.clone(),
                origin: self.origin.clone(),
                chunk: self.chunk,
                topics: self.topics.clone(),
                timeout: self.replay_timeout,
                asks: asked,
                arrivals: self.arrivals.clone(),
                rejects: Arc::clone(&self.rejects),
                stop: gone.clone(),
                limits: self.limits.clone(),
            };
            tokio::spawn(client.run())
        });
        crate::receive::receive(
            number,
            &self.topics,
            endpoints.events.clone(),
            self.codec.clone(),
            self.arrivals.clone(),
            &self.rejects,
            gone,
            self.limits.clone(),
        )
        .await;
        if let Some(replaying) = replaying {
            // It ends at `gone` too; a panic in it is already reported by the runtime.
            let _ = replaying.await;
        }
        tracing::info!(endpoint = %endpoints.events, "publisher connection closed");
        let left = Arrival::Left { endpoint: number };
        let _ = self.arrivals.send(vec![left]).await;
    }
}
