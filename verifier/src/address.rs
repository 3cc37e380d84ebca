//! Noticing that a publisher's host name now points somewhere else.
//!
//! When the publisher comes back at a new address (a container recreated, or reattached to its
//! network) while the old address vanished without a FIN, the old TCP connection shows no
//! error for many minutes: writes just wait to be retransmitted. A link connected through a
//! host name therefore looks the name up again every few seconds and starts afresh when the
//! address it is connected to is no longer among the answers. Endpoints given as IP addresses
//! are not watched; a failed or empty lookup changes nothing.
//!
//! Behind the socket guard the library sees only the guard's loopback listener, never the
//! publisher's address; so a guarded connection [`resolve`]s the name itself, gives the guard
//! one literal address, and watches that one.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;
use zeromq::{Endpoint, Host};

/// Time between two lookups of a watched host name.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// A future that resolves, with the reason, once the host name in `configured` stops resolving
/// to the address of `connected` (the peer a socket reached through it); it looks again
/// `every` so long. `None` when there is nothing to watch: `configured` names an IP address, or
/// `connected` is not an IP endpoint.
pub fn watch(
    configured: &str,
    connected: &Endpoint,
    every: Duration,
) -> Option<impl Future<Output = String> + Send + 'static> {
    let Ok(Endpoint::Tcp(Host::Domain(name), port)) = configured.parse::<Endpoint>() else {
        return None;
    };
    let peer = match connected {
        Endpoint::Tcp(Host::Ipv4(ip), _) => IpAddr::V4(*ip),
        Endpoint::Tcp(Host::Ipv6(ip), _) => IpAddr::V6(*ip),
        _ => return None,
    };
    Some(async move {
        let mut every = tokio::time::interval(every);
        every.tick().await;
        loop {
            every.tick().await;
            let Ok(answers) = tokio::net::lookup_host((name.as_str(), port)).await else {
                continue;
            };
            let resolved: Vec<IpAddr> = answers.map(|a| a.ip()).collect();
            if has_moved(peer, &resolved) {
                return format!("{name} now resolves to {resolved:?}, no longer to {peer}");
            }
        }
    })
}

/// The literal addresses to try for `configured`, in the resolver's order: each address its
/// host name resolves to now, or `configured` itself when it names an IP address (or is not a
/// TCP endpoint). A failed or empty lookup is an error, like a failed connect.
pub async fn resolve(configured: &str) -> io::Result<Vec<Endpoint>> {
    let endpoint = configured
        .parse::<Endpoint>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let Endpoint::Tcp(Host::Domain(name), port) = &endpoint else {
        return Ok(vec![endpoint]);
    };
    let resolved: Vec<Endpoint> = tokio::net::lookup_host((name.as_str(), *port))
        .await?
        .map(Endpoint::from_tcp_addr)
        .collect();
    if resolved.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} resolves to no address"),
        ));
    }
    Ok(resolved)
}

/// Whether a fresh lookup shows the connected address is gone (an empty answer proves nothing).
pub fn has_moved(connected: IpAddr, resolved: &[IpAddr]) -> bool {
    !resolved.is_empty() && !resolved.contains(&connected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn only_an_answer_without_the_connected_address_means_it_moved() {
        let connected = ip("172.18.0.5");
        assert!(!has_moved(connected, &[ip("172.18.0.5")]));
        assert!(!has_moved(connected, &[ip("172.18.0.9"), ip("172.18.0.5")]));
        assert!(!has_moved(connected, &[]));
        assert!(has_moved(connected, &[ip("172.18.0.9")]));
    }

    #[test]
    fn only_host_names_are_watched() {
        let peer: Endpoint = "tcp://127.0.0.1:4445".parse().expect("endpoint");
        let every = RECHECK_EVERY;
        assert!(watch("tcp://127.0.0.1:4445", &peer, every).is_none());
        assert!(watch("tcp://publisher:4445", &peer, every).is_some());
        let ipc: Endpoint = "ipc:///tmp/x".parse().expect("endpoint");
        assert!(watch("tcp://publisher:4445", &ipc, every).is_none());
    }

    #[tokio::test]
    async fn a_host_name_resolves_to_literal_addresses_and_an_ip_address_to_itself() {
        let resolved = resolve("tcp://localhost:4445")
            .await
            .expect("localhost resolves");
        assert!(!resolved.is_empty());
        for endpoint in &resolved {
            assert!(
                matches!(endpoint, Endpoint::Tcp(Host::Ipv4(_) | Host::Ipv6(_), 4445)),
                "{endpoint}"
            );
        }
        let literal = resolve("tcp://127.0.0.1:4445").await.expect("no lookup");
        assert_eq!(
            literal,
            vec!["tcp://127.0.0.1:4445".parse().expect("endpoint")]
        );
    }

    #[tokio::test]
    async fn a_name_that_still_resolves_to_the_peer_is_left_alone() {
        let peer: Endpoint = "tcp://127.0.0.1:4445".parse().expect("endpoint");
        let every = Duration::from_millis(20);
        let watching = watch("tcp://localhost:4445", &peer, every).expect("watched");
        let outcome = tokio::time::timeout(every * 10, watching).await;
        assert!(outcome.is_err(), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_name_that_resolves_elsewhere_now_is_reported() {
        let peer: Endpoint = "tcp://127.0.0.2:4445".parse().expect("endpoint");
        let every = Duration::from_millis(20);
        let watching = watch("tcp://localhost:4445", &peer, every).expect("watched");
        let reason = tokio::time::timeout(Duration::from_secs(10), watching)
            .await
            .expect("the move is noticed");
        assert!(reason.contains("no longer to 127.0.0.2"), "{reason}");
    }
}
