//! Every knob of the subscriber, each a flag with an environment variable (design §8).

use plumbing::health::HealthAddr;
use plumbing::resolve::{Peer, Target};
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of the subscriber process.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "subscriber",
    version,
    about = "Writes one line per event to a log file"
)]
pub struct Config {
    /// Publisher event endpoints to connect to (comma-separated for several publishers). A
    /// host name is followed: every address it resolves to is a publisher (see DNS_REFRESH).
    #[arg(long, env = "EVENTS_CONNECT", default_value = "tcp://127.0.0.1:4444", value_delimiter = ',', value_parser = plumbing::parse_endpoint)]
    pub events_connect: Vec<String>,

    /// Publisher replay endpoints (their ROUTER sockets), comma-separated, in the same order as
    /// EVENTS_CONNECT: what arrived from the i-th event endpoint is replayed from the i-th
    /// replay endpoint. With a host name, the i-th replay endpoint names the same host as the
    /// i-th event endpoint. Empty (`REPLAY_CONNECT=` or `--replay-connect ''`) disables replay.
    #[arg(long, env = "REPLAY_CONNECT", default_value = "tcp://127.0.0.1:4447", value_delimiter = ',', value_parser = parse_optional_endpoint)]
    pub replay_connect: Vec<String>,

    /// Where to start a publisher this log has never followed: `earliest` replays everything
    /// its window still holds of its current epoch, `latest` starts at its next event.
    #[arg(long, env = "FROM", value_enum, default_value_t = Start::Earliest)]
    pub from: Start,

    /// How long a replay request may go unanswered before it is sent again (with backoff).
    #[arg(long, env = "REPLAY_TIMEOUT", default_value = "2s", value_parser = plumbing::positive_duration)]
    pub replay_timeout: Duration,

    /// How long replay may make no progress before the missing range is written as a gap
    /// (`reason="replay unanswered"`) and the live stream is followed without it.
    #[arg(long, env = "REPLAY_GIVE_UP", default_value = "10s", value_parser = plumbing::positive_duration)]
    pub replay_give_up: Duration,

    /// Topic prefixes to log, comma-separated (e.g. `signature.,downcase`); unset or empty:
    /// every topic. A prefix is not a word match: `signature` also takes `signatures.x`.
    #[arg(long, env = "TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,

    /// Events asked for per replay request; the next chunk is asked when one ends.
    #[arg(long, env = "REPLAY_CHUNK", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub replay_chunk: u32,

    /// The log file events are appended to. Its position file is `<LOG_FILE>.pos`.
    #[arg(long, env = "LOG_FILE", default_value = "./subscriber.log")]
    pub log_file: PathBuf,

    /// Line format of the log file.
    #[arg(long = "format", env = "LOG_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// When the log is forced to disk: `always` (after every batch of lines written),
    /// `interval:<ms>` (at most this long after a line is written), or `never` (when the OS
    /// chooses). Positions are saved only of lines synced (`always`, `interval`) or written
    /// (`never`).
    #[arg(long, env = "LOG_SYNC", default_value = "interval:200")]
    pub log_sync: plumbing::SyncPolicy,

    /// Size past which the log is rotated by the subscriber itself: synced, renamed
    /// `<LOG_FILE>.1` (older ones shifted up to `.<LOG_KEEP>`, the oldest deleted) and a new
    /// one begun. A line never straddles two files. Unset: never (leave it to logrotate).
    #[arg(long, env = "LOG_MAX_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub log_max_bytes: Option<u64>,

    /// Rotated logs kept beside LOG_FILE with LOG_MAX_BYTES (`.1` the newest).
    #[arg(long, env = "LOG_KEEP", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=MAX_KEEP))]
    pub log_keep: u32,

    /// Address of the health port (`/healthz`, `/readyz`, `/metrics`); empty or `off`: none.
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:9101", value_parser = HealthAddr::parse)]
    pub health_addr: HealthAddr,

    /// How host names are followed (`DNS_REFRESH`).
    #[command(flatten)]
    pub follow: plumbing::resolve::FollowArgs,

    /// Flags every binary takes.
    #[command(flatten)]
    pub common: plumbing::CommonArgs,

    /// Run a one-off command instead of the service.
    #[command(subcommand)]
    pub command: Option<plumbing::health::Command>,
}

/// Most rotated logs `LOG_KEEP` may ask for.
const MAX_KEEP: i64 = 1000;

