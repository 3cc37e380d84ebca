//! Every knob of the verifier (design contract §8): one clap struct, each flag also read from
//! the environment, with defaults that work on one machine.

use plumbing::health::HealthAddr;
use plumbing::resolve::{Peer, Target, TargetError};
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
    /// same order, one entry per publisher. A host name is followed: every address it
    /// resolves to is a publisher (see DNS_REFRESH), and its RESULTS_CONNECT entry names the
    /// same host.
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

    /// How often to look whether the `*.pem` files of KEYS_DIR changed (names, sizes,
    /// modification times) and reload the keys if so, e.g. `2s`; at most an hour. SIGHUP
    /// reloads at once.
    #[arg(
        long,
        env = "KEYS_CHECK_INTERVAL",
        default_value = "2s",
        value_parser = parse_interval
    )]
    pub keys_check_interval: Duration,

    /// This verifier's id in results and heartbeats (the publisher reports it as
    /// `verified_by`). Defaults to the host name and the process id.
    #[arg(long, env = "VERIFIER_ID", default_value_t = default_id())]
    pub id: String,

    /// Threads that verify signatures, 1 to 1024, beside the thread that receives the tasks
    /// (it verifies those it has time for itself). Defaults to the CPUs available to the
    /// process (at most 1024).
    #[arg(
        long,
        env = "VERIFY_WORKERS",
        default_value_t = default_workers(),
        value_parser = parse_workers
    )]
    pub workers: NonZeroUsize,

    /// How often to tell the publisher this verifier is alive, e.g. `1s`, `500ms`; longer
    /// than zero and at most an hour.
    #[arg(
        long,
        env = "HEARTBEAT_INTERVAL",
        default_value = "1s",
        value_parser = parse_interval
    )]
    pub heartbeat_interval: Duration,

    /// Address of the health port (`/healthz`, `/readyz`, `/metrics`); empty or `off`: none.
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:9102", value_parser = HealthAddr::parse)]
    pub health_addr: HealthAddr,

    /// How host names are followed (`DNS_REFRESH`).
    #[command(flatten)]
    pub follow: plumbing::resolve::FollowArgs,

    /// Flags every binary takes.
    #[command(flatten)]
    pub common: plumbing::CommonArgs,

    /// Run a one-off command instead of the service.
    #[command(subcommand)]
    pub command: Option<plumbing::health::Command>,
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
    /// A task endpoint and its result endpoint cannot be followed as one publisher.
    #[error("TASKS_CONNECT and RESULTS_CONNECT: {0}")]
    Target(#[from] TargetError),
}

impl PublisherEndpoints {
    /// What to follow for this pair: its host name's every address, or the pair itself.
    pub fn target(&self) -> Result<Target, ConfigError> {
        Ok(Target::new(&[&self.tasks, &self.results])?)
    }

    /// The pair of one peer of a [`target`](Self::target).
    pub fn of_peer(peer: &Peer) -> Option<PublisherEndpoints> {
        match peer.as_slice() {
            [tasks, results] => Some(PublisherEndpoints {
                tasks: tasks.clone(),
                results: results.clone(),
            }),
            _ => None,
        }
    }
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

/// Most worker threads a verifier starts. More only contend for the same CPUs, and the
/// in-flight budget (workers × [`crate::IN_FLIGHT_PER_WORKER`]) stays far below what a
/// semaphore can count.
pub const MAX_WORKERS: usize = 1024;

/// Longest heartbeat interval. The publisher counts a verifier silent for its
/// `VERIFIER_TIMEOUT` (seconds) as gone, so anything near this is already a mistake; the bound
/// catches a slipped unit before it turns into a verifier that is never heard from.
pub const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3600);

fn default_workers() -> NonZeroUsize {
    let available = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(available.min(MAX_WORKERS)).unwrap_or(NonZeroUsize::MIN)
}

