//! One task per replay endpoint: owns a DEALER socket connected to a publisher's replay
//! ROUTER, sends the writer's asks as [`ReplayRequest`]s and hands every answer to the writer.
//!
//! The ZMQ library never reconnects a DEALER, so the socket is thrown away and built afresh
//! when its peer goes, a send fails or requests go unanswered for `REPLAY_TIMEOUT`; connects
//! are retried with a capped backoff. The task never waits on anything but its own socket:
//! while it connects it still takes asks (the latest per publisher is sent once connected).
//! Frames: the request goes out as the codec makes it (topic, envelope, tag) with no empty
//! delimiter frame; the ROUTER sees the DEALER's identity frame first and answers the same way.
//! Each socket connects through a connect-side guard of its own (`replay-in`), which checks
//! what the publisher sends before the library sees it and goes with the socket.

use crate::receive::BATCH;
use crate::streams::Ask;
use crate::writer::{Arrival, Arrivals};
use futures::{FutureExt, StreamExt};
use guard::Limits;
use plumbing::{Guarded, Rejects};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::{Codec, Origin, ReplayRequest, Replayed};
use zeromq::{
    DealerSocket, Socket, SocketEvent, SocketOptions, SocketRecv, SocketSend, ZmqError, ZmqMessage,
};

/// How long one attempt to reach the publisher may take (TCP connect and ZMTP handshake).
const CONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after the first failed attempt; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// A send that cannot even be queued for this long means the connection is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The replay client of one endpoint.
pub struct Client {
    /// The publisher's replay ROUTER.
    pub endpoint: String,
    /// Encodes requests, decodes answers.
    pub codec: Codec,
    /// Sender id of the requests.
    pub origin: Origin,
    /// Events asked for per request.
    pub chunk: u32,
    /// Topic prefixes asked for (`TOPICS`); empty: every topic.
    pub topics: Vec<String>,
    /// `REPLAY_TIMEOUT`: silence after a request that means the connection is no good.
    pub timeout: Duration,
    /// Asks from the writer.
    pub asks: mpsc::Receiver<Ask>,
    /// Answers to the writer.
    pub arrivals: mpsc::Sender<Arrivals>,
    /// Counts answers that do not decode.
    pub rejects: Arc<Rejects>,
    /// Stops the task.
    pub stop: CancellationToken,
    /// What the guard in front of each socket enforces; `None`: connected directly.
    pub limits: Option<Limits>,
}

struct Link {
    socket: DealerSocket,
    events: futures::channel::mpsc::Receiver<SocketEvent>,
    /// The socket's guard: relays while the link lives, closed with it.
    _guard: Guarded,
}

enum Wake {
    Stop,
    Ask(Ask),
    Message(Result<ZmqMessage, ZmqError>),
    Event(SocketEvent),
    Silent,
}

impl Client {
    /// Serves asks until `stop` is cancelled or the writer is gone.
    pub async fn run(mut self) {
        let mut seq = 0;
        let mut waiting = HashMap::new();
        while let Some(mut link) = self.connect(&mut waiting).await {
            match self.serve(&mut link, &mut seq, &mut waiting).await {
                None => return,
                Some(reason) => {
                    tracing::warn!(endpoint = %self.endpoint, %reason, "replay connection dropped; rebuilding it");
                }
            }
        }
    }

