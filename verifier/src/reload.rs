//! Keys without restarts: the key ring in use, swapped whole when `KEYS_DIR` is read again —
//! on SIGHUP, and by itself when a check every `KEYS_CHECK_INTERVAL` sees the `*.pem` files
//! changed (their names, sizes and modification times).
//!
//! A reload that fails — a bad PEM, an empty or missing directory — keeps the keys in use and
//! logs a warning naming the file and the problem; the verifier goes on serving. A successful
//! one logs `keys reloaded`; tasks taken from then on use the new ring (those in flight keep the
//! ring they started with) and the next heartbeat announces the new key set.

use crate::health::Status;
use crate::keys::KeyRing;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use wire::KeyInfo;

/// The key ring in use, shared by the links and replaced whole by a reload.
#[derive(Debug)]
pub(crate) struct LiveKeys {
    ring: RwLock<Arc<KeyRing>>,
}

impl LiveKeys {
    /// Starts with `ring`.
    pub fn new(ring: KeyRing) -> Self {
        LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
        }
    }

    /// The ring in use now; a task keeps the one it was given even if a reload follows.
    pub fn current(&self) -> Arc<KeyRing> {
        // A poisoned lock still holds a whole ring: the swap below cannot leave half of one.
        Arc::clone(&self.ring.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// What heartbeats announce now.
    pub fn infos(&self) -> Vec<KeyInfo> {
        self.current().infos()
    }

    fn replace(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }
}

/// Names, sizes and modification times of the `*.pem` files of a directory, sorted; `None`
/// when the directory cannot be read. Cheap enough to take every few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Option<Vec<(OsString, u64, Option<SystemTime>)>>);

impl Fingerprint {
    fn of(dir: &Path) -> Fingerprint {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Fingerprint(None);
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|ext| ext == "pem"))
            .map(|e| {
                let meta = e.metadata().ok();
                (
                    e.file_name(),
                    meta.as_ref().map_or(0, std::fs::Metadata::len),
                    meta.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        files.sort();
        Fingerprint(Some(files))
    }
}

/// Listens for SIGHUP from now on, so that one never ends the process (its default). Call it
/// before the keys are first loaded. `None` (with a warning) when signals cannot be had; the
/// periodic check still reloads.
pub(crate) fn hangups() -> Option<Hangups> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(signal) => Some(Hangups(signal)),
            Err(error) => {
                tracing::warn!(cause = %error, "cannot listen for SIGHUP; keys reload only when KEYS_DIR changes");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The SIGHUPs the process receives.
pub(crate) struct Hangups(#[cfg(unix)] tokio::signal::unix::Signal);

impl Hangups {
    async fn recv(this: &mut Option<Hangups>) {
        match this {
            #[cfg(unix)]
            Some(Hangups(signal)) => {
                if signal.recv().await.is_none() {
                    *this = None;
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// Reads `dir` again on each SIGHUP and whenever its fingerprint changes (checked every
/// `every`), until `stop`.
pub(crate) struct Reloader {
    /// The keys directory.
    pub dir: PathBuf,
    /// The ring to replace.
    pub keys: Arc<LiveKeys>,
    /// Where `keys_loaded` is kept.
    pub status: Arc<Status>,
    /// Time between two looks at the directory.
    pub every: Duration,
}

impl Reloader {
    /// Runs until `stop` is cancelled.
    pub async fn run(self, mut hangups: Option<Hangups>, stop: CancellationToken) {
        // Taken after the first load, so a change made since is seen at the first check.
        let mut seen = Fingerprint::of(&self.dir);
        let mut ticks = tokio::time::interval(self.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let why = tokio::select! {
                () = stop.cancelled() => return,
                () = Hangups::recv(&mut hangups) => "SIGHUP",
                _ = ticks.tick() => {
                    let now = Fingerprint::of(&self.dir);
                    if now == seen {
                        continue;
                    }
                    "KEYS_DIR changed"
                }
            };
            // Remembered whatever the outcome, so a bad file is warned about once, not at
            // every check; the next change to the directory tries again.
            seen = Fingerprint::of(&self.dir);
            self.reload(why);
        }
    }

    fn reload(&self, why: &str) {
        match KeyRing::load(&self.dir) {
            Ok(ring) => {
                let ids: Vec<String> = ring.infos().into_iter().map(|k| k.id).collect();
                self.status.keys_loaded(ids.len());
                self.keys.replace(ring);
                tracing::info!(keys = ?ids, trigger = why, "keys reloaded");
            }
            Err(error) => {
                let ids: Vec<String> = self.keys.infos().into_iter().map(|k| k.id).collect();
                tracing::warn!(
                    cause = %error,
                    trigger = why,
                    kept = ?ids,
                    "keys not reloaded: KEYS_DIR refused, the keys in use are kept"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    #[test]
    fn the_fingerprint_changes_with_a_pem_file_and_not_with_other_files() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let empty = Fingerprint::of(dir.path());
        std::fs::write(dir.path().join("notes.txt"), "x").expect("written");
        assert_eq!(Fingerprint::of(dir.path()), empty);
        std::fs::write(dir.path().join("a.pem"), "x").expect("written");
        let one = Fingerprint::of(dir.path());
        assert_ne!(one, empty);
        std::fs::write(dir.path().join("a.pem"), "xy").expect("written");
        assert_ne!(Fingerprint::of(dir.path()), one);
        assert_eq!(
            Fingerprint::of(&dir.path().join("missing")),
            Fingerprint(None)
        );
    }
}
