//! Every knob of the publisher, each a flag with an environment variable (design §8).

use crate::healthcheck::Healthcheck;
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

    /// How long a verifier has to answer one send of a task before it is sent again.
    #[arg(long, env = "TASK_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub task_timeout: Duration,

    /// How many times a task is sent before its request ends as `error`.
    #[arg(long, env = "TASK_ATTEMPTS", default_value_t = 4)]
    pub task_attempts: u32,

    /// A verifier not heard from for this long is taken as gone.
    #[arg(long, env = "VERIFIER_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub verifier_timeout: Duration,

    /// Signature requests that may queue for the dispatcher before new ones get 503.
    #[arg(long, env = "TASK_QUEUE", default_value_t = 4096)]
    pub task_queue: usize,

    /// Signature results kept for GET /signatures/{id}.
    #[arg(long, env = "RESULTS_CAPACITY", default_value_t = 100_000)]
    pub results_capacity: usize,

    /// How long a signature result can be fetched after the request.
    #[arg(long, env = "RESULTS_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub results_ttl: Duration,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Longest `?wait=` honoured on POST /signatures.
    #[arg(long, env = "MAX_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,

    /// This publisher's id in every event; default: the host name.
    #[arg(long, env = "PUBLISHER_ID", default_value_t = plumbing::default_instance_id())]
    pub id: String,

    /// Longest `param` accepted by /downcase, in bytes (UTF-8, after percent-decoding).
    #[arg(long, env = "MAX_PARAM_BYTES", default_value_t = 4096)]
    pub max_param_bytes: usize,

    /// How often a heartbeat goes out while no event does.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// Serve the API without publishing events (for measuring what publishing costs).
    #[arg(long, env = "EVENTS_DISABLED", hide = true, default_value_t = false)]
    pub events_disabled: bool,

    /// Flags every binary takes.
    #[command(flatten)]
    pub common: plumbing::CommonArgs,

    /// Run a one-off command instead of the service.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Exit 0 when the publisher on HTTP_ADDR answers /healthz (for container health checks).
    Healthcheck(Healthcheck),
}
