//! `subscriber`: logs every event of the publishers it connects to. Runs until SIGTERM/Ctrl-C.

use clap::Parser;
use subscriber::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    config.common.init_tracing();
    subscriber::run(config, plumbing::shutdown_signal()).await
}
