//! `publisher healthcheck`: asks the running service's `/healthz`, so a container health check
//! needs no curl in the image.

use crate::config::Healthcheck;

impl Healthcheck {
    /// Sends `GET /healthz` to the service listening on `http_addr` and checks for a 200.
    pub fn run(&self, http_addr: &str) -> anyhow::Result<()> {
        plumbing::health::probe_healthz(http_addr, "HTTP_ADDR", self.timeout)
    }
}
