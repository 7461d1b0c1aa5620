//! Configuration: a TOML file, then `OSPREY_*` environment variables, then command-line
//! flags, each overriding the one before. Unknown keys in the file are rejected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use storage::Durability;

/// The whole configuration of `osprey serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Data directory (RocksDB).
    pub data: PathBuf,
    /// `fsync` (survive power loss) or `os` (survive a process crash) for acknowledged events.
    pub durability: Durability,
    /// Days events, indexes and aggregates are kept.
    pub retention_days: u64,
    /// Admin API token; generated and printed once when unset.
    pub admin_token: Option<String>,
    /// DSN public key of the default project (32 hex), for set-ups that must know the DSN.
    pub default_key: Option<String>,
    /// Base URL printed in DSNs and links (default: `http://` + listen address).
    pub public_url: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Seconds a client may take to send a request's head (line and headers) before the
    /// connection is closed (0 = no limit). Bodies: `ingest.body_read_timeout_secs`, which
    /// also bounds the API's request bodies.
    pub header_read_timeout_secs: u64,
    /// Budgets of the embedded log.
    pub log: LogConfig,
    /// Which parts of the engine this process runs.
    pub roles: Vec<Role>,
    /// Ingest endpoint: size limits, rate limits, proxies.
    pub ingest: ingest::IngestConfig,
    /// Kafka mode (design.md §7): on when `kafka.brokers` is set; the log is then Kafka
    /// instead of the embedded one.
    pub kafka: storage::KafkaConfig,
    /// Base URLs of the processor nodes a `query` node fans out to.
    pub peers: Vec<String>,
    /// Alert delivery.
    pub alerts: AlertsConfig,
    /// Threads for the processor's per-event work (parse, normalize, scrub, group, encode);
    /// 0 = one fewer than the cores (at least 1, at most 4). Issue assignment and writes
    /// stay on one thread.
    pub processor_threads: usize,
    /// Worker threads of the HTTP runtime (ingest, API, MCP); 0 = one per core. Fewer
    /// workers leave more CPU to the processor when both share a small machine (accepted/s
    /// falls, ingest→queryable lag falls with it: BENCHMARKS.md, "End-to-end pass").
    pub http_threads: usize,
}

/// Alert delivery (`[alerts]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// PEM file of CA certificates trusted for `https://` webhooks besides the public roots
    /// (a self-hosted receiver with a private CA).
    pub webhook_ca_file: Option<PathBuf>,
}

impl AlertsConfig {
    /// The webhook delivery settings, with the CA file read and checked.
    pub fn webhook_config(&self) -> anyhow::Result<processor::webhook::WebhookConfig> {
        let mut config = processor::webhook::WebhookConfig::default();
        if let Some(path) = &self.webhook_ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("alerts.webhook_ca_file {}", path.display()))?;
            config.extra_roots_pem = Some(pem);
            processor::webhook::tls_client_config(&config)
                .with_context(|| format!("alerts.webhook_ca_file {}", path.display()))?;
        }
        Ok(config)
    }
}

/// Budgets of the embedded log (design.md §3: overload is shed at the edge).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// MiB of appends queued in memory for the committer before ingest answers 503.
    pub max_inflight_mib: u64,
    /// MiB accepted but not yet processed before ingest answers 503.
    pub max_backlog_mib: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_inflight_mib: 64,
            max_backlog_mib: 1024,
        }
    }
}

/// A part of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accept envelopes into the log.
    Ingest,
    /// Turn log records into issues, events and histograms.
    Processor,
    /// Answer the HTTP API and MCP.
    Query,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9000".parse().expect("valid default address"),
            data: PathBuf::from("./osprey-data"),
            durability: Durability::Fsync,
            retention_days: 90,
            admin_token: None,
            default_key: None,
            public_url: None,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 30,
            log: LogConfig::default(),
            roles: vec![Role::Ingest, Role::Processor, Role::Query],
            ingest: ingest::IngestConfig::default(),
            kafka: storage::KafkaConfig::default(),
            peers: Vec::new(),
            alerts: AlertsConfig::default(),
            processor_threads: 0,
            http_threads: 0,
        }
    }
}

