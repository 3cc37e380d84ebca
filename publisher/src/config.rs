//! Every knob of the publisher, each a flag with an environment variable (design §8).
//!
//! Every duration and count is checked when it is parsed, so a value the service cannot run
//! with (`--heartbeat-interval 0s`, `--task-attempts 0`) is refused with a message naming the
//! flag instead of panicking or being quietly raised later.

use plumbing::positive_duration;
use std::time::Duration;

/// Configuration of the publisher process.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "publisher",
    version,
    about = "HTTP front that publishes every outcome as a ZMQ event"
)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,

    /// ZMQ PUB endpoint events are published on (subscribers connect here).
    #[arg(long, env = "EVENTS_BIND", default_value = "tcp://0.0.0.0:4444", value_parser = plumbing::parse_endpoint)]
    pub events_bind: String,

    /// ZMQ PUSH endpoint verification tasks are sent on (verifiers connect their PULL here).
    #[arg(long, env = "TASKS_BIND", default_value = "tcp://0.0.0.0:4445", value_parser = plumbing::parse_endpoint)]
    pub tasks_bind: String,

    /// ZMQ PULL endpoint verdicts and verifier heartbeats arrive on (verifiers connect PUSH here).
    #[arg(long, env = "RESULTS_BIND", default_value = "tcp://0.0.0.0:4446", value_parser = plumbing::parse_endpoint)]
    pub results_bind: String,

    /// ZMQ ROUTER endpoint subscribers ask for the events they missed (replay).
    #[arg(long, env = "REPLAY_BIND", default_value = "tcp://0.0.0.0:4447", value_parser = plumbing::parse_endpoint)]
    pub replay_bind: String,

    /// Most bytes the publisher holds for one subscriber that does not read (stopped, or
    /// stuck on a disk); past it, that subscriber is disconnected and catches up by replay
    /// when it reads again. It must exceed the largest burst a healthy subscriber falls
    /// behind by.
    #[arg(long, env = "MAX_SUBSCRIBER_BACKLOG_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = count::<usize>)]
    pub max_subscriber_backlog_bytes: usize,

    /// Most events the replay window keeps (the most recent ones).
    #[arg(long, env = "REPLAY_WINDOW_EVENTS", default_value_t = 1_000_000, value_parser = count::<usize>)]
    pub replay_window_events: usize,

    /// Most bytes the replay window keeps: the events as sent plus 64 bytes each of bookkeeping.
    #[arg(long, env = "REPLAY_WINDOW_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = count::<usize>)]
    pub replay_window_bytes: usize,

    /// Directory of the journal: every event is written there before its request is answered,
    /// and read back on start (the stream goes on in the same epoch, accepted signature
    /// requests answer again). Unset: memory only, and a crash loses what was not yet sent.
    #[arg(long, env = "JOURNAL_DIR")]
    pub journal_dir: Option<std::path::PathBuf>,

    /// When journal writes are forced to disk: `always` (before the answer; requests arriving
    /// together share one fdatasync), `interval:<ms>` (at most this long after the answer), or
    /// `never` (when the OS chooses).
    #[arg(long, env = "JOURNAL_SYNC", default_value = "always")]
    pub journal_sync: crate::journal::SyncPolicy,

    /// Most bytes the journal's segments take; the oldest segment goes first.
    #[arg(long, env = "JOURNAL_MAX_BYTES", default_value_t = 1024 * 1024 * 1024, value_parser = count::<u64>)]
    pub journal_max_bytes: u64,

    /// Journal segments last written longer ago than this are deleted.
    #[arg(long, env = "JOURNAL_MAX_AGE", default_value = "24h", value_parser = positive_duration)]
    pub journal_max_age: Duration,

    /// Size at which a journal segment is closed and the next begun.
    #[arg(long, env = "JOURNAL_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = count::<u64>)]
    pub journal_segment_bytes: u64,

    /// How long a verifier has to answer one send of a task before it is sent again.
    #[arg(long, env = "TASK_TIMEOUT", default_value = "2s", value_parser = positive_duration)]
    pub task_timeout: Duration,

    /// How many times a task is sent before its request ends as `error`.
    #[arg(long, env = "TASK_ATTEMPTS", default_value_t = 4, value_parser = count::<u32>)]
    pub task_attempts: u32,

    /// A verifier not heard from for this long is taken as gone.
    #[arg(long, env = "VERIFIER_TIMEOUT", default_value = "3s", value_parser = positive_duration)]
    pub verifier_timeout: Duration,

    /// Signature requests that may queue for the dispatcher before new ones get 503.
    #[arg(long, env = "TASK_QUEUE", default_value_t = 4096, value_parser = count::<usize>)]
    pub task_queue: usize,

    /// Signature results kept for GET /signatures/{id}.
    #[arg(long, env = "RESULTS_CAPACITY", default_value_t = 100_000, value_parser = count::<usize>)]
    pub results_capacity: usize,

    /// How long a signature result can be fetched after the request.
    #[arg(long, env = "RESULTS_TTL", default_value = "10m", value_parser = positive_duration)]
    pub results_ttl: Duration,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = count::<usize>)]
    pub max_body_bytes: usize,

    /// Longest `?wait=` honoured on POST /signatures.
    #[arg(long, env = "MAX_WAIT", default_value = "30s", value_parser = positive_duration)]
    pub max_wait: Duration,

    /// Most API requests (/downcase, /signatures) in progress at once. Past it a request is
    /// answered 503 with `Retry-After` at once instead of queueing; /healthz, /readyz and
    /// /metrics are not counted, so probes still answer.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 1024, value_parser = request_limit)]
    pub max_concurrent_requests: usize,

    /// Longest an API request may take, reading its body included; past it the answer is
    /// 503. It must be longer than MAX_WAIT, so a `?wait=` can run its course.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub request_timeout: Duration,

    /// How long a client has to send a request's headers, and an idle keep-alive connection
    /// to start its next request, before the connection is closed (against slowloris).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,

    /// Event endpoints of the other publishers behind the same load balancer,
    /// comma-separated. A host name stands for every address it resolves to, looked up again
    /// every `DNS_REFRESH` (`tcp://tasks.publisher:4444` names a whole Swarm service; this
    /// publisher's own events are recognised and ignored). Their signature events are
    /// followed so that `GET /signatures/{id}` answers here for their requests too. Unset:
    /// a single publisher (empty entries are skipped, so `PEERS_CONNECT=` is unset too).
    #[arg(long, env = "PEERS_CONNECT", value_delimiter = ',', value_parser = optional_endpoint)]
    pub peers_connect: Vec<String>,

    /// How long `GET /signatures/{id}` waits for a peer's event about an id that names a
    /// followed peer but is not known here yet (it may be on its way) before answering 404.
    /// `0s`: no wait.
    #[arg(long, env = "PEER_WAIT", default_value = "500ms", value_parser = peer_wait)]
    pub peer_wait: Duration,

    /// This publisher's id in every event; default: the host name.
    #[arg(long, env = "PUBLISHER_ID", default_value_t = plumbing::default_instance_id())]
    pub id: String,

    /// Longest `param` accepted by /downcase, in bytes (UTF-8, after percent-decoding).
    #[arg(long, env = "MAX_PARAM_BYTES", default_value_t = 4096, value_parser = count::<usize>)]
    pub max_param_bytes: usize,

    /// How often a heartbeat goes out while no event does.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub heartbeat_interval: Duration,

    /// Serve the API without publishing events (for measuring what publishing costs).
    #[arg(long, env = "EVENTS_DISABLED", hide = true, default_value_t = false)]
    pub events_disabled: bool,

    /// How host names in `PEERS_CONNECT` are followed (`DNS_REFRESH`).
    #[command(flatten)]
    pub follow: plumbing::resolve::FollowArgs,

    /// Flags every binary takes.
    #[command(flatten)]
    pub common: plumbing::CommonArgs,

    /// Run a one-off command instead of the service.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Config {
    /// The peers' event endpoints, without the empty entries of the list.
    pub fn peers(&self) -> Vec<String> {
        let listed = self.peers_connect.iter().filter(|e| !e.is_empty());
        listed.cloned().collect()
    }

    /// The HTTP front's limits, once they are checked against each other: a request timeout
    /// no longer than `MAX_WAIT` would cut every `?wait=` short.
    pub fn http_limits(&self) -> Result<HttpLimits, String> {
        if self.request_timeout <= self.max_wait {
            return Err(format!(
                "REQUEST_TIMEOUT ({}) must be longer than MAX_WAIT ({})",
                humantime::format_duration(self.request_timeout),
                humantime::format_duration(self.max_wait)
            ));
        }
        Ok(HttpLimits {
            max_concurrent_requests: self.max_concurrent_requests,
            request_timeout: self.request_timeout,
            header_read_timeout: self.header_read_timeout,
        })
    }
}

