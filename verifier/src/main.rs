//! The `verifier` binary: parse flags, log to stderr, verify until SIGTERM or Ctrl-C.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = verifier::Config::parse();
    config.common.init_tracing();
    verifier::run(config, plumbing::shutdown_signal())
        .await
        .context("verifier failed")
}
