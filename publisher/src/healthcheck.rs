//! `publisher healthcheck`: asks the running service's `/healthz`, so a container health check
//! needs no curl in the image.

use crate::config::Healthcheck;
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

impl Healthcheck {
    /// Sends `GET /healthz` to the service listening on `http_addr` and checks for a 200.
    pub fn run(&self, http_addr: &str) -> anyhow::Result<()> {
        let addr = local_target(http_addr)?;
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout)
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).context("no answer")?;
        if &head[9..12] != b"200" {
            bail!("/healthz answered {}", String::from_utf8_lossy(&head));
        }
        Ok(())
    }
}

/// The address to reach a server bound to `http_addr` from the same host: a wildcard bind
/// (`0.0.0.0`, `[::]`) is reached on loopback.
fn local_target(http_addr: &str) -> anyhow::Result<SocketAddr> {
    let mut addr = http_addr
        .to_socket_addrs()
        .with_context(|| format!("HTTP_ADDR {http_addr:?} is not an address"))?
        .next()
        .with_context(|| format!("HTTP_ADDR {http_addr:?} resolves to nothing"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}
