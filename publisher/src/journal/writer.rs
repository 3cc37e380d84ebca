//! The journal's writer: one task takes the events in sequence order, writes each batch that
//! arrived together with one `write` and (policy `always`) one `fdatasync`, then says how far
//! the stream is durable and hands the batch on to the socket task. Handlers wait for the
//! number of their event, so a request is answered only once its event is on disk, and no
//! event is sent that the journal does not hold.
//!
//! A write that fails (disk full, a read-only remount) is cut back to where it began and tried
//! again with backoff; meanwhile the failure is published, so new requests get a 503 naming it
//! at once and `/readyz` says why. The batch that failed is kept and written when the disk
//! takes it again: those requests were answered 503, yet their events may still be logged —
//! never the other way round.

use super::record::{self, Accepted, Header, MAGIC, Stored};
use super::segment::{self, Kept, Segment};
use super::{Settings, SyncPolicy};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use wire::{Broadcast, Channel, Codec, Envelope, Origin};

/// Most events written in one batch.
const BATCH: usize = 4096;
/// First and longest wait before a failed write is tried again.
const RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// One event for the journal, with the accepted request it announces, if any.
#[derive(Debug)]
pub struct Entry {
    /// The event as it will be sent.
    pub envelope: Envelope<Broadcast>,
    /// For `signature.requested`: what verifying it again takes.
    pub accepted: Option<Accepted>,
}

/// How far the journal holds the stream.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    /// Every event up to this number is written (and synced, as the policy says).
    pub seq: u64,
    /// Why writing fails right now; `None` while it works.
    pub failure: Option<Arc<str>>,
}

/// The segment files, owned by the writer and lent to a blocking thread for each write.
pub struct Files {
    settings: Settings,
    header: Header,
    kept: Kept,
    current: Option<Current>,
}

struct Current {
    file: File,
    len: u64,
    opened: Instant,
    synced: bool,
}

impl Files {
    /// The journal of `origin` in `settings.dir`, whose segments on disk are `found`; the next
    /// write begins a new segment.
    pub fn new(settings: Settings, origin: &Origin, found: Vec<Segment>) -> Self {
        Files {
            header: Header {
                magic: MAGIC.into(),
                publisher: origin.id.clone(),
                epoch: origin.epoch,
            },
            kept: Kept::new(found),
            current: None,
            settings,
        }
    }

