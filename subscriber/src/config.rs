//! Every knob of the subscriber, each a flag with an environment variable (design §8).

use std::path::PathBuf;

/// Configuration of the subscriber process.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "subscriber",
    version,
    about = "Writes one line per event to a log file"
)]
pub struct Config {
    /// Publisher event endpoints to connect to (comma-separated for several publishers).
    #[arg(long, env = "EVENTS_CONNECT", default_value = "tcp://127.0.0.1:4444", value_delimiter = ',', value_parser = plumbing::parse_endpoint)]
    pub events_connect: Vec<String>,

    /// The log file events are appended to.
    #[arg(long, env = "LOG_FILE", default_value = "./subscriber.log")]
    pub log_file: PathBuf,

    /// Line format of the log file.
    #[arg(long = "format", env = "LOG_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Flags every binary takes.
    #[command(flatten)]
    pub common: plumbing::CommonArgs,
}

/// How each event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `<timestamp> <topic> <publisher>#<seq> key="value" …`, escaped so a line is one event.
    Text,
    /// One JSON object per line (JSON Lines).
    Json,
}
