//! [`TestSystem`]: the whole system in a scratch directory — a publisher on ports it picked
//! itself, and subscribers and verifiers connected to them — for tests that read as Arrange /
//! Act / Assert.

use crate::binary::binary;
use crate::http::Api;
use crate::log::{LogLine, read_log};
use crate::openssl::KeyFolder;
use crate::process::Process;
use crate::publisher::{Addresses, RunningPublisher};
use crate::wait::{PATIENCE, wait_until};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The publisher id every publisher of a [`TestSystem`] has, unless a test sets another.
pub const PUBLISHER_ID: &str = "pub-test";

/// A scratch directory, keys for verifiers, and the publisher's addresses once it has run.
pub struct TestSystem {
    /// Where `subscriber.log` and each process's stderr go.
    pub dir: tempfile::TempDir,
    /// Key pairs; verifiers load the public halves from [`KeyFolder::keys_dir`].
    pub keys: KeyFolder,
    /// Learnt at the publisher's first start, kept for its restarts.
    publisher: OnceLock<(Addresses, Api)>,
}

impl Default for TestSystem {
    fn default() -> Self {
        Self::new()
    }
}

impl TestSystem {
    /// A fresh directory and no keys; nothing started yet.
    pub fn new() -> TestSystem {
        TestSystem {
            dir: tempfile::tempdir().expect("a temporary directory"),
            keys: KeyFolder::new(),
            publisher: OnceLock::new(),
        }
    }

    /// Starts the publisher and returns once it listens. The first start binds port 0
    /// everywhere and learns the ports from the publisher's log; every later start (a restart)
    /// binds those same ports, where the workers are connected.
    pub async fn start_publisher(&self) -> Process {
        self.start_publisher_with(&[]).await
    }

    /// [`start_publisher`](Self::start_publisher) with extra environment, e.g.
    /// `[("TASK_TIMEOUT", "1s".into())]`.
    pub async fn start_publisher_with(&self, env: &[(&str, String)]) -> Process {
        let program = binary("publisher");
        let mut all = vec![("PUBLISHER_ID", PUBLISHER_ID.to_owned())];
        all.extend(env.iter().cloned());
        let started = match self.publisher.get() {
            None => RunningPublisher::start(&program, self.dir.path(), &all).await,
            Some((known, _)) => {
                RunningPublisher::start_on(&program, self.dir.path(), known, &all).await
            }
        };
        let api = started.api();
        self.publisher
            .get_or_init(|| (started.addresses.clone(), api));
        started.process
    }

    /// Starts the publisher once and kills it, so that its ports are known — and a later
    /// [`start_publisher`](Self::start_publisher) binds them — before it runs: for workers
    /// that are started first.
    pub async fn learn_publisher_addresses(&self) -> &Addresses {
        self.start_publisher().await.kill();
        self.addresses()
    }

    /// Where the publisher listens, as learnt at its first start (the epoch is that run's);
    /// panics before it has been started.
    pub fn addresses(&self) -> &Addresses {
        &self
            .publisher
            .get()
            .expect("the publisher has been started (or its addresses learnt)")
            .0
    }

    /// The publisher's HTTP API; panics before it has been started.
    pub fn api(&self) -> &Api {
        &self
            .publisher
            .get()
            .expect("the publisher has been started (or its addresses learnt)")
            .1
    }

    /// The subscriber's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("subscriber.log")
    }

    /// Every line of `subscriber.log` so far, parsed.
    pub fn read_log(&self) -> Vec<LogLine> {
        read_log(&self.log_path())
    }

    /// `subscriber.log` as it is, whatever its format.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts a subscriber connected to the publisher's event socket, logging to
    /// [`log_path`](Self::log_path), plus `env` (e.g. `[("LOG_FORMAT", "json".into())]`).
    pub fn start_subscriber(&self, env: &[(&str, String)]) -> Process {
        let mut all = vec![
            ("EVENTS_CONNECT", self.addresses().events.clone()),
            ("REPLAY_CONNECT", self.addresses().replay.clone()),
            ("LOG_FILE", self.log_path().display().to_string()),
        ];
        all.extend(env.iter().cloned());
        Process::start(&binary("subscriber"), self.dir.path(), &all)
    }

    /// Starts a verifier with id `id` connected to the publisher, with the public keys of
    /// [`keys`](Self::keys).
    pub fn start_verifier(&self, id: &str) -> Process {
        self.start_verifier_with(id, &[])
    }

    /// [`start_verifier`](Self::start_verifier) with extra environment, e.g.
    /// `[("KEYS_CHECK_INTERVAL", "1h".into())]`.
    pub fn start_verifier_with(&self, id: &str, env: &[(&str, String)]) -> Process {
        let addresses = self.addresses();
        let mut all = vec![
            ("TASKS_CONNECT", addresses.tasks.clone()),
            ("RESULTS_CONNECT", addresses.results.clone()),
            ("KEYS_DIR", self.keys.keys_dir().display().to_string()),
            ("VERIFIER_ID", id.to_owned()),
        ];
        all.extend(env.iter().cloned());
        Process::start(&binary("verifier"), self.dir.path(), &all)
    }

    /// Sends `/downcase?param=<label>-<n>` until one of them shows in the log, so the
    /// subscriber is known to be connected (a PUB socket drops what it sends before then);
    /// returns the params sent.
    pub async fn until_subscribed(&self, label: &str) -> Vec<String> {
        let mut sent = Vec::new();
        let what = format!("the subscriber to log a {label:?} event");
        wait_until(&what, PATIENCE, async || {
            let param = format!("{label}-{}", sent.len());
            self.api().downcase(&param).await;
            sent.push(param);
            self.log_text().contains(label).then_some(())
        })
        .await;
        sent
    }

    /// Waits until `/readyz` reports at least `n` verifiers.
    pub async fn until_verifiers(&self, n: u64) {
        let what = format!("{n} verifiers in /readyz");
        wait_until(&what, PATIENCE, async || {
            (self.api().verifiers().await >= n).then_some(())
        })
        .await;
    }
}
