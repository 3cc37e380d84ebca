//! What every binary of the system does the same way: the flags common to all (design §8),
//! logging to stderr through tracing, and turning SIGTERM / Ctrl-C into a graceful stop.

use anyhow::Context;
use std::path::PathBuf;
use wire::{Codec, SharedKey};

/// Flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// File holding a shared secret (16+ bytes). When set, every ZMQ message carries an
    /// HMAC-SHA-256 tag and messages without a valid tag are dropped. Set the same file on
    /// every process.
    #[arg(long, env = "SHARED_KEY_FILE")]
    pub shared_key_file: Option<PathBuf>,

    /// Write this process's own logs (stderr) as JSON lines instead of plain text.
    #[arg(long, env = "LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

impl CommonArgs {
    /// Sets up logging to stderr; `RUST_LOG` selects what is shown (default `info`).
    pub fn init_tracing(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        if self.log_json {
            builder.json().init();
        } else {
            builder.init();
        }
    }

    /// The codec for this process: tagging when a shared key file is configured.
    pub fn codec(&self) -> anyhow::Result<Codec> {
        let key = self
            .shared_key_file
            .as_deref()
            .map(SharedKey::from_file)
            .transpose()
            .context("SHARED_KEY_FILE is not usable")?;
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
