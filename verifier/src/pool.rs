//! A fixed set of worker threads, fed by a channel, that runs the CPU-bound verification of the
//! tasks a link does not verify itself — more queued at once than `VERIFY_HERE_AT_MOST`, or its
//! thread busy verifying half its time (`in_flight::OwnShare`) — so the async runtime is never
//! held up for long and a heavy load runs on every worker.
//!
//! Dedicated threads rather than `tokio::task::spawn_blocking`: the thread count is exactly
//! `--workers`, a job costs one channel hand-off, and `cargo bench -p verifier` measures both
//! ways side by side (the closing note of that run gives the figures).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads that run submitted jobs in order of submission.
#[derive(Debug)]
pub struct Pool {
    jobs: mpsc::Sender<Job>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `workers` threads named `verify-<n>`.
    pub fn new(workers: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..workers.max(1))
            .map(|n| {
                let queue = Arc::clone(&queue);
                std::thread::Builder::new()
                    .name(format!("verify-{n}"))
                    .spawn(move || work(&queue))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool { jobs, threads })
    }

    /// Queues a job; it runs on the next free worker. Never blocks.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        // Workers only stop once `jobs` is dropped, which `shutdown` alone does.
        let _ = self.jobs.send(Box::new(job));
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Lets the workers finish every queued job, then joins them. Blocks: call it from a
    /// blocking context.
    pub fn shutdown(self) {
        drop(self.jobs);
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a verification thread panicked");
            }
        }
    }
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(),
            Err(mpsc::RecvError) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn every_job_runs_and_shutdown_waits_for_queued_ones() {
        let pool = Pool::new(3).expect("threads start");
        assert_eq!(pool.workers(), 3);
        let (done, results) = mpsc::channel();
        for n in 0..1000 {
            let done = done.clone();
            pool.execute(move || {
                let name = std::thread::current().name().map(str::to_owned);
                done.send((n, name)).expect("receiver alive");
            });
        }
        pool.shutdown();
        drop(done);
        let results: Vec<_> = results.iter().collect();
        assert_eq!(results.len(), 1000);
        let ns: HashSet<_> = results.iter().map(|(n, _)| *n).collect();
        assert_eq!(ns.len(), 1000);
        assert!(
            results
                .iter()
                .all(|(_, name)| name.as_deref().is_some_and(|n| n.starts_with("verify-")))
        );
    }

    #[test]
    fn jobs_run_in_parallel_on_several_workers() {
        let pool = Pool::new(2).expect("threads start");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (done, results) = mpsc::channel();
        for _ in 0..2 {
            let (barrier, done) = (Arc::clone(&barrier), done.clone());
            // Each job waits for the other: this only finishes when both run at once.
            pool.execute(move || {
                barrier.wait();
                done.send(()).expect("receiver alive");
            });
        }
        for _ in 0..2 {
            results
                .recv_timeout(Duration::from_secs(10))
                .expect("both jobs ran side by side");
        }
        pool.shutdown();
    }
}
