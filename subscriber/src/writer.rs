//! The log's single owner. It runs on a thread of its own and takes arrivals in order — live
//! events and heartbeats, replay answers — lets the state machine decide, writes its lines,
//! hands its asks to the replay clients, keeps the position file, and flushes whenever it has
//! caught up, so `tail -f` shows an event a moment after it arrives while a burst is still
//! written in large blocks.
//!
//! Asks go to the replay clients with `try_send` on a bounded channel, so a stuck client never
//! blocks the log; an ask that finds the channel full is sent again on the next tick.
//!
//! **Rotation.** On a reopen request (SIGHUP) the writer syncs the open file and saves the
//! positions as true of it, then opens the log's path afresh (a new file when logrotate has
//! renamed the old one) and saves the positions again, as true of the new file, before any
//! line goes into it. Every line is in exactly one of the two files, and the position file's
//! `log_bytes` always measures the file now at the path: a restart after the rotation reads
//! only the new file's lines after it, and marks never move back (see `recover.rs`).

use crate::health::Ready;
use crate::log_file::LogFile;
use crate::log_line::Entry;
use crate::position::PositionFile;
use crate::streams::{Action, Ask, Streams};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc};
use wire::{Broadcast, Channel, Envelope, Replayed};

/// How often time is passed to the state machine (waits, retries, progress).
const TICK: Duration = Duration::from_millis(100);
/// Arrivals taken in one go before the log is flushed and the clock looked at.
const BURST: usize = 4096;

/// What reaches the writer.
#[derive(Debug)]
pub enum Arrival {
    /// Publisher connection `endpoint` opened; nothing of it arrives before this.
    Joined {
        /// Its number (never reused).
        endpoint: usize,
        /// Its event endpoint (for `/readyz`).
        events: String,
        /// Its replay client; `None` when replay is off.
        asks: Option<mpsc::Sender<Ask>>,
    },
    /// Publisher connection `endpoint` closed; nothing of it arrives after this.
    Left {
        /// Its number.
        endpoint: usize,
    },
    /// From the SUB socket of publisher connection `endpoint`.
    Live {
        /// Number of the connection.
        endpoint: usize,
        /// The event or heartbeat.
        envelope: Envelope<Broadcast>,
    },
    /// From a replay client.
    Replayed(Envelope<Replayed>),
}

/// What wakes the writer.
enum Wake {
    Arrival(Arrival),
    Closed,
    Tick,
    Reopen,
}

/// The log file, the state that decides what goes into it, and the position file.
pub struct Writer {
    log: LogFile,
    streams: Streams,
    positions: PositionFile,
    /// Per open publisher connection with replay, its replay client.
    asks: HashMap<usize, mpsc::Sender<Ask>>,
    actions: Vec<Action>,
    /// What `/readyz` says.
    ready: Ready,
    /// Notified to reopen the log by path.
    reopen: Arc<Notify>,
    counters: Counters,
}

impl Writer {
    /// A writer; nothing happens until [`Writer::run`]. A notification on `reopen` makes it
    /// reopen the log file by its path.
    pub fn new(
        log: LogFile,
        streams: Streams,
        positions: PositionFile,
        ready: Ready,
        reopen: Arc<Notify>,
    ) -> Self {
        Writer {
            log,
            streams,
            positions,
            asks: HashMap::new(),
            actions: Vec::new(),
            ready,
            reopen,
            counters: Counters::new(),
        }
    }

