//! The replay server: a ROUTER socket that answers subscribers' [`ReplayRequest`]s from the
//! window, a chunk per request, each closed by a [`ReplayEnd`] marker.
//!
//! Answers are sent by tasks of their own, so a subscriber that does not read stalls only its
//! own answer: the ZMQ library's ROUTER waits when a peer's queue is full, and every send here
//! is bounded by [`SEND_TIMEOUT`]. At most [`ANSWERS_AT_ONCE`] answers are under way; a
//! request beyond that is dropped and counted, and the asker, hearing nothing, asks again.

use super::window::Window;
use plumbing::Rejects;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Origin, ReplayEnd, ReplayRequest, Replayed};
use zeromq::{RouterSendHalf, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

/// Most events in one answer, whatever the request asks.
pub const CHUNK_MAX: usize = 5_000;
/// Answers being sent at once.
const ANSWERS_AT_ONCE: usize = 32;
/// A send that cannot be queued for this long gives up the rest of its answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The running server.
pub struct ReplayServer {
    /// The resolved endpoint it is bound on.
    pub endpoint: String,
    /// Ends when shutdown is signalled.
    pub task: JoinHandle<()>,
}

/// Binds the ROUTER socket at `bind` and serves until `stop` is cancelled.
pub async fn start(
    bind: &str,
    limits: Option<guard::Limits>,
    codec: Codec,
    origin: Arc<Origin>,
    window: Arc<Mutex<Window>>,
    stop: CancellationToken,
) -> anyhow::Result<ReplayServer> {
    let mut socket = RouterSocket::new();
    let guarded =
        plumbing::bind_guarded(&mut socket, bind, limits, "replay", "REPLAY_BIND").await?;
    let server = Server {
        codec,
        origin,
        window,
        answers: Arc::new(Semaphore::new(ANSWERS_AT_ONCE)),
        rejects: Arc::new(Rejects::new("a replay request that could not be decoded")),
    };
    let guard = guarded.guard;
    let task = tokio::spawn(async move {
        server.run(socket, stop).await;
        drop(guard);
    });
    Ok(ReplayServer {
        endpoint: guarded.endpoint,
        task,
    })
}

struct Server {
    codec: Codec,
    origin: Arc<Origin>,
    window: Arc<Mutex<Window>>,
    answers: Arc<Semaphore>,
    rejects: Arc<Rejects>,
}

impl Server {
    async fn run(self, socket: RouterSocket, stop: CancellationToken) {
        let (send, mut recv) = socket.split();
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => break,
                message = recv.recv() => message,
            };
            match message {
                Ok(message) => self.take(message, &send),
                Err(e) => tracing::debug!(cause = %e, "replay receive interrupted"),
            }
        }
        tracing::info!("replay server stopped");
    }

    /// Decodes one request and starts its answer.
    fn take(&self, mut message: ZmqMessage, send: &RouterSendHalf) {
        // The ROUTER puts the asker's identity first; a message of that frame alone is empty.
        if message.len() < 2 {
            return;
        }
        let request_frames = message.split_off(1);
        let Some(peer) = message.get(0).cloned() else {
            return;
        };
        let request = match self.codec.decode::<ReplayRequest>(&request_frames) {
            Ok(request) => request,
            Err(e) => {
                self.rejects.record("replay socket", &e);
                return;
            }
        };
        let Ok(permit) = Arc::clone(&self.answers).try_acquire_owned() else {
            metrics::counter!("replay_requests_dropped_total").increment(1);
            tracing::debug!("too many replay answers under way; request dropped");
            return;
        };
        metrics::counter!("replay_requests_total").increment(1);
        let (asker, request) = request.into_parts();
        let answer = self.answer(&request);
        tracing::debug!(
            asker = %asker.sender,
            epoch = request.epoch,
            after = request.after,
            events = answer.len() - 1,
            "replay answered"
        );
        let mut send = send.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let events = answer.len() - 1;
            for mut frames in answer {
                frames.push_front(peer.clone());
                match tokio::time::timeout(SEND_TIMEOUT, send.send(frames)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(cause = %e, "replay answer not sent");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("replay asker does not read; answer abandoned");
                        return;
                    }
                }
            }
            metrics::counter!("events_replayed_total").increment(events as u64);
        });
    }

    /// The events after the asked number (none when the epoch asked for is over), then the
    /// end marker.
    fn answer(&self, request: &ReplayRequest) -> Vec<ZmqMessage> {
        let max = usize::try_from(request.max_events).map_or(CHUNK_MAX, |m| m.clamp(1, CHUNK_MAX));
        let window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let current = request.epoch == self.origin.epoch;
        let chunk = if current {
            window.after(request.after, max, &request.topics)
        } else {
            Default::default()
        };
        let end = ReplayEnd {
            epoch: self.origin.epoch,
            asked_epoch: request.epoch,
            asked_after: request.after,
            last: if current { chunk.last } else { request.after },
            oldest: window.oldest(),
            newest: window.newest(),
        };
        drop(window);
        let mut answer = chunk.messages;
        let marker = self.origin.envelope(end.last, Replayed::End(end));
        answer.push(self.codec.encode(&marker));
        answer
    }
}
