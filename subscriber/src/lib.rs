//! The subscriber: connects a SUB socket to every configured publisher and writes one line
//! per event to the log file (design §5). Heartbeats are read, never written: they only reveal
//! events that did not arrive, which are written as gap lines.

mod config;
mod log_file;
mod log_line;
mod receive;
mod streams;

pub use config::{Config, Format};
pub use log_line::escape_into;

use anyhow::Context;
use plumbing::Rejects;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Envelopes that may wait for the writer before receivers stop reading.
const ARRIVALS_CAPACITY: usize = 16 * 1024;

/// Runs until `shutdown` resolves (or the log file cannot be written), then writes out
/// everything received and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let codec = config.common.codec()?;
    let log = log_file::LogFile::open(&config.log_file, config.format)?;
    let (arrivals, queue) = mpsc::channel(ARRIVALS_CAPACITY);
    let mut writer = tokio::task::spawn_blocking(move || log.run(queue));

    let stop = CancellationToken::new();
    let rejects = Arc::new(Rejects::new("a message that could not be decoded"));
    let mut receivers = tokio::task::JoinSet::new();
    for endpoint in config.events_connect {
        let (codec, arrivals, rejects, stop) = (
            codec.clone(),
            arrivals.clone(),
            rejects.clone(),
            stop.clone(),
        );
        receivers.spawn(async move {
            receive::receive(endpoint, codec, arrivals, &rejects, stop).await;
        });
    }
    drop(arrivals);
    tracing::info!(path = %config.log_file.display(), "subscriber running");

    tokio::select! {
        () = shutdown => {}
        finished = &mut writer => {
            // The writer only ends early when the file cannot be written.
            stop.cancel();
            return finished.context("log writer panicked")?;
        }
    }
    stop.cancel();
    while receivers.join_next().await.is_some() {}
    let written = writer.await.context("log writer panicked")?;
    tracing::info!(rejected = rejects.total(), "subscriber stopped");
    written
}