/// How each event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `<timestamp> <topic> <publisher>#<seq> key="value" …`, escaped so a line is one event.
    Text,
    /// One JSON object per line (JSON Lines).
    Json,
}

/// Where a publisher never followed before is started (like JetStream's DeliverPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Start {
    /// Everything the publisher's replay window holds of its current epoch.
    Earliest,
    /// Its next event: what was published before we joined is not ours.
    Latest,
}

/// One publisher: where its events come from, and where they are replayed from (if anywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherEndpoints {
    /// Its PUB socket.
    pub events: String,
    /// Its replay ROUTER socket; `None` when replay is disabled.
    pub replay: Option<String>,
}

/// The configuration does not make sense as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The two endpoint lists cannot be paired up.
    #[error(
        "EVENTS_CONNECT lists {events} endpoint(s) but REPLAY_CONNECT lists {replay}; give one \
         replay endpoint per event endpoint, in the same order (or none to disable replay)"
    )]
    UnpairedEndpoints {
        /// Entries in EVENTS_CONNECT.
        events: usize,
        /// Entries in REPLAY_CONNECT.
        replay: usize,
    },
    /// An event endpoint and its replay endpoint cannot be followed as one publisher.
    #[error("EVENTS_CONNECT and REPLAY_CONNECT: {0}")]
    Target(#[from] plumbing::resolve::TargetError),
}

impl Config {
    /// The topic prefixes to log; empty: every topic. Blank entries are dropped.
    pub fn topic_prefixes(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Pairs event and replay endpoints by position.
    pub fn publishers(&self) -> Result<Vec<PublisherEndpoints>, ConfigError> {
        let replay: Vec<&String> = self
            .replay_connect
            .iter()
            .filter(|r| !r.is_empty())
            .collect();
        if !replay.is_empty() && replay.len() != self.events_connect.len() {
            return Err(ConfigError::UnpairedEndpoints {
                events: self.events_connect.len(),
                replay: replay.len(),
            });
        }
        Ok(self
            .events_connect
            .iter()
            .enumerate()
            .map(|(i, events)| PublisherEndpoints {
                events: events.clone(),
                replay: replay.get(i).map(|r| (*r).clone()),
            })
            .collect())
    }
}

impl PublisherEndpoints {
    /// What to follow for this pair: its host name's every address, or the pair itself.
    pub fn target(&self) -> Result<Target, ConfigError> {
        let mut endpoints = vec![self.events.as_str()];
        endpoints.extend(self.replay.as_deref());
        Ok(Target::new(&endpoints)?)
    }

