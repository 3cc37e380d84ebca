//! Every knob of the verifier (design contract §8): one clap struct, each flag also read from
//! the environment, with defaults that work on one machine.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// Command line and environment of the `verifier` binary.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "verifier",
    version,
    about = "Verifies RSA signatures (RSASSA-PKCS1-v1_5 / SHA-256) for the publisher: pulls \
             tasks from its PUSH socket and pushes the verdicts back."
)]
pub struct Config {
    /// Where to pull verification tasks from: the publisher's task PUSH socket. A
    /// comma-separated list connects to several publishers; give RESULTS_CONNECT in the
    /// same order, one entry per publisher.
    #[arg(
        long,
        env = "TASKS_CONNECT",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:4445",
        value_parser = plumbing::parse_endpoint
    )]
    pub tasks_connect: Vec<String>,

    /// Where to push results and heartbeats to: the publisher's PULL socket. A
    /// comma-separated list, in the same order as TASKS_CONNECT.
    #[arg(
        long,
        env = "RESULTS_CONNECT",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:4446",
        value_parser = plumbing::parse_endpoint
    )]
    pub results_connect: Vec<String>,

    /// Directory of PEM RSA public keys (SubjectPublicKeyInfo or PKCS#1), one per `*.pem`
    /// file; the key id is the file name without `.pem`.
    #[arg(long, env = "KEYS_DIR", default_value = "./keys")]
    pub keys_dir: PathBuf,

    /// This verifier's id in results and heartbeats (the publisher reports it as
    /// `verified_by`). Defaults to the host name and the process id.
    #[arg(long, env = "VERIFIER_ID", default_value_t = default_id())]
    pub id: String,

    /// Threads that verify signatures. Defaults to the CPUs available to the process.
    #[arg(long, env = "VERIFY_WORKERS", default_value_t = default_workers())]
    pub workers: NonZeroUsize,

    /// How often to tell the publisher this verifier is alive, e.g. `1s`, `500ms`.
    #[arg(
        long,
        env = "HEARTBEAT_INTERVAL",
        default_value = "1s",
        value_parser = parse_interval
    )]
    pub heartbeat_interval: Duration,

    /// Flags every binary takes.
    #[command(flatten)]
    pub common: plumbing::CommonArgs,
}

/// One publisher: where its tasks come from and where its results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherEndpoints {
    /// The publisher's task PUSH socket.
    pub tasks: String,
    /// The publisher's result PULL socket.
    pub results: String,
}

/// The configuration does not make sense as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The two endpoint lists cannot be paired up.
    #[error(
        "TASKS_CONNECT lists {tasks} endpoint(s) but RESULTS_CONNECT lists {results}; \
         give one of each per publisher, in the same order"
    )]
    UnpairedEndpoints {
        /// Entries in TASKS_CONNECT.
        tasks: usize,
        /// Entries in RESULTS_CONNECT.
        results: usize,
    },
    /// The verifier id is empty.
    #[error("VERIFIER_ID must not be empty")]
    EmptyId,
}

impl Config {
    /// Pairs the task and result endpoints per publisher. A result must go back to the
    /// publisher that sent the task, so each pair gets its own sockets.
    pub fn publishers(&self) -> Result<Vec<PublisherEndpoints>, ConfigError> {
        if self.tasks_connect.len() != self.results_connect.len() {
            return Err(ConfigError::UnpairedEndpoints {
                tasks: self.tasks_connect.len(),
                results: self.results_connect.len(),
            });
        }
        if self.id.trim().is_empty() {
            return Err(ConfigError::EmptyId);
        }
        Ok(self
            .tasks_connect
            .iter()
            .zip(&self.results_connect)
            .map(|(tasks, results)| PublisherEndpoints {
                tasks: tasks.clone(),
                results: results.clone(),
            })
            .collect())
    }
}

/// Host name plus process id, so two verifiers on one host have different ids.
fn default_id() -> String {
    format!("{}-{}", plumbing::default_instance_id(), std::process::id())
}

fn default_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if interval.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("verifier").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_connect_to_one_local_publisher() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(
            config.publishers().expect("one pair"),
            vec![PublisherEndpoints {
                tasks: "tcp://127.0.0.1:4445".into(),
                results: "tcp://127.0.0.1:4446".into(),
            }]
        );
        assert_eq!(config.heartbeat_interval, Duration::from_secs(1));
        assert!(config.id.ends_with(&format!("-{}", std::process::id())));
    }

    #[test]
    fn endpoint_lists_are_paired_in_order() {
        let config = parse(&[
            "--tasks-connect",
            "tcp://a:4445,tcp://b:4445",
            "--results-connect",
            "tcp://a:4446,tcp://b:4446",
        ])
        .expect("lists parse");
        let pairs = config.publishers().expect("two pairs");
        assert_eq!(pairs[1].tasks, "tcp://b:4445");
        assert_eq!(pairs[1].results, "tcp://b:4446");
    }

    #[test]
    fn unequal_endpoint_lists_are_refused() {
        let config = parse(&["--tasks-connect", "tcp://a:4445,tcp://b:4445"]).expect("parses");
        assert!(matches!(
            config.publishers(),
            Err(ConfigError::UnpairedEndpoints {
                tasks: 2,
                results: 1
            })
        ));
    }

    #[test]
    fn a_zero_heartbeat_interval_and_zero_workers_are_refused() {
        assert!(parse(&["--heartbeat-interval", "0s"]).is_err());
        assert!(parse(&["--workers", "0"]).is_err());
        let config = parse(&["--heartbeat-interval", "250ms"]).expect("parses");
        assert_eq!(config.heartbeat_interval, Duration::from_millis(250));
    }
}