    /// A connected socket, retried with backoff; `None` when told to stop first.
    async fn connect(&mut self, waiting: &mut HashMap<String, Ask>) -> Option<Link> {
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1u64.. {
            let mut options = SocketOptions::default();
            options.connect_timeout(CONNECT_ATTEMPT_TIMEOUT);
            let mut socket = DealerSocket::with_options(options);
            let events = socket.monitor();
            let endpoint = self.endpoint.clone();
            let outcome = {
                let connecting = plumbing::connect_guarded(
                    &mut socket,
                    &endpoint,
                    self.limits.clone(),
                    "replay-in",
                );
                tokio::pin!(connecting);
                loop {
                    let wake = tokio::select! {
                        () = self.stop.cancelled() => return None,
                        ask = self.asks.recv() => Err(ask),
                        outcome = &mut connecting => Ok(outcome),
                    };
                    match wake {
                        Ok(outcome) => break outcome,
                        Err(None) => return None,
                        Err(Some(ask)) => keep(waiting, ask),
                    }
                }
            };
            match outcome {
                Ok(guard) => {
                    tracing::info!(%endpoint, attempt, "replay endpoint connected");
                    return Some(Link {
                        socket,
                        events,
                        _guard: guard,
                    });
                }
                Err(e) if attempt == 1 || attempt % 30 == 0 => {
                    tracing::info!(%endpoint, attempt, cause = %e, "replay endpoint not reachable yet; retrying");
                }
                Err(e) => tracing::debug!(%endpoint, attempt, cause = %e, "replay connect failed"),
            }
            let pause = tokio::time::sleep(delay);
            tokio::pin!(pause);
            loop {
                let wake = tokio::select! {
                    () = self.stop.cancelled() => return None,
                    ask = self.asks.recv() => Some(ask),
                    () = &mut pause => None,
                };
                match wake {
                    None => break,
                    Some(None) => return None,
                    Some(Some(ask)) => keep(waiting, ask),
                }
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
        None
    }

    /// Sends asks and forwards answers; `Some(reason)` when the socket is to be rebuilt.
    async fn serve(
        &mut self,
        link: &mut Link,
        seq: &mut u64,
        waiting: &mut HashMap<String, Ask>,
    ) -> Option<String> {
        // Requests sent and not yet ended, and when the answer was last heard of.
        let mut unanswered: u32 = 0;
        let mut heard = Instant::now();
        let mut queue: Vec<Ask> = waiting.drain().map(|(_, ask)| ask).collect();
        loop {
            let wake = match queue.pop() {
                Some(ask) => Wake::Ask(ask),
                None => tokio::select! {
                    () = self.stop.cancelled() => Wake::Stop,
                    ask = self.asks.recv() => ask.map_or(Wake::Stop, Wake::Ask),
                    message = link.socket.recv() => Wake::Message(message),
                    Some(event) = link.events.next() => Wake::Event(event),
                    () = tokio::time::sleep_until(heard + self.timeout), if unanswered > 0 => Wake::Silent,
                },
            };
            match wake {
                Wake::Stop => return None,
                Wake::Ask(ask) => {
                    if unanswered == 0 {
                        heard = Instant::now();
                    }
                    if let Err(reason) = self.send(link, seq, &ask).await {
                        keep(waiting, ask);
                        return Some(reason);
                    }
                    unanswered += 1;
                }
                Wake::Message(Ok(message)) => {
                    heard = Instant::now();
                    // The messages of an answer that have arrived go to the writer together.
                    let mut batch = Vec::new();
                    let mut next = Some(Ok(message));
                    let mut failed = None;
                    while let Some(message) = next.take() {
                        match message.map(|m| self.codec.decode::<Replayed>(&m)) {
                            Ok(Ok(answer)) => {
                                if matches!(answer.body, Replayed::End(_)) {
                                    unanswered = unanswered.saturating_sub(1);
                                }
                                batch.push(Arrival::Replayed(answer));
                            }
                            Ok(Err(e)) => {
                                self.rejects.record(&self.endpoint, &e);
                            }
                            Err(e) => failed = Some(format!("receive failed: {e}")),
                        }
                        if failed.is_none() && batch.len() < BATCH {
                            next = link.socket.recv().now_or_never();
                        }
                    }
                    if !batch.is_empty() && self.arrivals.send(batch).await.is_err() {
                        return None;
                    }
                    if failed.is_some() {
                        return failed;
                    }
                }
                Wake::Message(Err(e)) => return Some(format!("receive failed: {e}")),
                Wake::Event(SocketEvent::Disconnected(_)) => {
                    return Some("the publisher closed the connection".to_owned());
                }
                Wake::Event(event) => tracing::debug!(?event, "replay socket event"),
                Wake::Silent => return Some(format!("no answer within {:?}", self.timeout)),
            }
        }
    }

    async fn send(&mut self, link: &mut Link, seq: &mut u64, ask: &Ask) -> Result<(), String> {
        *seq += 1;
        let request = ReplayRequest {
            epoch: ask.epoch,
            after: ask.after,
            max_events: self.chunk,
            topics: self.topics.clone(),
        };
        let message = self.codec.encode(&self.origin.envelope(*seq, request));
        match tokio::time::timeout(SEND_TIMEOUT, link.socket.send(message)).await {
            Ok(Ok(())) => {
                metrics::counter!("replay_requests_total").increment(1);
                tracing::debug!(publisher = %ask.publisher, epoch = ask.epoch, after = ask.after, "replay asked");
                Ok(())
            }
            Ok(Err(e)) => Err(format!("sending a request failed: {e}")),
            Err(_) => Err(format!("sending a request stuck for {SEND_TIMEOUT:?}")),
        }
    }
}

/// Keeps `ask` to send once connected; a later ask for the same publisher replaces it.
fn keep(waiting: &mut HashMap<String, Ask>, ask: Ask) {
    waiting.insert(ask.publisher.clone(), ask);
}