    /// Appends `bytes` (whole records, the first numbered `first_seq`), then syncs when asked.
    /// On failure the segment is cut back to where it was, so nothing half-written stays.
    fn append(&mut self, bytes: &[u8], first_seq: u64, sync: bool) -> std::io::Result<()> {
        self.roll(first_seq)?;
        let Some(current) = self.current.as_mut() else {
            return Err(std::io::Error::other("no segment is open"));
        };
        let written = current.file.write_all(bytes).and_then(|()| {
            if sync {
                current.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            if let Err(cut) = current.file.set_len(current.len) {
                tracing::error!(cause = %cut, "cannot cut a failed journal write back");
            }
            return Err(e);
        }
        current.len += bytes.len() as u64;
        current.synced = sync;
        self.kept.grew(current.len);
        Ok(())
    }

    /// Whether something was written and not yet synced.
    fn unsynced(&self) -> bool {
        self.current.as_ref().is_some_and(|c| !c.synced)
    }

    /// Syncs what was written and not yet synced.
    fn sync(&mut self) -> std::io::Result<()> {
        match self.current.as_mut() {
            Some(current) if !current.synced => {
                current.file.sync_data()?;
                current.synced = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Begins a new segment when none is open, the open one is full, or it has been open for
    /// an eighth of the age bound (so old events can leave by age even on a quiet stream).
    fn roll(&mut self, first_seq: u64) -> std::io::Result<()> {
        if let Some(current) = &self.current {
            let full = current.len >= self.settings.segment_bytes;
            let old = current.opened.elapsed() >= self.settings.max_age / 8;
            if !full && !old {
                return Ok(());
            }
        }
        self.sync()?;
        let path = segment::path(&self.settings.dir, first_seq);
        let current = self.begin(&path).inspect_err(|_| {
            // A segment whose header did not make it to disk holds nothing.
            let _ = std::fs::remove_file(&path);
        })?;
        self.kept.push(Segment {
            path,
            first_seq,
            bytes: current.len,
            modified: SystemTime::now(),
        });
        self.current = Some(current);
        let deleted = self
            .kept
            .prune(self.settings.max_bytes, self.settings.max_age);
        metrics::counter!("journal_segments_deleted_total").increment(deleted as u64);
        metrics::gauge!("journal_segments").set(self.kept.len() as f64);
        Ok(())
    }

    fn begin(&self, path: &Path) -> std::io::Result<Current> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        let mut header = Vec::new();
        record::frame(&self.header, &mut header);
        file.write_all(&header)?;
        file.sync_all()?;
        // The new file's name must survive a crash too.
        File::open(&self.settings.dir)?.sync_all()?;
        // Appending from here on: after a failed write is cut back, the next one goes to the
        // new end.
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Current {
            file,
            len: header.len() as u64,
            opened: Instant::now(),
            synced: true,
        })
    }
}

/// Writes what `queue` brings until it closes, publishing progress on `durable` and handing
/// every written event to `forward` (the socket task), in order.
pub async fn run(
    mut files: Files,
    mut queue: mpsc::Receiver<Entry>,
    durable: watch::Sender<Durable>,
    forward: mpsc::Sender<Envelope<Broadcast>>,
) {
    let policy = files.settings.sync;
    let plain = Codec::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut buf = Vec::new();
    let mut last_sync = Instant::now();
    let fsyncs = metrics::counter!("journal_fsyncs_total");
    let events_written = metrics::counter!("journal_events_total");
    let bytes_written = metrics::counter!("journal_bytes_total");
    let batch_events = metrics::histogram!("journal_batch_events");
    loop {
        // With `interval`, what was written is synced once the interval has passed, also when
        // nothing more arrives.
        let pending_sync = match policy {
            SyncPolicy::Interval(every) if files.unsynced() => {
                Some(every.saturating_sub(last_sync.elapsed()))
            }
            _ => None,
        };
        let received = match pending_sync {
            Some(wait) => {
                match tokio::time::timeout(wait, queue.recv_many(&mut batch, BATCH)).await {
                    Ok(received) => received,
                    Err(_) => {
                        files = sync_off_thread(files).await;
                        fsyncs.increment(1);
                        last_sync = Instant::now();
                        continue;
                    }
                }
            }
            None => queue.recv_many(&mut batch, BATCH).await,
        };
        if received == 0 {
            break;
        }
        buf.clear();
        for entry in &batch {
            encode(&plain, entry, &mut buf);
        }
        let (first, last) = (batch[0].envelope.seq, batch[batch.len() - 1].envelope.seq);
        let sync = match policy {
            SyncPolicy::Always => true,
            SyncPolicy::Never => false,
            SyncPolicy::Interval(every) => last_sync.elapsed() >= every,
        };
        let mut retry = RETRY.0;
        loop {
            let attempt = tokio::task::spawn_blocking(move || {
                let result = files.append(&buf, first, sync);
                (files, buf, result)
            })
            .await;
            let result;
            (files, buf, result) = attempt.unwrap_or_else(|e| thread_failed(e));
            match result {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!("journal_write_errors_total").increment(1);
                    let reason: Arc<str> = Arc::from(e.to_string());
                    let first_failure = durable.borrow().failure.is_none();
                    durable.send_modify(|d| d.failure = Some(reason));
                    if first_failure {
                        tracing::error!(cause = %e, dir = %files.settings.dir.display(), "journal write failed; requests get 503 until it works again");
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY.1);
                }
            }
        }
        if sync {
            fsyncs.increment(1);
            last_sync = Instant::now();
        }
        events_written.increment(batch.len() as u64);
        bytes_written.increment(buf.len() as u64);
        batch_events.record(batch.len() as f64);
        let recovered = durable.borrow().failure.is_some();
        durable.send_modify(|d| {
            d.seq = last;
            d.failure = None;
        });
        if recovered {
            tracing::info!("the journal is writable again");
        }
        for entry in batch.drain(..) {
            if forward.send(entry.envelope).await.is_err() {
                tracing::error!("the event socket task is gone");
                return;
            }
        }
    }
    sync_off_thread(files).await;
    tracing::info!(durable = durable.borrow().seq, "journal closed");
}

/// Syncs on a blocking thread; a failure is logged (the next write tries again).
async fn sync_off_thread(mut files: Files) -> Files {
    let done = tokio::task::spawn_blocking(move || {
        if let Err(e) = files.sync() {
            tracing::warn!(cause = %e, "journal sync failed");
        }
        files
    })
    .await;
    match done {
        Ok(files) => files,
        Err(e) => thread_failed(e),
    }
}

/// A blocking thread of the writer panicked: nothing can be written any more. The process
/// exits rather than answer requests it cannot journal.
fn thread_failed(e: tokio::task::JoinError) -> ! {
    tracing::error!(cause = %e, "the journal writer failed");
    std::process::exit(70)
}

/// Appends the record of one entry to `out`.
fn encode(plain: &Codec, entry: &Entry, out: &mut Vec<u8>) {
    let message = plain.encode(&entry.envelope);
    let stored = Stored {
        seq: entry.envelope.seq,
        topic: entry.envelope.body.topic().to_owned(),
        envelope: message.get(1).map(|f| f.to_vec()).unwrap_or_default(),
        accepted: entry.accepted.clone(),
    };
    record::frame(&stored, out);
}
