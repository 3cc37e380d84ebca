//! The routine sync, off the writer's thread: the log's fdatasync, then the position file of
//! what that sync covers (written, synced, renamed). Either waits for the disk, often for
//! milliseconds; done by the writer itself, every line arriving meanwhile would wait too.
//!
//! The writer hands over a second descriptor of the log and the positions as true of the
//! length it had just flushed; this thread syncs that descriptor — which puts at least that
//! length on disk — and only then saves the positions, so they are never ahead of what is
//! durable. One job is in flight at a time, and the writer waits for it before anything it
//! does itself to the position file (a new stream's save, a reopen or rotation, the last
//! save at shutdown), so the saves reach the file in order and each names the file it
//! measured.

use crate::position::{self, Positions};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use tokio::sync::mpsc;

/// One routine sync.
pub struct Job {
    /// The log to fdatasync first; `None`: nothing new to sync (or `LOG_SYNC=never`).
    pub log: Option<Arc<File>>,
    /// The position file's path and what to save there once the log is synced.
    pub positions: Option<(PathBuf, Positions)>,
}

/// How a job went.
#[derive(Debug)]
pub struct Done {
    /// The log's sync; an error here stops the writer, as a failed write does.
    pub log: std::io::Result<()>,
    /// The position file's save, when there was one to do (and the log synced).
    pub positions: Option<std::io::Result<()>>,
}

/// The thread that runs the jobs, and whether one is in flight.
pub struct Syncer {
    jobs: Option<std_mpsc::Sender<Job>>,
    done: mpsc::UnboundedReceiver<Done>,
    busy: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread.
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = std_mpsc::channel::<Job>();
        let (report, done) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("log-sync".to_owned())
            .spawn(move || {
                for job in queue {
                    let log = job.log.as_deref().map_or(Ok(()), File::sync_data);
                    let positions = match (&log, job.positions) {
                        (Ok(()), Some((path, positions))) => {
                            Some(position::save(&path, &positions))
                        }
                        _ => None,
                    };
                    if report.send(Done { log, positions }).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Syncer {
            jobs: Some(jobs),
            done,
            busy: false,
            thread: Some(thread),
        })
    }

    /// Whether a job is in flight.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Hands `job` to the thread; call it only when not [`busy`](Syncer::busy).
    pub fn send(&mut self, job: Job) -> std::io::Result<()> {
        debug_assert!(!self.busy, "one job at a time");
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => {
                self.busy = true;
                Ok(())
            }
            _ => Err(std::io::Error::other("the log-sync thread has stopped")),
        }
    }

    /// The outcome of the job in flight, once it is done (never resolves when none is).
    pub async fn finished(&mut self) -> Done {
        if !self.busy {
            return std::future::pending().await;
        }
        let done = self.done.recv().await.unwrap_or_else(stopped);
        self.busy = false;
        done
    }

    /// Waits for the job in flight, if any, and returns its outcome. Call it from a thread
    /// that is not running async code (the writer's).
    pub fn wait(&mut self) -> Option<Done> {
        if !self.busy {
            return None;
        }
        self.busy = false;
        Some(self.done.blocking_recv().unwrap_or_else(stopped))
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the job in flight.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The outcome when the thread is gone without reporting (it panicked).
fn stopped() -> Done {
    Done {
        log: Err(std::io::Error::other("the log-sync thread has stopped")),
        positions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Mark;
    use std::io::Write;

    #[test]
    fn a_job_syncs_the_log_then_saves_the_positions_and_one_is_in_flight_until_waited_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("subscriber.log");
        let mut log = File::create(&log_path).expect("log");
        log.write_all(b"a line\n").expect("written");
        let pos_path = position::path_for(&log_path);
        let positions = Positions {
            version: 1,
            log_bytes: 7,
            log_id: None,
            streams: [(
                "p".to_owned(),
                Mark {
                    epoch: Some(1),
                    last: 1,
                },
            )]
            .into(),
        };
        let mut syncer = Syncer::start().expect("thread");
        assert!(syncer.wait().is_none(), "nothing in flight");
        let job = Job {
            log: Some(Arc::new(log)),
            positions: Some((pos_path.clone(), positions.clone())),
        };
        syncer.send(job).expect("sent");
        assert!(syncer.busy());
        let done = syncer.wait().expect("the job's outcome");
        assert!(done.log.is_ok());
        assert!(matches!(done.positions, Some(Ok(()))));
        assert!(!syncer.busy());
        assert_eq!(position::load(&pos_path).expect("read"), Some(positions));
    }
}
