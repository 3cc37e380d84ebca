//! The journal (design §6, "acknowledged means durable"): with `JOURNAL_DIR` set, every event
//! is written to disk before the request that made it is answered, and before it is sent, so
//! a subscriber never logs an event that a crash could take back.
//!
//! - [`record`]: the checksummed, length-prefixed records;
//! - [`segment`]: the segment files, bounded by size and age;
//! - [`writer`]: the task that appends what the handlers publish, sharing one `fdatasync`
//!   among all the events that arrived together (group commit);
//! - [`recover`]: reading the journal on start — a torn or corrupt tail is cut and reported,
//!   the stream goes on in the same epoch, and accepted signature requests come back.

pub mod record;
pub mod recover;
pub mod segment;
pub mod writer;

pub use record::Accepted;
pub use recover::{Recovered, Restored};
pub use writer::{Durable, Entry};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// When written records are forced to the disk (`JOURNAL_SYNC`). `always`: `fdatasync`
/// before any request whose event it holds is answered (requests arriving together share
/// one); `interval:<ms>`: written before the answer, synced at most this long after; `never`:
/// written before the answer, synced when the OS chooses.
pub use plumbing::SyncPolicy;

/// Where the journal lives and how it is bounded.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The journal directory; made when missing.
    pub dir: PathBuf,
    /// When records are forced to disk.
    pub sync: SyncPolicy,
    /// Most bytes of segments kept; the oldest go first.
    pub max_bytes: u64,
    /// Segments last written longer ago than this are deleted.
    pub max_age: Duration,
    /// A segment is closed and a new one begun past this size.
    pub segment_bytes: u64,
}

/// The journal cannot take events now; the reason is the client's and `/readyz`'s.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the journal cannot be written: {0}")]
pub struct Unwritable(pub Arc<str>);

/// What the publishing path holds of the journal: where to append, and how far it is durable.
#[derive(Clone)]
pub struct Appender {
    /// Entries for the writer, in sequence order.
    pub queue: mpsc::Sender<Entry>,
    /// How far the journal holds the stream, and whether it is failing.
    pub durable: watch::Receiver<Durable>,
}

impl Appender {
    /// Why the journal cannot be written now, if it cannot.
    pub fn failure(&self) -> Option<Unwritable> {
        self.durable.borrow().failure.clone().map(Unwritable)
    }

    /// Waits until event `seq` is in the journal (as far as the sync policy promises), or the
    /// journal fails before it is.
    pub async fn written(&self, seq: u64) -> Result<(), Unwritable> {
        let mut durable = self.durable.clone();
        let state = durable
            .wait_for(|d| d.seq >= seq || d.failure.is_some())
            .await
            .map_err(|_| Unwritable("the journal writer has stopped".into()))?;
        match &state.failure {
            Some(reason) if state.seq < seq => Err(Unwritable(reason.clone())),
            _ => Ok(()),
        }
    }
}
