//! `subscriber`: logs every event of the publishers it connects to. Runs until SIGTERM/Ctrl-C;
//! SIGHUP reopens the log file. `subscriber healthcheck` asks a running one's `/healthz`.

use clap::Parser;
use plumbing::health::Command;
use subscriber::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Some(Command::Healthcheck(check)) = &config.command {
        return check.run(&config.health_addr);
    }
    config.common.init_tracing();
    subscriber::run(config, plumbing::shutdown_signal()).await
}
