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
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// When written records are forced to the disk (`JOURNAL_SYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `always`: `fdatasync` before any request whose event it holds is answered; requests
    /// arriving together share one. Survives a crash of the process and of the machine.
    Always,
    /// `interval:<ms>`: written before the answer, synced at most this long after. Survives a
    /// crash of the process; a crash of the machine loses at most this much.
    Interval(Duration),
    /// `never`: written before the answer, synced when the OS chooses. Survives a crash of the
    /// process only.
    Never,
}

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "always" => Ok(SyncPolicy::Always),
            "never" => Ok(SyncPolicy::Never),
            other => {
                let ms = other.strip_prefix("interval:").ok_or_else(|| {
                    format!("{other:?} is not `always`, `interval:<ms>` or `never`")
                })?;
                let ms: u64 = ms
                    .trim_end_matches("ms")
                    .parse()
                    .map_err(|_| format!("{ms:?} is not a number of milliseconds"))?;
                if ms == 0 {
                    return Err("the interval must be longer than zero; use `always`".into());
                }
                Ok(SyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_policies_parse_and_nonsense_is_refused() {
        assert_eq!("always".parse(), Ok(SyncPolicy::Always));
        assert_eq!("never".parse(), Ok(SyncPolicy::Never));
        assert_eq!(
            "interval:5".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(5)))
        );
        assert_eq!(
            "interval:20ms".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(20)))
        );
        assert!("interval:0".parse::<SyncPolicy>().is_err());
        assert!("sometimes".parse::<SyncPolicy>().is_err());
        assert!("interval:soon".parse::<SyncPolicy>().is_err());
    }
}
