//! The log's single owner. It runs on a thread of its own and takes arrivals in order — live
//! events and heartbeats, replay answers — lets the state machine decide, writes its lines,
//! hands its asks to the replay clients, keeps the position file, and flushes whenever it has
//! caught up, so `tail -f` shows an event a moment after it arrives while a burst is still
//! written in large blocks.
//!
//! Asks go to the replay clients with `try_send` on a bounded channel, so a stuck client never
//! blocks the log; an ask that finds the channel full is sent again on the next tick.
//!
//! **Syncing** (`LOG_SYNC`). Every pass of the loop hands the lines to the OS; `always` then
//! fdatasyncs them before the next arrivals are taken, `interval:<ms>` once the oldest unsynced
//! line is that old, `never` leaves it to the OS. The positions are saved only of what is
//! synced — with `never`, of what is written — so they are never ahead of the log. The
//! routine sync and save (`interval`'s fdatasync, and the position file every
//! [`SAVE_EVERY`](crate::position::SAVE_EVERY) or so) run on a thread of their own
//! (`syncer.rs`), so lines arriving meanwhile do not wait for the disk; the saves the writer
//! owes before going on (a new stream's, around a reopen or rotation, at shutdown) wait for
//! that thread's job, then are done here.
//!
//! **Rotation.** On a reopen request (SIGHUP) the writer syncs the open file and saves the
//! positions as true of it, then opens the log's path afresh (a new file when logrotate has
//! renamed the old one) and saves the positions again, as true of the new file, before any
//! line goes into it. Every line is in exactly one of the two files, and the position file's
//! `log_bytes` always measures the file now at the path: a restart after the rotation reads
//! only the new file's lines after it, and marks never move back (see `recover.rs`). With
//! `LOG_MAX_BYTES` the writer rotates by itself the same way, renaming the file (`rotate.rs`)
//! between the two saves, when the next line would take it past the size: the line goes
//! whole into the new file.

use crate::health::Ready;
use crate::log_file::LogFile;
use crate::log_line::Entry;
use crate::position::PositionFile;
use crate::rotate::{self, Rotation};
use crate::streams::{Action, Ask, Streams};
use crate::syncer::{Done, Job, Syncer};
use anyhow::Context;
use plumbing::SyncPolicy;
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
/// How long after a rotation failed (a rename refused) the next one is tried.
const ROTATE_RETRY: Duration = Duration::from_secs(10);

/// How the writer keeps the log file: when it is synced, and when rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keeping {
    /// `LOG_SYNC`.
    pub sync: SyncPolicy,
    /// `LOG_MAX_BYTES` and `LOG_KEEP`; `None`: never rotated by the writer.
    pub rotation: Option<Rotation>,
}

impl Keeping {
    /// How often the positions are saved: with `interval:<ms>`, at each sync.
    pub fn save_every(&self) -> Duration {
        match self.sync {
            SyncPolicy::Interval(every) => every,
            SyncPolicy::Always | SyncPolicy::Never => crate::position::SAVE_EVERY,
        }
    }
}

/// What reaches the writer at once: arrivals in the order they came, from one source — the
/// events of one SUB socket or replay client, or a connection's `Joined` or `Left` alone.
pub type Arrivals = Vec<Arrival>;

/// One thing that reaches the writer.
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
    Arrival(Arrivals),
    Closed,
    Tick,
    Reopen,
    Synced(Done),
}