    /// The pair of one peer of a [`target`](Self::target): its event endpoint, then its
    /// replay endpoint when replay is on.
    pub fn of_peer(peer: &Peer) -> Option<PublisherEndpoints> {
        Some(PublisherEndpoints {
            events: peer.first()?.clone(),
            replay: peer.get(1).cloned(),
        })
    }
}

/// An endpoint, or nothing (an empty list disables replay).
fn parse_optional_endpoint(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    plumbing::parse_endpoint(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("subscriber").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_pair_one_local_publisher_with_its_replay_endpoint() {
        let config = parse(&[]).expect("defaults parse");
        assert_eq!(
            config.publishers().expect("one pair"),
            vec![PublisherEndpoints {
                events: "tcp://127.0.0.1:4444".into(),
                replay: Some("tcp://127.0.0.1:4447".into()),
            }]
        );
        assert_eq!(config.from, Start::Earliest);
        assert_eq!(config.replay_timeout, Duration::from_secs(2));
        assert_eq!(config.replay_give_up, Duration::from_secs(10));
        assert_eq!(config.health_addr, HealthAddr::At("0.0.0.0:9101".into()));
        assert!(config.command.is_none());
    }

    #[test]
    fn the_health_port_can_be_turned_off_and_healthcheck_is_a_command() {
        let off = parse(&["--health-addr", "off"]).expect("parses");
        assert_eq!(off.health_addr, HealthAddr::Off);
        let check = parse(&["healthcheck", "--timeout", "1s"]).expect("parses");
        assert!(matches!(
            check.command,
            Some(plumbing::health::Command::Healthcheck(_))
        ));
        assert!(parse(&["--health-addr", "nowhere"]).is_err());
    }

    #[test]
    fn an_empty_replay_list_disables_replay() {
        let config = parse(&[
            "--events-connect",
            "tcp://a:1,tcp://b:1",
            "--replay-connect",
            "",
        ])
        .expect("parses");
        let pairs = config.publishers().expect("pairs");
        assert!(pairs.iter().all(|p| p.replay.is_none()), "{pairs:?}");
    }

    #[test]
    fn unequal_endpoint_lists_are_refused() {
        let config = parse(&["--events-connect", "tcp://a:1,tcp://b:1"]).expect("parses");
        assert!(matches!(
            config.publishers(),
            Err(ConfigError::UnpairedEndpoints {
                events: 2,
                replay: 1
            })
        ));
        let config = parse(&[
            "--events-connect",
            "tcp://a:1,tcp://b:1",
            "--replay-connect",
            "tcp://a:2,tcp://b:2",
        ])
        .expect("parses");
        assert_eq!(
            config.publishers().expect("pairs")[1].replay.as_deref(),
            Some("tcp://b:2")
        );
    }

    #[test]
    fn a_named_pair_is_followed_and_one_naming_two_hosts_is_refused() {
        let config = parse(&[
            "--events-connect",
            "tcp://pubs:4444",
            "--replay-connect",
            "tcp://pubs:4447",
        ])
        .expect("parses");
        let pair = config.publishers().expect("pairs").remove(0);
        assert_eq!(
            pair.target().expect("one host"),
            Target::Name {
                name: "pubs".into(),
                ports: vec![4444, 4447]
            }
        );
        let peer = vec![
            "tcp://10.0.0.2:4444".to_owned(),
            "tcp://10.0.0.2:4447".to_owned(),
        ];
        let endpoints = PublisherEndpoints::of_peer(&peer).expect("a pair");
        assert_eq!(endpoints.replay.as_deref(), Some("tcp://10.0.0.2:4447"));

        let config = parse(&[
            "--events-connect",
            "tcp://pubs:4444",
            "--replay-connect",
            "tcp://others:4447",
        ])
        .expect("parses");
        let refusal = config.publishers().expect("pairs")[0]
            .target()
            .expect_err("two hosts")
            .to_string();
        assert!(refusal.contains("tcp://others:4447"), "{refusal}");
        assert_eq!(config.follow.dns_refresh, Duration::from_secs(5));
    }

    #[test]
    fn topics_are_comma_separated_prefixes_and_blank_means_every_topic() {
        let config = parse(&["--topics", "signature.,downcase"]).expect("parses");
        assert_eq!(config.topic_prefixes(), ["signature.", "downcase"]);
        assert!(parse(&[]).expect("parses").topic_prefixes().is_empty());
        let blank = parse(&["--topics", ""]).expect("parses");
        assert!(blank.topic_prefixes().is_empty());
    }

    #[test]
    fn the_log_syncs_every_200ms_by_default_and_rotates_only_when_asked() {
        let config = parse(&[]).expect("parses");
        assert_eq!(
            config.log_sync,
            plumbing::SyncPolicy::Interval(Duration::from_millis(200))
        );
        assert_eq!((config.log_max_bytes, config.log_keep), (None, 5));
        let config =
            parse(&["--log-sync", "always", "--log-max-bytes", "1048576"]).expect("parses");
        assert_eq!(config.log_sync, plumbing::SyncPolicy::Always);
        assert_eq!(config.log_max_bytes, Some(1_048_576));
    }

    #[test]
    fn a_sync_policy_size_or_keep_that_makes_no_sense_is_refused_by_name() {
        for (flag, value) in [
            ("--log-sync", "sometimes"),
            ("--log-sync", "interval:0"),
            ("--log-max-bytes", "0"),
            ("--log-max-bytes", "10MB"),
            ("--log-max-bytes", "-1"),
            ("--log-keep", "0"),
            ("--log-keep", "1001"),
        ] {
            let error = parse(&[&format!("{flag}={value}")])
                .expect_err(value)
                .to_string();
            assert!(error.contains(flag), "{flag} {value}: {error}");
        }
    }

    #[test]
    fn zero_timeouts_and_an_empty_chunk_are_refused() {
        assert!(parse(&["--replay-timeout", "0s"]).is_err());
        assert!(parse(&["--replay-give-up", "0s"]).is_err());
        assert!(parse(&["--replay-chunk", "0"]).is_err());
        assert_eq!(
            parse(&["--from", "latest"]).expect("parses").from,
            Start::Latest
        );
    }
}