/// Values given on the command line; `None` = not given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--role`.
    pub roles: Option<Vec<Role>>,
    /// `--kafka BROKERS`.
    pub kafka: Option<String>,
    /// `--peers URL,URL`.
    pub peers: Option<Vec<String>>,
}

/// Environment variables osprey reads, and the config key each sets.
const ENV_KEYS: &[(&str, &str)] = &[
    ("OSPREY_LISTEN", "listen"),
    ("OSPREY_DATA", "data"),
    ("OSPREY_DURABILITY", "durability"),
    ("OSPREY_RETENTION_DAYS", "retention_days"),
    ("OSPREY_ADMIN_TOKEN", "admin_token"),
    ("OSPREY_DEFAULT_KEY", "default_key"),
    ("OSPREY_PUBLIC_URL", "public_url"),
    ("OSPREY_SHUTDOWN_GRACE_SECS", "shutdown_grace_secs"),
    ("OSPREY_KAFKA", "kafka.brokers"),
    ("OSPREY_PROCESSOR_THREADS", "processor_threads"),
    ("OSPREY_HTTP_THREADS", "http_threads"),
];

impl Config {
    /// The processor's settings: defaults, with `processor_threads` applied when set.
    pub fn processor_config(&self) -> processor::ProcessorConfig {
        let mut config = processor::ProcessorConfig::default();
        if self.processor_threads > 0 {
            config.prepare_threads = self.processor_threads;
        }
        config
    }

