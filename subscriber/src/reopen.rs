//! SIGHUP: reopen the log file by its path, as logrotate expects (`postrotate kill -HUP`),
//! instead of the signal's default of ending the process.

use anyhow::Context;
use std::sync::Arc;
use tokio::sync::Notify;

/// Listens for SIGHUP from now on; each one notifies the returned [`Notify`] (the writer
/// reopens the log). Call it first in the process, so no SIGHUP can end it once it runs.
pub fn on_sighup() -> anyhow::Result<Arc<Notify>> {
    let notify = Arc::new(Notify::new());
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let wake = Arc::clone(&notify);
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP received: reopening the log file");
                wake.notify_one();
            }
        });
    }
    Ok(notify)
}
