//! The publishing path: request handlers hand events to [`Events`]; one task owns the PUB
//! socket, numbers nothing itself, and sends them in order, keeps each in the replay window as
//! it went out, and sends a heartbeat every interval — and one shortly after each new
//! subscriber connects (see [`GREETING_DELAY`]).
//!
//! While a burst runs, the task lets events gather for a moment before it sends them (far
//! fewer system calls); a lone event goes out at once (see [`BURST_STARTS`]).
//!
//! Sequence numbers are taken and the event queued under one short lock, so the order on the
//! channel is the numbering order and subscribers see `seq` strictly +1.
//!
//! With a journal, the queue leads to the journal's writer instead, which hands each event on
//! to the socket task once it is written; [`Events::publish`] then returns only when its event
//! is in the journal.

use crate::journal::{self, Accepted, Appender, Entry, Unwritable};
use crate::replay::Window;
use bytes::BytesMut;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wire::{Broadcast, Channel, Codec, Envelope, Event, Heartbeat, Origin};
use zeromq::{PubSocket, Socket, SocketEvent, SocketSend};

/// Events that may wait between the handlers and the socket before handlers are made to wait.
const QUEUE_CAPACITY: usize = 8192;
/// Most events sent per wake-up of the socket task.
const BATCH: usize = 1024;
/// How long the socket task lets a burst gather before sending it. The ZMQ library writes
/// what is queued for a subscriber in one system call, but handed events one at a time it
/// makes one write per event or two: gathering for a moment cut the publisher's CPU per
/// request by a quarter and the subscriber's per event by half (`bench/downcase.py`). Only
/// events wait; HTTP answers do not.
const GATHER: Duration = Duration::from_millis(1);
/// Events found waiting at one wake-up that show a burst is running: from then on the socket
/// task gathers. A lone event, the usual case below a few thousand a second, goes out at once
/// instead of waiting out a [`GATHER`] (tokio's timer counts whole milliseconds, so that wait
/// is 1–2 ms: most of an event's way into a subscriber's log at 1 000 req/s).
const BURST_STARTS: usize = 4;
/// A gathered batch of fewer events than this shows the burst is over: the next event goes
/// out at once again. At [`GATHER`] that is a rate of a few thousand events a second.
const BURST_GOES_ON: usize = 8;
/// How long after a subscriber connects it is sent a heartbeat of its own. A new subscriber
/// learns of this publisher — its epoch, its last number, that it serves replay — only from
/// what it publishes; with nothing published it waited up to a whole heartbeat interval to
/// begin its catch-up. The wait lets its subscription arrive first (the library reports the
/// connection once the handshake is done, before the subscription is read); a greeting that
/// comes too early is lost like any event before a subscription, and the next heartbeat
/// serves instead. Connections that arrive within the delay share one greeting.
pub const GREETING_DELAY: Duration = Duration::from_millis(50);
/// Time given to the ZMQ library to write out what was sent before the socket is dropped: it
/// has no linger and no way to ask whether its queues are empty.
const FLUSH_GRACE: Duration = Duration::from_millis(300);

/// Where an event went: the reference a client gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The event's sequence number in this publisher's epoch.
    pub seq: u64,
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The publishing path is gone (the process is stopping).
    #[error("the event publisher has stopped")]
    Stopped,
    /// The journal cannot hold the event: it is not acknowledged.
    #[error(transparent)]
    Journal(#[from] Unwritable),
}

impl From<PublishError> for crate::ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Stopped => crate::ApiError::unavailable("the service is stopping"),
            PublishError::Journal(e) => crate::ApiError::unavailable(e.to_string()),
        }
    }
}

/// Cheap to clone; every request handler holds one.
#[derive(Clone)]
pub struct Events {
    identity: Arc<Origin>,
    /// Last sequence number handed out. The lock also covers the hand-off to the channel.
    seq: Arc<Mutex<u64>>,
    path: Path,
}

/// Where events go.
#[derive(Clone)]
enum Path {
    /// Publishing is disabled: numbers are still given, nothing is sent.
    Disabled,
    /// Straight to the socket task.
    Socket(mpsc::Sender<Envelope<Broadcast>>),
    /// Through the journal, then to the socket task.
    Journal(Appender),
}

impl Events {
    /// Numbers `event` as the next event and queues it, waiting while the queue is full.
    /// Returns once the event is on the publishing path — with a journal, once it is written.
    pub async fn publish(&self, event: Event) -> Result<Published, PublishError> {
        self.publish_with(event, None).await
    }

    /// Publishes the `signature.requested` event of an accepted request, journaled with what
    /// verifying the request again takes (copied only when there is a journal to hold it).
    pub async fn publish_accepted(
        &self,
        event: Event,
        accepted: &Accepted,
    ) -> Result<Published, PublishError> {
        self.publish_with(event, Some(accepted)).await
    }