    /// Worker threads of the HTTP runtime: `http_threads`, or one per core (tokio's default).
    pub fn http_worker_threads(&self) -> usize {
        if self.http_threads > 0 {
            return self.http_threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Loads the file (if any), applies the environment, then the flags, and validates.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> anyhow::Result<Config> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (var, key) in ENV_KEYS {
            if let Some(value) = env(var) {
                // Numbers stay numbers; everything else is a string.
                let parsed = match value.parse::<i64>() {
                    Ok(n) => toml::Value::Integer(n),
                    Err(_) => toml::Value::String(value),
                };
                // `section.key` sets a key of a section, creating the section if needed.
                let (section, leaf) = match key.split_once('.') {
                    Some((section, leaf)) => (Some(section), leaf),
                    None => (None, *key),
                };
                let target = match section {
                    None => &mut table,
                    Some(section) => match table
                        .entry(section.to_owned())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    {
                        toml::Value::Table(t) => t,
                        _ => bail!("config key `{section}` must be a section"),
                    },
                };
                target.insert(leaf.to_owned(), parsed);
            }
        }
        let mut config: Config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            anyhow::anyhow!(
                "invalid configuration{}: {}",
                file.map(|f| format!(" in {}", f.display()))
                    .unwrap_or_default(),
                e.message()
            )
        })?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(data) = &overrides.data {
            config.data = data.clone();
        }
        if let Some(roles) = &overrides.roles {
            config.roles = roles.clone();
        }
        if let Some(brokers) = &overrides.kafka {
            config.kafka.brokers = brokers.clone();
        }
        if let Some(peers) = &overrides.peers {
            config.peers = peers.clone();
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(key) = &self.default_key {
            if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("default_key (OSPREY_DEFAULT_KEY) must be 32 hex characters");
            }
        }
        if self.retention_days == 0 {
            bail!("retention_days must be at least 1");
        }
        if self.roles.is_empty() {
            bail!("roles must name at least one of ingest, processor, query");
        }
        if self.kafka.enabled() {
            self.kafka.validate()?;
        }
        self.alerts.webhook_config()?;
        for peer in &self.peers {
            if !(peer.starts_with("http://") || peer.starts_with("https://")) {
                bail!("peer {peer:?} must be an http:// or https:// URL");
            }
        }
        Ok(())
    }

    /// The base URL clients reach this server at, given the address actually bound (the
    /// configured one may say port 0).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }

    /// Whether this process runs `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_webhook_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let file = dir.path().join("osprey.toml");
        std::fs::write(&file, format!("[alerts]\nwebhook_ca_file = {:?}\n", ca)).unwrap();
        let err = Config::load(Some(&file), no_env, &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("webhook_ca_file"), "{err:#}");
        std::fs::remove_file(&ca).unwrap();
        let err = Config::load(Some(&file), no_env, &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("ca.pem"), "{err:#}");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("osprey.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1111\"\nretention_days = 7\ndata = \"/from/file\"\n[log]\nmax_backlog_mib = 5\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "OSPREY_LISTEN" => Some("127.0.0.1:2222".to_owned()),
            "OSPREY_RETENTION_DAYS" => Some("3".to_owned()),
            _ => None,
        };
        let overrides = Overrides {
            listen: Some("127.0.0.1:3333".parse().unwrap()),
            ..Default::default()
        };
        let config = Config::load(Some(&file), env, &overrides).unwrap();
        assert_eq!(config.listen.port(), 3333);
        assert_eq!(config.retention_days, 3);
        assert_eq!(config.data, PathBuf::from("/from/file"));
        assert_eq!(config.log.max_backlog_mib, 5);
        let config = Config::load(Some(&file), env, &Overrides::default()).unwrap();
        assert_eq!(config.listen.port(), 2222);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listne = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&file), no_env, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `listne`"), "{err}");
        let env = |k: &str| (k == "OSPREY_DEFAULT_KEY").then(|| "short".to_owned());
        let err = Config::load(None, env, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("32 hex"), "{err}");
    }

    #[test]
    fn kafka_mode_from_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("osprey.toml");
        std::fs::write(
            &file,
            "roles = [\"processor\"]\n[kafka]\npartitions = 12\n[kafka.topics]\nevents = \"ev\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file), no_env, &Overrides::default()).unwrap();
        assert!(!config.kafka.enabled());
        let env = |k: &str| (k == "OSPREY_KAFKA").then(|| "127.0.0.1:9092".to_owned());
        let config = Config::load(Some(&file), env, &Overrides::default()).unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.kafka.partitions, 12);
        assert_eq!(config.kafka.topics.events, "ev");
        assert_eq!(config.kafka.topics.transactions, "ingest-transactions");
        let overrides = Overrides {
            kafka: Some("10.0.0.1:9092,10.0.0.2:9092".into()),
            peers: Some(vec!["http://10.0.0.5:9000".into()]),
            ..Default::default()
        };
        let config = Config::load(Some(&file), env, &overrides).unwrap();
        assert_eq!(config.kafka.brokers, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(config.peers, vec!["http://10.0.0.5:9000".to_owned()]);
        let bad = Overrides {
            peers: Some(vec!["10.0.0.5:9000".into()]),
            ..overrides
        };
        let err = Config::load(Some(&file), env, &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn processor_threads_come_from_the_environment_and_default_to_one_fewer_than_the_cores() {
        let config = Config::load(None, no_env, &Overrides::default()).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            config.processor_config().prepare_threads,
            cores.saturating_sub(1).clamp(1, 4)
        );
        let env = |k: &str| (k == "OSPREY_PROCESSOR_THREADS").then(|| "3".to_owned());
        let config = Config::load(None, env, &Overrides::default()).unwrap();
        assert_eq!(config.processor_threads, 3);
        assert_eq!(config.processor_config().prepare_threads, 3);
    }

    #[test]
    fn http_threads_come_from_the_environment_and_default_to_one_per_core() {
        let config = Config::load(None, no_env, &Overrides::default()).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config.http_threads, 0);
        assert_eq!(config.http_worker_threads(), cores);
        let env = |k: &str| (k == "OSPREY_HTTP_THREADS").then(|| "3".to_owned());
        let config = Config::load(None, env, &Overrides::default()).unwrap();
        assert_eq!(config.http_worker_threads(), 3);
    }

    #[test]
    fn defaults_match_the_design() {
        let config = Config::load(None, no_env, &Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.data, PathBuf::from("./osprey-data"));
        assert_eq!(config.durability, Durability::Fsync);
        assert_eq!(config.public_url(config.listen), "http://127.0.0.1:9000");
    }
}