    /// Writes what arrives until the channel closes, then syncs the file and the positions.
    /// `runtime` is the runtime the arrivals come from (this runs on a blocking thread).
    pub fn run(
        mut self,
        mut arrivals: mpsc::Receiver<Arrival>,
        runtime: Handle,
    ) -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + TICK;
        self.save(Instant::now())?;
        self.ready
            .update(Instant::now(), &self.streams.catching_up(Instant::now()));
        let reopen = Arc::clone(&self.reopen);
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let wake = runtime.block_on(async {
                tokio::select! {
                    biased;
                    () = reopen.notified() => Wake::Reopen,
                    next = tokio::time::timeout(wait, arrivals.recv()) => match next {
                        Ok(Some(arrival)) => Wake::Arrival(arrival),
                        Ok(None) => Wake::Closed,
                        Err(_) => Wake::Tick,
                    },
                }
            });
            match wake {
                Wake::Arrival(first) => {
                    self.take(first)?;
                    for _ in 0..BURST {
                        let Ok(next) = arrivals.try_recv() else { break };
                        self.take(next)?;
                    }
                }
                Wake::Closed => break,
                Wake::Tick => {}
                Wake::Reopen => self.reopen(Instant::now())?,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.streams.tick(now, &mut self.actions);
                self.apply(now)?;
                self.ready.update(now, &self.streams.catching_up(now));
                next_tick = now + TICK;
            }
            self.log.flush()?;
            self.counters.log_bytes.set(self.log.len() as f64);
            if self.positions.due(now) {
                self.save(now)?;
            }
        }
        self.ready.set(Err("stopping".to_owned()));
        let now = Instant::now();
        self.streams.finish(&mut self.actions);
        self.apply(now)?;
        self.save(now)?;
        tracing::info!(written = self.log.written, path = %self.log.path().display(), "log file closed");
        Ok(())
    }

    fn take(&mut self, arrival: Arrival) -> anyhow::Result<()> {
        let now = Instant::now();
        let out = &mut self.actions;
        match arrival {
            Arrival::Joined {
                endpoint,
                events,
                asks,
            } => {
                self.ready.add(endpoint, events);
                if let Some(asks) = asks {
                    self.asks.insert(endpoint, asks);
                }
            }
            Arrival::Left { endpoint } => {
                self.ready.remove(endpoint);
                self.asks.remove(&endpoint);
            }
            Arrival::Live { endpoint, envelope } => {
                self.ready.heard(endpoint, now);
                let (header, body) = envelope.into_parts();
                match body {
                    Broadcast::Heartbeat(beat) => {
                        self.streams.heartbeat(
                            endpoint,
                            &header.sender,
                            header.epoch,
                            beat,
                            now,
                            out,
                        );
                    }
                    Broadcast::Event(event) => {
                        self.streams.event(endpoint, header.with(event), now, out)
                    }
                }
            }
            Arrival::Replayed(answer) => self.streams.replayed(answer, now, out),
        }
        self.apply(now)
    }

    /// Carries out what the state machine decided.
    fn apply(&mut self, now: Instant) -> anyhow::Result<()> {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            match action {
                Action::Write(entry) => {
                    if self.positions.starts_stream(&entry) {
                        // Saved first, so every line after the recorded offset is of a
                        // (publisher, epoch) the position file names.
                        self.save(now)?;
                    }
                    self.log.append(&entry)?;
                    self.positions.wrote(&entry);
                    self.counters.wrote(&entry);
                }
                Action::Ask(ask) => {
                    let publisher = ask.publisher.clone();
                    let client = self.asks.get(&ask.endpoint);
                    if client.is_none_or(|asks| asks.try_send(ask).is_err()) {
                        self.streams.unsent(&publisher, now);
                    }
                }
            }
        }
        self.actions = actions;
        Ok(())
    }

    /// Puts what is written on disk, then the positions that say so.
    fn save(&mut self, now: Instant) -> anyhow::Result<()> {
        self.log.sync()?;
        self.positions.save(self.log.len(), now);
        Ok(())
    }

    /// Reopens the log by its path (after logrotate renamed it): the old file synced and the
    /// positions saved as true of it, then the new file opened and the positions saved as true
    /// of it, before anything is written there. When the path cannot be opened the open file
    /// is kept (a warning), so no line is lost.
    fn reopen(&mut self, now: Instant) -> anyhow::Result<()> {
        self.save(now)?;
        let fresh = match LogFile::open(self.log.path(), self.log.format()) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(
                    cause = format!("{e:#}"),
                    "cannot reopen the log file; still writing to the one open"
                );
                return Ok(());
            }
        };
        let old = std::mem::replace(&mut self.log, fresh);
        self.log.written = old.written;
        drop(old);
        self.save(now)?;
        metrics::counter!("log_reopened_total").increment(1);
        tracing::info!(path = %self.log.path().display(), bytes = self.log.len(), "log file reopened");
        Ok(())
    }
}

/// The writer's metrics, their handles kept so a line costs no look-up by name.
struct Counters {
    /// `events_written_total{topic}`, per topic seen so far.
    by_topic: Vec<(&'static str, metrics::Counter)>,
    log_bytes: metrics::Gauge,
}

impl Counters {
    fn new() -> Self {
        Counters {
            by_topic: Vec::new(),
            log_bytes: metrics::gauge!("log_bytes"),
        }
    }

    fn wrote(&mut self, entry: &Entry) {
        match entry {
            Entry::Event(event) => {
                let topic = event.body.topic();
                match self.by_topic.iter().find(|(t, _)| *t == topic) {
                    Some((_, counter)) => counter.increment(1),
                    None => {
                        let counter = metrics::counter!("events_written_total", "topic" => topic);
                        counter.increment(1);
                        self.by_topic.push((topic, counter));
                    }
                }
            }
            Entry::Gap { reason, .. } => {
                metrics::counter!("gap_lines_total", "reason" => reason.as_str()).increment(1);
            }
        }
    }
}