    /// Numbers `event` and queues it when that needs no wait: the queue has room and no
    /// journal is in the way. Otherwise gives the event back, unnumbered, for
    /// [`publish`](Events::publish).
    pub fn try_publish(&self, event: Event) -> Result<Published, Event> {
        let seq = match &self.path {
            Path::Disabled => self.number(|_| ()),
            Path::Socket(queue) => {
                let Ok(permit) = queue.try_reserve() else {
                    return Err(event);
                };
                let body = Broadcast::Event(event);
                self.number(|seq| permit.send(self.identity.envelope(seq, body)))
            }
            Path::Journal(_) => return Err(event),
        };
        Ok(Published { seq })
    }

    async fn publish_with(
        &self,
        event: Event,
        accepted: Option<&Accepted>,
    ) -> Result<Published, PublishError> {
        let body = Broadcast::Event(event);
        let seq = match &self.path {
            Path::Disabled => self.number(|_| ()),
            Path::Socket(queue) => {
                let permit = queue.reserve().await.map_err(|_| PublishError::Stopped)?;
                self.number(|seq| permit.send(self.identity.envelope(seq, body)))
            }
            Path::Journal(journal) => {
                // Failing now: answered at once, and no number is spent.
                if let Some(failure) = journal.failure() {
                    return Err(failure.into());
                }
                let permit = journal
                    .queue
                    .reserve()
                    .await
                    .map_err(|_| PublishError::Stopped)?;
                // Copied outside the numbering lock.
                let accepted = accepted.cloned();
                let seq = self.number(|seq| {
                    let envelope = self.identity.envelope(seq, body);
                    permit.send(Entry { envelope, accepted });
                });
                journal.written(seq).await?;
                seq
            }
        };
        Ok(Published { seq })
    }

    /// Takes the next number and hands it to `queue` under the lock.
    fn number(&self, queue: impl FnOnce(u64)) -> u64 {
        let mut last = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *last += 1;
        queue(*last);
        *last
    }

    /// Why the journal cannot be written now, if there is one and it cannot.
    pub fn journal_failure(&self) -> Option<Unwritable> {
        match &self.path {
            Path::Journal(journal) => journal.failure(),
            _ => None,
        }
    }

    /// This publisher's identity.
    pub fn identity(&self) -> &Origin {
        &self.identity
    }
}

/// The socket task, to be awaited after every [`Events`] handle is dropped.
pub struct Flusher(Option<JoinHandle<()>>);

impl Flusher {
    /// Waits until everything queued has been sent and the socket is closed.
    pub async fn flushed(self) {
        if let Some(task) = self.0 {
            if let Err(e) = task.await {
                tracing::error!(cause = %e, "event task failed");
            }
        }
    }
}

/// Where and how events go out.
pub struct Settings {
    /// The PUB socket's endpoint.
    pub bind: String,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Number events but send nothing (to measure what publishing costs).
    pub disabled: bool,
    /// Where sent events are kept for replay; `None`: replay is not served.
    pub window: Option<Arc<Mutex<Window>>>,
    /// The guard's limits for the PUB socket's peers (the subscribers).
    pub limits: Option<guard::Limits>,
    /// The last number already used in this epoch (from the journal; 0 without one).
    pub last_seq: u64,
    /// The journal events go through first; `None`: memory only.
    pub journal: Option<journal::writer::Files>,
}

/// Binds the PUB socket (unless publishing is disabled) and starts the task that owns it.
/// Returns the handle for handlers, the task to await on shutdown, and the bound endpoint.
pub async fn start(
    identity: Arc<Origin>,
    settings: Settings,
    codec: Codec,
) -> anyhow::Result<(Events, Flusher, Option<String>)> {
    let seq = Arc::new(Mutex::new(settings.last_seq));
    if settings.disabled {
        let events = Events {
            identity,
            seq,
            path: Path::Disabled,
        };
        return Ok((events, Flusher(None), None));
    }
    let mut socket = PubSocket::new();
    let guarded = plumbing::bind_guarded(
        &mut socket,
        &settings.bind,
        settings.limits,
        "events",
        "EVENTS_BIND",
    )
    .await?;
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let endpoint = guarded.endpoint;
    let owner = SocketOwner {
        socket,
        _guard: guarded.guard,
        codec,
        identity: identity.clone(),
        window: settings.window,
        last_seq: settings.last_seq,
        published: HashMap::new(),
        block: BytesMut::new(),
        encoded: Vec::with_capacity(BATCH),
    };
    let task = tokio::spawn(owner.run(rx, settings.heartbeat_interval));
    let path = match settings.journal {
        None => Path::Socket(tx),
        Some(files) => {
            let (queue, entries) = mpsc::channel(QUEUE_CAPACITY);
            let (durable_tx, durable) = tokio::sync::watch::channel(journal::Durable {
                seq: settings.last_seq,
                failure: None,
            });
            tokio::spawn(journal::writer::run(files, entries, durable_tx, tx));
            Path::Journal(Appender { queue, durable })
        }
    };
    let events = Events {
        identity,
        seq,
        path,
    };
    Ok((events, Flusher(Some(task)), Some(endpoint)))
}

