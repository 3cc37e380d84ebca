//! What the integration tests of every crate share, so each test reads as Arrange / Act /
//! Assert: the real binaries started as child processes (and stopped for real), the publisher's
//! addresses learnt from its own start-up line (every socket on port 0), bounded waits that say
//! what they waited for, the HTTP API, `subscriber.log` read back, and keys and signatures made
//! with the `openssl` command line, and workers that resolve names through a hosts file of the
//! test's own.
//!
//! [`TestSystem`] is the `spawn_app` of the whole-system tests: a scratch directory with a
//! publisher, subscribers and verifiers wired to each other.

mod binary;
mod hosts;
mod http;
mod log;
pub mod openssl;
mod process;
mod publisher;
mod system;
mod tmpfs;
mod wait;
pub mod zmtp;

pub use binary::binary;
pub use hosts::HostsFile;
pub use http::{Api, Metrics};
pub use log::{LogLine, parse_line, read_log};
pub use process::{Process, health_addr_from_log};
pub use publisher::{Addresses, RunningPublisher};
pub use system::{PUBLISHER_ID, TestSystem};
pub use tmpfs::Tmpfs;
pub use wait::{PATIENCE, wait_until};
