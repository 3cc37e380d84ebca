//! The log's single owner. It runs on a thread of its own and takes arrivals in order — live
//! events and heartbeats, replay answers — lets the state machine decide, writes its lines,
//! hands its asks to the replay clients, keeps the position file, and flushes whenever it has
//! caught up, so `tail -f` shows an event a moment after it arrives while a burst is still
//! written in large blocks.
//!
//! Asks go to the replay clients with `try_send` on a bounded channel, so a stuck client never
//! blocks the log; an ask that finds the channel full is sent again on the next tick.

use crate::log_file::LogFile;
use crate::position::PositionFile;
use crate::streams::{Action, Ask, Streams};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use wire::{Broadcast, Envelope, Replayed};

/// How often time is passed to the state machine (waits, retries, progress).
const TICK: Duration = Duration::from_millis(100);
/// Arrivals taken in one go before the log is flushed and the clock looked at.
const BURST: usize = 4096;

/// What reaches the writer.
#[derive(Debug)]
pub enum Arrival {
    /// From the SUB socket of endpoint pair `endpoint`.
    Live {
        /// Index of the endpoint pair.
        endpoint: usize,
        /// The event or heartbeat.
        envelope: Envelope<Broadcast>,
    },
    /// From a replay client.
    Replayed(Envelope<Replayed>),
}

/// The log file, the state that decides what goes into it, and the position file.
pub struct Writer {
    log: LogFile,
    streams: Streams,
    positions: PositionFile,
    /// Per endpoint pair, its replay client (none when replay is off).
    asks: Vec<Option<mpsc::Sender<Ask>>>,
    actions: Vec<Action>,
}

impl Writer {
    /// A writer; nothing happens until [`Writer::run`].
    pub fn new(
        log: LogFile,
        streams: Streams,
        positions: PositionFile,
        asks: Vec<Option<mpsc::Sender<Ask>>>,
    ) -> Self {
        Writer {
            log,
            streams,
            positions,
            asks,
            actions: Vec::new(),
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
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match runtime.block_on(tokio::time::timeout(wait, arrivals.recv())) {
                Ok(Some(first)) => {
                    self.take(first)?;
                    for _ in 0..BURST {
                        let Ok(next) = arrivals.try_recv() else { break };
                        self.take(next)?;
                    }
                }
                Ok(None) => break,
                Err(_) => {} // the tick is due
            }
            let now = Instant::now();
            if now >= next_tick {
                self.streams.tick(now, &mut self.actions);
                self.apply(now)?;
                next_tick = now + TICK;
            }
            self.log.flush()?;
            if self.positions.due(now) {
                self.save(now)?;
            }
        }
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
            Arrival::Live { endpoint, envelope } => {
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
                }
                Action::Ask(ask) => {
                    let publisher = ask.publisher.clone();
                    let client = self.asks.get(ask.endpoint).and_then(Option::as_ref);
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
}
