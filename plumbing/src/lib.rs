//! What every binary of the system does the same way: the flags common to all (design §8),
//! logging to stderr through tracing, turning SIGTERM / Ctrl-C into a graceful stop, the
//! workers' health port (`health`), following the host names workers connect to
//! (`resolve`), and the parsers of shared knob syntaxes (`SyncPolicy`).

mod guarded;
pub mod health;
pub mod resolve;
mod status_counters;
mod sync_policy;

pub use guarded::{
    ConnectError, GuardArgs, Guarded, bind_guarded, connect_guarded, connect_retrying, guard_remote,
};
pub use status_counters::StatusCounters;
pub use sync_policy::SyncPolicy;

use anyhow::Context;
use std::io::IsTerminal;
use std::path::PathBuf;
use wire::{Codec, SharedKey, SharedKeyError};

/// Flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// File holding a shared secret (16+ bytes), or several, one a line, for rotation: the
    /// first tags, any of them verifies. When set, every ZMQ message carries an HMAC-SHA-256
    /// tag and messages without a valid tag are dropped. Set it on every process.
    #[arg(long, env = "SHARED_KEY_FILE")]
    pub shared_key_file: Option<PathBuf>,

    /// Write this process's own logs (stderr) as JSON lines instead of plain text.
    #[arg(long, env = "LOG_JSON", default_value_t = false)]
    pub log_json: bool,

    /// Limits of the guard in front of every ZMQ socket.
    #[command(flatten)]
    pub guard: GuardArgs,
}

impl CommonArgs {
    /// Sets up logging to stderr; `RUST_LOG` selects what is shown (default: `info`, with the
    /// ZMQ library's own reconnection chatter only on errors).
    pub fn init_tracing(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,zeromq=error"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        if self.log_json {
            builder.json().init();
        } else {
            builder.init();
        }
    }

    /// The keys of `SHARED_KEY_FILE` (`None` when it is unset). Logs, once per call, whether
    /// this process's ZMQ messages are authenticated — a warning when they are not — so call
    /// it once, at start.
    pub fn shared_key(&self) -> Result<Option<SharedKey>, SharedKeyError> {
        let Some(path) = self.shared_key_file.as_deref() else {
            tracing::warn!("ZMQ messages are NOT authenticated: SHARED_KEY_FILE is unset");
            return Ok(None);
        };
        let key = SharedKey::from_file(path)?;
        tracing::info!(
            file = %path.display(),
            "ZMQ messages are authenticated: tagging with key 1 of {}",
            key.count()
        );
        Ok(Some(key))
    }

    /// The codec for this process: tagging when a shared key file is configured (see
    /// [`shared_key`](Self::shared_key), which it calls).
    pub fn codec(&self) -> anyhow::Result<Codec> {
        let key = self.shared_key().context("SHARED_KEY_FILE is not usable")?;
        Ok(Codec::new(key))
    }
}

/// Resolves when the process is asked to stop: SIGTERM (containers, `kill`) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, stopping"),
        () = terminate => tracing::info!("SIGTERM received, stopping"),
    }
}

/// A default process id: the host name (a container's id under Docker), else `pid-<n>`.
pub fn default_instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

/// Checks a ZMQ endpoint given on the command line and spells `tcp://*:port` (the libzmq
/// wildcard, which the ZMQ library does not resolve) as `tcp://0.0.0.0:port`.
pub fn parse_endpoint(value: &str) -> Result<String, String> {
    let value = value.trim();
    let value = match value.strip_prefix("tcp://*:") {
        Some(port) => format!("tcp://0.0.0.0:{port}"),
        None => value.to_owned(),
    };
    value
        .parse::<zeromq::Endpoint>()
        .map_err(|e| format!("{value:?} is not a ZMQ endpoint like tcp://host:port ({e})"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::parse_endpoint;

    #[test]
    fn endpoints_are_checked_and_the_wildcard_is_spelled_out() {
        assert_eq!(
            parse_endpoint("tcp://*:4444").unwrap(),
            "tcp://0.0.0.0:4444"
        );
        assert_eq!(parse_endpoint(" tcp://pub:4444").unwrap(), "tcp://pub:4444");
        assert!(parse_endpoint("pub:4444").is_err());
        assert!(parse_endpoint("tcp://pub:99999").is_err());
    }

    #[test]
    fn a_burst_of_rejects_warns_once_but_counts_all() {
        let rejects = super::Rejects::new("a message that could not be decoded");
        let warned = (0..1000)
            .filter(|_| rejects.record("tcp://x:1", &"garbage"))
            .count();
        assert_eq!(warned, 1);
        assert_eq!(rejects.total(), 1000);
    }
}

/// Counts messages dropped because they are not valid (undecodable, bad tag, the wrong kind)
/// — also as the metric `messages_rejected_total{on}` — and warns at most once per interval with how many went since, so a flood of garbage cannot
/// flood the log; the drops in between are logged at debug level.
#[derive(Debug)]
pub struct Rejects {
    what: &'static str,
    state: std::sync::Mutex<RejectState>,
}

#[derive(Debug, Default)]
struct RejectState {
    total: u64,
    unreported: u64,
    last_warning: Option<std::time::Instant>,
}

impl Rejects {
    /// How often at most a warning is logged.
    pub const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// A counter whose warnings say "dropped `what`", e.g. "a message that could not be decoded".
    pub const fn new(what: &'static str) -> Self {
        Rejects {
            what,
            state: std::sync::Mutex::new(RejectState {
                total: 0,
                unreported: 0,
                last_warning: None,
            }),
        }
    }

    /// Counts one message dropped on `on` (an endpoint or socket) for `cause`; returns whether
    /// this one was warned about.
    pub fn record(&self, on: &str, cause: &dyn std::fmt::Display) -> bool {
        metrics::counter!("messages_rejected_total", "on" => on.to_owned()).increment(1);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.total += 1;
        state.unreported += 1;
        let now = std::time::Instant::now();
        if state
            .last_warning
            .is_some_and(|at| now.duration_since(at) < Self::WARN_EVERY)
        {
            tracing::debug!(on, %cause, "dropped {}", self.what);
            return false;
        }
        tracing::warn!(
            on,
            %cause,
            dropped = state.unreported,
            dropped_total = state.total,
            "dropped {}",
            self.what
        );
        state.unreported = 0;
        state.last_warning = Some(now);
        true
    }

    /// Messages dropped so far.
    pub fn total(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// Parses a duration (`250ms`, `2s`, `1m`) that must be longer than zero.
pub fn positive_duration(value: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(value).map_err(|e| format!("{e} (try 2s)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}