fn parse_workers(value: &str) -> Result<NonZeroUsize, String> {
    let workers: usize = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number of threads"))?;
    match NonZeroUsize::new(workers) {
        Some(workers) if workers.get() <= MAX_WORKERS => Ok(workers),
        _ => Err(format!("must be between 1 and {MAX_WORKERS}")),
    }
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value.trim())
        .map_err(|e| format!("{value:?} is not a duration like 1s or 500ms ({e})"))?;
    if interval.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    if interval > MAX_HEARTBEAT_INTERVAL {
        return Err(format!(
            "must be at most {}",
            humantime::format_duration(MAX_HEARTBEAT_INTERVAL)
        ));
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
        assert_eq!(config.keys_check_interval, Duration::from_secs(2));
        assert!(config.id.ends_with(&format!("-{}", std::process::id())));
        assert_eq!(config.health_addr, HealthAddr::At("0.0.0.0:9102".into()));
    }

    #[test]
    fn the_health_port_can_be_turned_off_and_healthcheck_is_a_command() {
        assert_eq!(
            parse(&["--health-addr", ""]).expect("parses").health_addr,
            HealthAddr::Off
        );
        let check = parse(&["healthcheck"]).expect("parses");
        assert!(matches!(
            check.command,
            Some(plumbing::health::Command::Healthcheck(_))
        ));
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
    fn a_named_pair_is_followed_and_one_naming_two_hosts_is_refused() {
        let config = parse(&[
            "--tasks-connect",
            "tcp://pubs:4445",
            "--results-connect",
            "tcp://pubs:4446",
        ])
        .expect("parses");
        let pair = config.publishers().expect("pairs").remove(0);
        assert!(matches!(pair.target(), Ok(Target::Name { .. })));
        let peer = vec![
            "tcp://10.0.0.2:4445".to_owned(),
            "tcp://10.0.0.2:4446".to_owned(),
        ];
        let endpoints = PublisherEndpoints::of_peer(&peer).expect("a pair");
        assert_eq!(endpoints.results, "tcp://10.0.0.2:4446");

        let config = parse(&[
            "--tasks-connect",
            "tcp://pubs:4445",
            "--results-connect",
            "tcp://10.0.0.1:4446",
        ])
        .expect("parses");
        let refusal = config.publishers().expect("pairs")[0]
            .target()
            .expect_err("two hosts")
            .to_string();
        assert!(refusal.contains("tcp://10.0.0.1:4446"), "{refusal}");
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

    fn refusal(args: &[&str]) -> String {
        parse(args).expect_err("refused").to_string()
    }

    #[test]
    fn a_zero_heartbeat_interval_and_zero_workers_are_refused() {
        assert!(parse(&["--heartbeat-interval", "0s"]).is_err());
        assert!(parse(&["--workers", "0"]).is_err());
        let config = parse(&["--heartbeat-interval", "250ms"]).expect("parses");
        assert_eq!(config.heartbeat_interval, Duration::from_millis(250));
    }

    #[test]
    fn a_heartbeat_interval_out_of_range_or_without_a_unit_is_refused_saying_why() {
        assert!(refusal(&["--heartbeat-interval", "0s"]).contains("longer than zero"));
        assert!(refusal(&["--heartbeat-interval", "2h"]).contains("at most 1h"));
        let no_unit = refusal(&["--heartbeat-interval", "500"]);
        assert!(no_unit.contains("not a duration like 1s"), "{no_unit}");
        let config = parse(&["--heartbeat-interval", "1h"]).expect("the bound itself parses");
        assert_eq!(config.heartbeat_interval, MAX_HEARTBEAT_INTERVAL);
    }

    #[test]
    fn a_worker_count_out_of_range_or_not_a_number_is_refused_saying_why() {
        assert!(refusal(&["--workers", "0"]).contains("between 1 and 1024"));
        assert!(refusal(&["--workers", "1025"]).contains("between 1 and 1024"));
        assert!(refusal(&["--workers", "many"]).contains("not a whole number"));
        let config = parse(&["--workers", "1024"]).expect("the bound itself parses");
        assert_eq!(config.workers.get(), MAX_WORKERS);
        assert!(parse(&[]).expect("defaults parse").workers.get() <= MAX_WORKERS);
    }
}
