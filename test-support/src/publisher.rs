//! The publisher binary on port 0 everywhere, its real addresses read from the line it logs
//! when it has bound them, and a restart on the same ports.

use crate::http::Api;
use crate::process::Process;
use crate::wait::{PATIENCE, wait_until};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// What a started publisher listens on, from its `publisher listening …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// HTTP API.
    pub http: SocketAddr,
    /// ZMQ PUB (events), e.g. `tcp://127.0.0.1:40123`.
    pub events: String,
    /// ZMQ PUSH (verification tasks).
    pub tasks: String,
    /// ZMQ PULL (results and verifier heartbeats).
    pub results: String,
    /// ZMQ ROUTER (replay), `disabled` when the publisher serves none.
    pub replay: String,
    /// Publisher id.
    pub id: String,
    /// The run's epoch.
    pub epoch: u64,
}

impl Addresses {
    /// Reads the first `publisher listening http=… events=… tasks=… results=… replay=… id=… epoch=…`
    /// line of a publisher's stderr (tracing's text format; a value may be quoted).
    pub fn from_log(stderr: &str) -> Option<Addresses> {
        let line = stderr
            .lines()
            .find(|l| l.contains(" publisher listening "))?;
        let (_, fields) = line.split_once(" publisher listening ")?;
        let field = |key: &str| {
            fields.split(' ').find_map(|token| {
                let value = token.strip_prefix(key)?.strip_prefix('=')?;
                Some(value.trim_matches('"').to_owned())
            })
        };
        Some(Addresses {
            http: field("http")?.parse().ok()?,
            events: field("events")?,
            tasks: field("tasks")?,
            results: field("results")?,
            replay: field("replay")?,
            id: field("id")?,
            epoch: field("epoch")?.parse().ok()?,
        })
    }

    /// `HTTP_ADDR` and the `*_BIND` variables for binding these same addresses again.
    fn bind_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("HTTP_ADDR", self.http.to_string()),
            ("EVENTS_BIND", self.events.clone()),
            ("TASKS_BIND", self.tasks.clone()),
            ("RESULTS_BIND", self.results.clone()),
        ];
        if self.replay != "disabled" {
            env.push(("REPLAY_BIND", self.replay.clone()));
        }
        env
    }
}

/// `HTTP_ADDR` and the `*_BIND` variables: loopback, port 0, so the kernel picks free ports.
fn any_port_env() -> Vec<(&'static str, String)> {
    vec![
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("EVENTS_BIND", "tcp://127.0.0.1:0".into()),
        ("TASKS_BIND", "tcp://127.0.0.1:0".into()),
        ("RESULTS_BIND", "tcp://127.0.0.1:0".into()),
        ("REPLAY_BIND", "tcp://127.0.0.1:0".into()),
    ]
}

/// A publisher process and where it listens.
pub struct RunningPublisher {
    /// The process.
    pub process: Process,
    /// Where it listens.
    pub addresses: Addresses,
}

impl RunningPublisher {
    /// Starts `program` (the publisher binary) in `dir` with every socket on a free loopback
    /// port, plus `env`; returns once it has logged where it listens.
    pub async fn start(program: &Path, dir: &Path, env: &[(&str, String)]) -> RunningPublisher {
        let mut all = any_port_env();
        all.extend(env.iter().cloned());
        let (process, addresses) = start_once(program, dir, &all)
            .await
            .unwrap_or_else(|stderr| panic!("the publisher did not start:\n{stderr}"));
        RunningPublisher { process, addresses }
    }

    /// Starts `program` on the same `addresses` a previous run had (the workers are
    /// connected there), plus `env`. A port the previous run just closed can take a moment to
    /// be free again, so a start that cannot bind is retried, within a bound.
    pub async fn start_on(
        program: &Path,
        dir: &Path,
        addresses: &Addresses,
        env: &[(&str, String)],
    ) -> RunningPublisher {
        let mut all = addresses.bind_env();
        all.extend(env.iter().cloned());
        let mut last_failure = String::new();
        let started = tokio::time::timeout(PATIENCE, async {
            loop {
                match start_once(program, dir, &all).await {
                    Ok(started) => return started,
                    Err(stderr) if stderr.contains("in use") => last_failure = stderr,
                    Err(stderr) => panic!("the publisher did not start again:\n{stderr}"),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let (process, learnt) = started.unwrap_or_else(|_| {
            panic!("the publisher could not bind its ports again:\n{last_failure}")
        });
        assert_eq!(
            (
                learnt.http,
                &learnt.events,
                &learnt.tasks,
                &learnt.results,
                &learnt.replay
            ),
            (
                addresses.http,
                &addresses.events,
                &addresses.tasks,
                &addresses.results,
                &addresses.replay
            ),
            "a restarted publisher listens where the first run did"
        );
        RunningPublisher {
            process,
            addresses: learnt,
        }
    }

    /// A publisher `process` started some other way (e.g. under a private `/etc/hosts`),
    /// once it has logged where it listens.
    pub async fn started(process: Process) -> RunningPublisher {
        let (process, addresses) = learn_addresses(process)
            .await
            .unwrap_or_else(|stderr| panic!("the publisher did not start:\n{stderr}"));
        RunningPublisher { process, addresses }
    }

    /// The HTTP API of this publisher.
    pub fn api(&self) -> Api {
        Api::new(self.addresses.http)
    }
}

/// Starts the publisher and waits for its listening line; `Err(stderr)` when it exits first.
async fn start_once(
    program: &Path,
    dir: &Path,
    env: &[(&str, String)],
) -> Result<(Process, Addresses), String> {
    learn_addresses(Process::start(program, dir, env)).await
}

/// Waits for the publisher `process` to log where it listens; its stderr if it exits first.
async fn learn_addresses(mut process: Process) -> Result<(Process, Addresses), String> {
    let outcome = wait_until("the publisher's listening line", PATIENCE, async || {
        if let Some(addresses) = Addresses::from_log(&process.stderr()) {
            return Some(Ok(addresses));
        }
        process
            .exited()
            .map(|status| Err(format!("exit {status}; stderr:\n{}", process.stderr())))
    })
    .await;
    outcome.map(|addresses| (process, addresses))
}

#[cfg(test)]
mod tests {
    use super::Addresses;

    #[test]
    fn the_listening_line_is_read_with_quoted_and_bare_values() {
        let stderr = "2026-12-01T20:29:43.084555Z  INFO publisher: publisher listening \
            http=127.0.0.1:39775 events=\"tcp://127.0.0.1:37935\" tasks=tcp://127.0.0.1:33357 \
            results=tcp://127.0.0.1:44887 replay=\"tcp://127.0.0.1:41001\" id=pub-test \
            epoch=1796156983052\n";

        let addresses = Addresses::from_log(stderr).expect("the line is understood");

        assert_eq!(addresses.http.port(), 39775);
        assert_eq!(addresses.events, "tcp://127.0.0.1:37935");
        assert_eq!(addresses.tasks, "tcp://127.0.0.1:33357");
        assert_eq!(addresses.results, "tcp://127.0.0.1:44887");
        assert_eq!(addresses.replay, "tcp://127.0.0.1:41001");
        assert_eq!(addresses.id, "pub-test");
        assert_eq!(addresses.epoch, 1_796_156_983_052);
    }

    #[test]
    fn no_listening_line_yet_is_none() {
        assert_eq!(Addresses::from_log("INFO publisher: starting\n"), None);
    }
}