/// What bounds the HTTP front's work, so no client can stop it: requests in progress,
/// a request's duration, and the time to send headers.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// API requests in progress before new ones are shed with 503.
    pub max_concurrent_requests: usize,
    /// Longest an API request may take.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
}

/// One-off commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Exit 0 when the publisher on HTTP_ADDR answers /healthz (for container health checks).
    Healthcheck(Healthcheck),
}

/// Options of `publisher healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct Healthcheck {
    /// How long to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub timeout: Duration,
}

/// Parses a whole number that must be at least 1.
pub fn count<T: TryFrom<u64>>(value: &str) -> Result<T, String> {
    let n: u64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    T::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// Parses one entry of a list of endpoints, where an empty one stands for none.
fn optional_endpoint(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    plumbing::parse_endpoint(value)
}

/// Longest `PEER_WAIT`: a peer's event takes milliseconds, so a longer wait only holds a 404.
const MAX_PEER_WAIT: Duration = Duration::from_secs(10);

/// Parses `PEER_WAIT`: a duration from zero to [`MAX_PEER_WAIT`].
fn peer_wait(value: &str) -> Result<Duration, String> {
    let wait = humantime::parse_duration(value).map_err(|e| format!("{e} (try 500ms)"))?;
    if wait > MAX_PEER_WAIT {
        return Err(format!(
            "must be at most {}",
            humantime::format_duration(MAX_PEER_WAIT)
        ));
    }
    Ok(wait)
}

/// Most requests in progress that `MAX_CONCURRENT_REQUESTS` may allow: far more than one
/// process serves, and well inside what the semaphore behind the limit can count.
const MAX_REQUEST_LIMIT: usize = 1_000_000;

/// Parses `MAX_CONCURRENT_REQUESTS`: a whole number from 1 to [`MAX_REQUEST_LIMIT`].
fn request_limit(value: &str) -> Result<usize, String> {
    let n = count::<usize>(value)?;
    if n > MAX_REQUEST_LIMIT {
        return Err(format!("{n} is more than {MAX_REQUEST_LIMIT}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn refusal(args: &[&str]) -> String {
        let args = std::iter::once("publisher").chain(args.iter().copied());
        Config::try_parse_from(args)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_zero_heartbeat_interval_is_refused_naming_the_flag() {
        let message = refusal(&["--heartbeat-interval", "0s"]);
        assert!(message.contains("--heartbeat-interval"), "{message}");
        assert!(message.contains("longer than zero"), "{message}");
    }

    #[test]
    fn zero_task_attempts_are_refused_naming_the_flag() {
        let message = refusal(&["--task-attempts", "0"]);
        assert!(message.contains("--task-attempts"), "{message}");
        assert!(message.contains("at least 1"), "{message}");
    }

    #[test]
    fn every_duration_and_count_flag_refuses_zero() {
        for flag in [
            "--task-timeout",
            "--verifier-timeout",
            "--results-ttl",
            "--max-wait",
            "--heartbeat-interval",
            "--request-timeout",
            "--header-read-timeout",
        ] {
            assert!(refusal(&[flag, "0ms"]).contains(flag), "{flag}");
        }
        assert!(refusal(&["healthcheck", "--timeout", "0s"]).contains("--timeout"));
        for flag in [
            "--task-attempts",
            "--task-queue",
            "--results-capacity",
            "--max-body-bytes",
            "--max-param-bytes",
            "--max-concurrent-requests",
        ] {
            assert!(refusal(&[flag, "0"]).contains(flag), "{flag}");
        }
    }

    #[test]
    fn the_defaults_parse() {
        let config = Config::try_parse_from(["publisher"]).expect("defaults are valid");
        assert_eq!(config.task_attempts, 4);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(1));
        let limits = config
            .http_limits()
            .expect("the default limits fit together");
        assert!(limits.request_timeout > config.max_wait);
    }

    #[test]
    fn a_request_timeout_not_longer_than_max_wait_is_refused_naming_both() {
        let config = Config::try_parse_from(["publisher", "--request-timeout", "30s"])
            .expect("each flag is valid alone");

        let message = config.http_limits().expect_err("refused");

        assert!(message.contains("REQUEST_TIMEOUT"), "{message}");
        assert!(message.contains("MAX_WAIT"), "{message}");
    }

    #[test]
    fn peers_are_a_comma_separated_list_and_the_peer_wait_is_bounded() {
        let config = Config::try_parse_from([
            "publisher",
            "--peers-connect",
            "tcp://tasks.publisher:4444,tcp://*:4444",
            "--peer-wait",
            "0s",
        ])
        .expect("valid");
        assert_eq!(
            config.peers(),
            ["tcp://tasks.publisher:4444", "tcp://0.0.0.0:4444"]
        );
        assert_eq!(config.peer_wait, Duration::ZERO);
        let defaults = Config::try_parse_from(["publisher"]).expect("defaults are valid");
        assert!(defaults.peers().is_empty());
        let empty = Config::try_parse_from(["publisher", "--peers-connect", ""]).expect("valid");
        assert!(empty.peers().is_empty());
        assert_eq!(defaults.peer_wait, Duration::from_millis(500));
        assert!(refusal(&["--peer-wait", "11s"]).contains("--peer-wait"));
        assert!(refusal(&["--peers-connect", "publisher:4444"]).contains("--peers-connect"));
    }

    #[test]
    fn a_concurrency_limit_past_a_million_is_refused() {
        let message = refusal(&["--max-concurrent-requests", "1000001"]);
        assert!(message.contains("--max-concurrent-requests"), "{message}");
        assert_eq!(request_limit("1000000"), Ok(1_000_000));
    }

    #[test]
    fn durations_and_counts_parse_in_their_usual_forms() {
        assert_eq!(positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(positive_duration("soon").is_err());
        assert_eq!(count::<u32>("3"), Ok(3));
        assert!(count::<u32>("-1").is_err());
        assert!(count::<u32>("4294967296").is_err());
    }
}