/// The task that owns the PUB socket, and the guard in front of it: both go when it ends,
/// after the flush grace.
struct SocketOwner {
    socket: PubSocket,
    _guard: Option<guard::Guard>,
    codec: Codec,
    identity: Arc<Origin>,
    window: Option<Arc<Mutex<Window>>>,
    last_seq: u64,
    published: HashMap<&'static str, metrics::Counter>,
    /// Where messages are encoded: their frames are slices of it (see [`Codec::encode_in`]).
    block: BytesMut,
    /// A batch's encoded messages, kept for the next batch's.
    encoded: Vec<(u64, &'static str, zeromq::ZmqMessage)>,
}

impl SocketOwner {
    /// Sends queued events in order until every sender is gone, and a heartbeat every
    /// interval: subscribers learn from it the last number and whether replay is served, also
    /// while events flow (a subscriber that joins under load needs both). A subscriber that
    /// connects gets one [`GREETING_DELAY`] later.
    async fn run(mut self, mut queue: mpsc::Receiver<Envelope<Broadcast>>, interval: Duration) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut gathering = false;
        let mut heartbeat = tokio::time::interval(interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connections = self.socket.monitor();
        let mut greeting: Option<Instant> = None;
        loop {
            tokio::select! {
                received = queue.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        break;
                    }
                    if received < BATCH && (gathering || received >= BURST_STARTS) {
                        tokio::time::sleep(GATHER).await;
                        while batch.len() < BATCH {
                            let Ok(envelope) = queue.try_recv() else { break };
                            batch.push(envelope);
                        }
                        gathering = batch.len() >= BURST_GOES_ON;
                    }
                    self.send_batch(&mut batch).await;
                }
                _ = heartbeat.tick() => self.heartbeat().await,
                Some(event) = connections.next() => {
                    if matches!(event, SocketEvent::Accepted(..)) {
                        greeting.get_or_insert_with(|| Instant::now() + GREETING_DELAY);
                    }
                }
                () = tokio::time::sleep_until(greeting.unwrap_or_else(Instant::now)),
                    if greeting.is_some() =>
                {
                    greeting = None;
                    self.heartbeat().await;
                }
            }
        }
        tokio::time::sleep(FLUSH_GRACE).await;
        tracing::info!(last_seq = self.last_seq, "event socket closed");
    }

    /// Encodes the batch, keeps it in the window (one lock for the batch), and sends it.
    async fn send_batch(&mut self, batch: &mut Vec<Envelope<Broadcast>>) {
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.extend(batch.drain(..).map(|envelope| {
            (
                envelope.seq,
                envelope.body.topic(),
                self.codec.encode_in(&envelope, &mut self.block),
            )
        }));
        if let Some(window) = &self.window {
            let mut window = window.lock().unwrap_or_else(|p| p.into_inner());
            for (seq, topic, message) in &encoded {
                window.push(*seq, topic, message);
            }
            metrics::gauge!("replay_window_events").set(window.len() as f64);
            metrics::gauge!("replay_window_bytes").set(window.bytes() as f64);
        }
        // Counted once per run of one topic rather than once per event: a batch is mostly one.
        let mut run: Option<(&'static str, u64)> = None;
        for (seq, topic, message) in encoded.drain(..) {
            self.last_seq = seq;
            match &mut run {
                Some((current, n)) if *current == topic => *n += 1,
                _ => {
                    if let Some((ended, n)) = run.replace((topic, 1)) {
                        self.count(ended, n);
                    }
                }
            }
            send(&mut self.socket, message).await;
        }
        if let Some((topic, n)) = run {
            self.count(topic, n);
        }
        self.encoded = encoded;
    }

    /// Adds `n` to the count of events published under `topic`.
    fn count(&mut self, topic: &'static str, n: u64) {
        self.published
            .entry(topic)
            .or_insert_with(|| metrics::counter!("events_published_total", "topic" => topic))
            .increment(n);
    }

    async fn heartbeat(&mut self) {
        let beat = Heartbeat {
            last_seq: self.last_seq,
            replay: self.window.is_some(),
        };
        let envelope = self
            .identity
            .envelope(self.last_seq, Broadcast::Heartbeat(beat));
        let message = self.codec.encode_in(&envelope, &mut self.block);
        send(&mut self.socket, message).await;
    }
}

async fn send(socket: &mut PubSocket, message: zeromq::ZmqMessage) {
    // PUB never blocks and reports no delivery; an error here means the socket is unusable.
    if let Err(e) = socket.send(message).await {
        tracing::error!(cause = %e, "PUB send failed");
    }
}
