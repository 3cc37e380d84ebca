//! One task per publisher event endpoint: owns a SUB socket, keeps it connected, decodes what
//! arrives and passes it to the log writer, saying which endpoint it came from (its replay is
//! asked from the paired replay endpoint). Undecodable messages are counted and dropped.
//! Whatever has arrived by the time one message is taken travels with it, up to [`BATCH`].
//!
//! The SUB connects through a connect-side guard (`events-in`), which checks what the
//! publisher sends before the library sees it. The guard closes the socket's connection when
//! the publisher cannot be reached or is cut, so the first connect is retried
//! ([`plumbing::connect_retrying`]) and later ones are the library's own reconnects, through the same guard.

use crate::writer::{Arrival, Arrivals};
use futures::FutureExt;
use guard::Limits;
use plumbing::Rejects;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::Codec;
use zeromq::{Socket, SocketOptions, SocketRecv, SubSocket};

/// Most events handed to the writer at once.
pub const BATCH: usize = 64;

/// Receives from `endpoint` (pair number `index`) the events whose topic starts with one of
/// `topics` (every event when empty) until `stop` is cancelled or the writer is gone; behind a
/// guard with `limits` (`None`: connected directly).
#[allow(clippy::too_many_arguments)]
pub async fn receive(
    index: usize,
    topics: &[String],
    endpoint: String,
    codec: Codec,
    arrivals: mpsc::Sender<Arrivals>,
    rejects: &Rejects,
    stop: CancellationToken,
    limits: Option<Limits>,
) {
    // Held as long as the socket: dropping it would close the socket's connection for good.
    let guarded = match plumbing::guard_remote(&endpoint, limits, "events-in").await {
        Ok(guarded) => guarded,
        Err(e) => {
            tracing::error!(%endpoint, cause = %e, "cannot guard the event endpoint");
            return;
        }
    };
    let mut options = SocketOptions::default();
    // The publisher may start later than us, or never: wait for it as long as we run.
    options.no_connect_timeout();
    let mut socket = SubSocket::with_options(options);
    if !plumbing::connect_retrying(&mut socket, &guarded, &endpoint, stop.cancelled()).await {
        return;
    }
    // Heartbeats always: the writer needs them to notice lost events and to know whether
    // the publisher serves replay.
    let prefixes: Vec<&str> = if topics.is_empty() {
        vec![""]
    } else {
        topics
            .iter()
            .map(String::as_str)
            .chain([wire::HEARTBEAT_TOPIC])
            .collect()
    };
    for prefix in &prefixes {
        if let Err(e) = socket.subscribe(prefix).await {
            tracing::error!(%endpoint, prefix, cause = %e, "cannot subscribe");
            return;
        }
    }
    tracing::info!(%endpoint, ?topics, "subscribed");
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            m = socket.recv() => m,
            () = stop.cancelled() => break,
        };
        let mut next = Some(first);
        // What else has arrived goes along in the same batch: one hop to the writer, and one
        // wake-up of it, for many events when they come fast.
        while let Some(message) = next.take() {
            match message {
                Ok(message) => match codec.decode(&message) {
                    Ok(envelope) => batch.push(Arrival::Live {
                        endpoint: index,
                        envelope,
                    }),
                    Err(e) => {
                        rejects.record(&endpoint, &e);
                    }
                },
                // The connection dropped; the socket reconnects by itself.
                Err(e) => {
                    tracing::debug!(%endpoint, cause = %e, "receive interrupted");
                    break;
                }
            }
            if batch.len() < BATCH {
                next = socket.recv().now_or_never();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        if arrivals.send(full).await.is_err() {
            break;
        }
    }
}
