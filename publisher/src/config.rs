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