/// The log file, the state that decides what goes into it, and the position file.
pub struct Writer {
    log: LogFile,
    streams: Streams,
    positions: PositionFile,
    /// Runs the routine sync and position save.
    syncer: Syncer,
    /// Per open publisher connection with replay, its replay client.
    asks: HashMap<usize, mpsc::Sender<Ask>>,
    actions: Vec<Action>,
    /// What `/readyz` says.
    ready: Ready,
    /// Notified to reopen the log by path.
    reopen: Arc<Notify>,
    keeping: Keeping,
    /// Since when lines are written but not synced (as of the last pass).
    unsynced_since: Option<Instant>,
    /// After a failed rotation: not tried again before then.
    rotate_after: Option<Instant>,
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
        keeping: Keeping,
    ) -> std::io::Result<Self> {
        Ok(Writer {
            log,
            streams,
            positions,
            syncer: Syncer::start()?,
            asks: HashMap::new(),
            actions: Vec::new(),
            ready,
            reopen,
            keeping,
            unsynced_since: None,
            rotate_after: None,
            counters: Counters::new(),
        })
    }

    /// Writes what arrives until the channel closes, then syncs the file and the positions.
    /// `runtime` is the runtime the arrivals come from (this runs on a blocking thread).
    pub fn run(
        mut self,
        mut arrivals: mpsc::Receiver<Arrivals>,
        runtime: Handle,
    ) -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + TICK;
        self.save(Instant::now())?;
        self.ready
            .update(Instant::now(), &self.streams.catching_up(Instant::now()));
        let reopen = Arc::clone(&self.reopen);
        loop {
            // While a sync is in flight, its end wakes the writer to start the next one.
            let sync_due = self.sync_due().filter(|_| !self.syncer.busy());
            let wake_at = sync_due.map_or(next_tick, |due| due.min(next_tick));
            let wait = wake_at.saturating_duration_since(Instant::now());
            let syncer = &mut self.syncer;
            let wake = runtime.block_on(async {
                tokio::select! {
                    biased;
                    () = reopen.notified() => Wake::Reopen,
                    done = syncer.finished() => Wake::Synced(done),
                    next = tokio::time::timeout(wait, arrivals.recv()) => match next {
                        Ok(Some(arrival)) => Wake::Arrival(arrival),
                        Ok(None) => Wake::Closed,
                        Err(_) => Wake::Tick,
                    },
                }
            });
            match wake {
                Wake::Arrival(first) => {
                    let mut taken = first.len();
                    self.take(first)?;
                    while taken < BURST {
                        let Ok(next) = arrivals.try_recv() else { break };
                        taken += next.len();
                        self.take(next)?;
                    }
                }
                Wake::Closed => break,
                Wake::Tick => {}
                Wake::Reopen => self.reopen(Instant::now())?,
                Wake::Synced(done) => self.synced(done)?,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.streams.tick(now, &mut self.actions);
                self.apply(now)?;
                self.ready.update(now, &self.streams.catching_up(now));
                next_tick = now + TICK;
            }
            self.settle(now)?;
            self.counters.log_bytes.set(self.log.len() as f64);
            self.routine(now)?;
        }
        self.ready.set(Err("stopping".to_owned()));
        let now = Instant::now();
        self.streams.finish(&mut self.actions);
        self.apply(now)?;
        self.save_synced(now)?;
        tracing::info!(written = self.log.written, path = %self.log.path().display(), "log file closed");
        Ok(())
    }

    fn take(&mut self, arrivals: Arrivals) -> anyhow::Result<()> {
        // One clock reading for what arrived together.
        let now = Instant::now();
        for arrival in arrivals {
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
            self.apply(now)?;
        }
        Ok(())
    }

    /// Carries out what the state machine decided.
    fn apply(&mut self, now: Instant) -> anyhow::Result<()> {
        let mut actions = std::mem::take(&mut self.actions);
        for action in actions.drain(..) {
            match action {
                Action::Write(entry) => {
                    let line = self.log.stage(&entry);
                    if self.rotation_due(line, now) {
                        self.rotate(now)?;
                    }
                    if self.positions.starts_stream(&entry) {
                        // Saved first, so every line after the recorded offset is of a
                        // (publisher, epoch) the position file names.
                        self.save(now)?;
                    }
                    self.log.append_staged()?;
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

    /// Hands what is written to the OS, and syncs it when `LOG_SYNC` says it is time.
    fn settle(&mut self, now: Instant) -> anyhow::Result<()> {
        self.log.flush()?;
        if !self.log.unsynced() {
            self.unsynced_since = None;
            return Ok(());
        }
        self.unsynced_since.get_or_insert(now);
        if self.keeping.sync == SyncPolicy::Always {
            self.log.sync()?;
            self.unsynced_since = None;
        }
        Ok(())
    }

    /// Starts the routine sync when it is due and none is in flight: the log's
    /// (`interval`) once its oldest unsynced line is that old, with the positions of what it
    /// covers; the positions alone once their save is due.
    fn routine(&mut self, now: Instant) -> anyhow::Result<()> {
        if self.syncer.busy() {
            return Ok(());
        }
        let log_due = self.sync_due().is_some_and(|due| now >= due);
        if !log_due && !self.positions.due(now) {
            return Ok(());
        }
        let log = match self.keeping.sync {
            SyncPolicy::Never => {
                self.log.settle()?;
                None
            }
            // With `always` the lines are synced already: `None`.
            SyncPolicy::Always | SyncPolicy::Interval(_) => {
                let log = self.log.sync_elsewhere()?;
                self.unsynced_since = None;
                log
            }
        };
        let positions = self
            .positions
            .dirty()
            .then(|| self.positions.snapshot(self.log.len(), self.log.id(), now));
        if log.is_none() && positions.is_none() {
            return Ok(());
        }
        self.syncer
            .send(Job { log, positions })
            .context("cannot sync the log file")
    }

    /// Takes the outcome of a routine sync: a log that could not be synced stops the writer,
    /// a position file that could not be saved is a warning.
    fn synced(&mut self, done: Done) -> anyhow::Result<()> {
        done.log
            .with_context(|| format!("cannot sync LOG_FILE {}", self.log.path().display()))?;
        if let Some(saved) = done.positions {
            self.positions.saved(saved);
        }
        Ok(())
    }

    /// Waits for the routine sync in flight, so what the writer saves next comes after it.
    fn wait_synced(&mut self) -> anyhow::Result<()> {
        match self.syncer.wait() {
            Some(done) => self.synced(done),
            None => Ok(()),
        }
    }

    /// When `LOG_SYNC=interval:<ms>` wants the lines written so far synced.
    fn sync_due(&self) -> Option<Instant> {
        match self.keeping.sync {
            SyncPolicy::Interval(every) => self.unsynced_since.map(|since| since + every),
            SyncPolicy::Always | SyncPolicy::Never => None,
        }
    }

    /// Saves the positions of what is written: synced first, unless `LOG_SYNC=never`.
    fn save(&mut self, now: Instant) -> anyhow::Result<()> {
        self.wait_synced()?;
        match self.keeping.sync {
            SyncPolicy::Never => {
                self.log.settle()?;
                self.positions.save(self.log.len(), self.log.id(), now);
                Ok(())
            }
            SyncPolicy::Always | SyncPolicy::Interval(_) => self.save_synced(now),
        }
    }

    /// Puts what is written on disk, then the positions that say so.
    fn save_synced(&mut self, now: Instant) -> anyhow::Result<()> {
        self.wait_synced()?;
        self.log.sync()?;
        self.positions.save(self.log.len(), self.log.id(), now);
        Ok(())
    }

    /// Reopens the log by its path (after logrotate renamed it): the old file synced and the
    /// positions saved as true of it, then the new file opened and the positions saved as true
    /// of it, before anything is written there. When the path cannot be opened the open file
    /// is kept (a warning), so no line is lost.
    fn reopen(&mut self, now: Instant) -> anyhow::Result<()> {
        self.save_synced(now)?;
        if let Err(e) = self.log.reopen() {
            tracing::warn!(
                cause = format!("{e:#}"),
                "cannot reopen the log file; still writing to the one open"
            );
            return Ok(());
        }
        self.save_synced(now)?;
        metrics::counter!("log_reopened_total").increment(1);
        tracing::info!(path = %self.log.path().display(), bytes = self.log.len(), "log file reopened");
        Ok(())
    }

    /// Whether a line of `line` bytes is to go into a new file (`LOG_MAX_BYTES`).
    fn rotation_due(&self, line: u64, now: Instant) -> bool {
        self.keeping.rotation.is_some_and(|rotation| {
            let len = self.log.len();
            len > 0
                && len.saturating_add(line) > rotation.max_bytes
                && self.rotate_after.is_none_or(|after| now >= after)
        })
    }

    /// Rotates the log by itself, as [`reopen`](Self::reopen) does after logrotate, with the
    /// renames in between. When a rename is refused the open file stays (a warning) and the
    /// next try waits [`ROTATE_RETRY`]; once renamed, a path that cannot be opened again
    /// stops the writer — the positions name the renamed file, so a restart goes on exactly.
    fn rotate(&mut self, now: Instant) -> anyhow::Result<()> {
        let Some(rotation) = self.keeping.rotation else {
            return Ok(());
        };
        self.save_synced(now)?;
        let rotated_bytes = self.log.len();
        if let Err(e) = rotate::shift(self.log.path(), rotation.keep) {
            metrics::counter!("log_rotation_failures_total").increment(1);
            tracing::warn!(
                path = %self.log.path().display(),
                cause = %e,
                retry_in = ?ROTATE_RETRY,
                "cannot rotate the log file; still writing to it"
            );
            self.rotate_after = Some(now + ROTATE_RETRY);
            return Ok(());
        }
        self.rotate_after = None;
        self.log
            .reopen()
            .context("the log file was rotated but cannot be created again")?;
        self.save_synced(now)?;
        metrics::counter!("log_rotations_total").increment(1);
        tracing::info!(
            path = %self.log.path().display(),
            rotated_bytes,
            keep = rotation.keep,
            "log file rotated"
        );
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
