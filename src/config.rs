//! Settings: `consentry.toml` in the data directory, overridden by `CONSENTRY_*`
//! environment variables and command-line flags. The master key is the one secret
//! and never lives in this file.

use anyhow::Context;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The config file written by `init`.
pub const DEFAULT_CONFIG: &str = r#"# consentry settings. Environment variables CONSENTRY_* and command-line flags
# override these. The master key is not kept here: it is master.key (mode 0600)
# beside this file, or CONSENTRY_MASTER_KEY.

# Address the HTTP API listens on.
listen = "127.0.0.1:8080"

# Largest CSV body POST /api/v1/imports accepts, in MiB (bigger files: use the CLI).
import_body_limit_mib = 64

# Reverse proxies (addresses or CIDR blocks) whose forwarding header is
# believed; the client is the right-most address in it that is not one of
# them. Empty: none, and the client is the TCP peer.
trusted_proxies = []

# The header those proxies name the client in: "x-forwarded-for" or
# "forwarded" (RFC 7239). The other one is ignored.
forwarded_header = "x-forwarded-for"

# Longest time consecutive batches of one import share a transaction, in ms
# (CONSENTRY_IMPORT_COMMIT_WINDOW_MS overrides it). Longer: faster large imports;
# shorter: less work redone after a crash. Other writes never wait for it.
import_commit_window_ms = 3000

# PostgreSQL only: the most connections this server opens to the database
# (CONSENTRY_DATABASE_POOL_SIZE overrides it). Every server on one database
# opens up to this many: keep their sum under PostgreSQL's max_connections.
database_pool_size = 16

# The address users reach this server at (scheme, host and port), when it is
# not http://localhost:PORT: passkeys are bound to it. https, or plain http
# for localhost only (CONSENTRY_PUBLIC_URL overrides it).
# public_url = "https://consentry.example.com"

# Longest lifetime of an API key, in days (keys made without an expiry get 90
# days, or this when it is shorter).
api_key_max_days = 365
"#;

/// Default of `import_commit_window_ms`.
pub const DEFAULT_IMPORT_COMMIT_WINDOW_MS: u64 = 3000;

/// Default of `database_pool_size`.
pub const DEFAULT_DATABASE_POOL_SIZE: usize = 16;

/// Largest `database_pool_size` accepted.
const MAX_DATABASE_POOL_SIZE: usize = 1024;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    import_body_limit_mib: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    forwarded_header: Option<String>,
    import_commit_window_ms: Option<u64>,
    database_pool_size: Option<usize>,
    api_key_max_days: Option<u32>,
    public_url: Option<String>,
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub import_body_limit: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarded_header: crate::startup::ForwardedHeader,
    pub import_commit_window: std::time::Duration,
    /// Most connections to PostgreSQL (unused on SQLite).
    pub database_pool_size: usize,
    /// Longest lifetime of an API key, in microseconds.
    pub api_key_max_lifetime: i64,
    /// The origin users reach the server at (passkeys are bound to it); when
    /// absent, `http://localhost:PORT` of the listen address.
    pub public_url: Option<webauthn_rs::prelude::Url>,
}

impl Settings {
    /// Reads `consentry.toml` from the data directory (if present) and applies
    /// the `--listen` / `CONSENTRY_LISTEN` override.
    pub fn load(data_dir: &Path, listen_override: Option<&str>) -> anyhow::Result<Self> {
        let path = data_dir.join("consentry.toml");
        let file: FileSettings = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("failed to parse {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileSettings::default(),
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
        };
        let listen_raw = listen_override
            .map(str::to_string)
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_raw
            .parse()
            .with_context(|| format!("listen address {listen_raw:?} is not ADDRESS:PORT (for example 127.0.0.1:8080)"))?;
        let trusted_proxies = file
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|p| {
                crate::access::allowlist::parse_proxy(p).map_err(|why| anyhow::anyhow!("trusted proxy {p:?} in {}: {why}", path.display()))
            })
            .collect::<anyhow::Result<_>>()?;
        let forwarded_header = match file.forwarded_header.as_deref().map(|h| h.trim().to_ascii_lowercase()).as_deref() {
            None | Some("x-forwarded-for") => crate::startup::ForwardedHeader::XForwardedFor,
            Some("forwarded") => crate::startup::ForwardedHeader::Forwarded,
            Some(other) => anyhow::bail!("forwarded_header is {other:?}; give \"x-forwarded-for\" or \"forwarded\""),
        };
        let window_ms = match std::env::var("CONSENTRY_IMPORT_COMMIT_WINDOW_MS") {
            Ok(raw) => raw
                .trim()
                .parse::<u64>()
                .with_context(|| format!("CONSENTRY_IMPORT_COMMIT_WINDOW_MS {raw:?} is not a whole number of milliseconds"))?,
            Err(_) => file.import_commit_window_ms.unwrap_or(DEFAULT_IMPORT_COMMIT_WINDOW_MS),
        };
        if window_ms > 60_000 {
            anyhow::bail!("import_commit_window_ms is {window_ms}; give at most 60000 (one minute)");
        }
        let pool_size = match std::env::var("CONSENTRY_DATABASE_POOL_SIZE") {
            Ok(raw) => raw
                .trim()
                .parse::<usize>()
                .with_context(|| format!("CONSENTRY_DATABASE_POOL_SIZE {raw:?} is not a whole number of connections"))?,
            Err(_) => file.database_pool_size.unwrap_or(DEFAULT_DATABASE_POOL_SIZE),
        };
        if !(1..=MAX_DATABASE_POOL_SIZE).contains(&pool_size) {
            anyhow::bail!("database_pool_size is {pool_size}; give 1 to {MAX_DATABASE_POOL_SIZE} connections");
        }
        let key_days = file.api_key_max_days.unwrap_or(365);
        if !(1..=3650).contains(&key_days) {
            anyhow::bail!("api_key_max_days is {key_days}; give 1 to 3650");
        }
        let public_url = match std::env::var("CONSENTRY_PUBLIC_URL").ok().or(file.public_url) {
            None => None,
            Some(raw) => {
                let url = webauthn_rs::prelude::Url::parse(raw.trim())
                    .with_context(|| format!("public_url {raw:?} is not a URL (for example https://consentry.example.com)"))?;
                crate::vault::passkeys::RelyingParty::new(&url)?;
                Some(url)
            }
        };
        Ok(Settings {
            data_dir: data_dir.to_path_buf(),
            public_url,
            listen,
            import_body_limit: file.import_body_limit_mib.unwrap_or(64).saturating_mul(1 << 20),
            trusted_proxies,
            forwarded_header,
            import_commit_window: std::time::Duration::from_millis(window_ms),
            database_pool_size: pool_size,
            api_key_max_lifetime: i64::from(key_days) * 86_400_000_000,
        })
    }
}
