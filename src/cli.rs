//! The `consentry` command line: argument parsing (clap) and the thin adapters that
//! call the same service functions as the HTTP API, as the local operator of a
//! workspace. Exit codes: 0 success, 1 completed with rejected input, 2 failure.

use crate::access::Principal;
use crate::clock::{rfc3339, SystemClock};
use crate::config::{Settings, DEFAULT_CONFIG};
use crate::crypto::MasterKey;
use crate::domain::{Channel, Purpose, Region};
use crate::import::service::{ImportOptions, ImportProgress, OnExisting, SourceOpener};
use crate::store::sqlite::SqliteStore;
use crate::vault::exports::ExportFormat;
use crate::vault::Vault;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "consentry",
    version,
    about = "Encrypted contact vault with a consent ledger and a tamper-evident audit log"
)]
pub struct Cli {
    /// Data directory (database, master key, config).
    #[arg(long, global = true, env = "CONSENTRY_DATA_DIR", default_value = "./consentry-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite store: postgres://USER@HOST:PORT/DB.
    /// The master key, config and owner key file stay in the data directory (or
    /// CONSENTRY_MASTER_KEY); every server on one database needs the same master key.
    #[arg(long, global = true, env = "CONSENTRY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
    /// Workspace id (default: the first workspace).
    #[arg(long, global = true, env = "CONSENTRY_WORKSPACE")]
    pub workspace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Set up the data directory and serve the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CONSENTRY_LISTEN")]
        listen: Option<String>,
    },
    /// Set up the data directory, the first workspace and an owner API key.
    Init {
        /// Write the owner key to this file (mode 0600) instead of printing it.
        #[arg(long)]
        owner_key_file: Option<PathBuf>,
    },
    /// Apply the database migrations (they also run at every start) and print the
    /// schema version.
    Migrate,
    /// Move a whole instance from SQLite into an empty PostgreSQL database without
    /// decrypting anything, then check counts per table and the audit chain there.
    MigrateStore {
        /// sqlite://PATH of the source database (PATH: the data directory's consentry.db).
        #[arg(long)]
        from: String,
        /// postgres://USER@HOST:PORT/DB of an empty target database.
        #[arg(long)]
        to: String,
    },
    /// Import contacts from a CSV file.
    Import(ImportArgs),
    /// Export a list's contacts (needs a purpose, which the audit log records).
    Export {
        #[arg(long)]
        list: String,
        #[arg(long)]
        purpose: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_parser = ["csv", "jsonl"], default_value = "csv")]
        format: String,
    },
    /// Read contacts.
    #[command(subcommand)]
    Contacts(ContactsCmd),
    /// Manage lists.
    #[command(subcommand)]
    Lists(ListsCmd),
    /// Read and record consent.
    #[command(subcommand)]
    Consent(ConsentCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Manage users: invite colleagues, disable, enable and remove them.
    #[command(subcommand)]
    Users(UsersCmd),
    /// The workspace's security settings.
    #[command(subcommand)]
    Security(SecurityCmd),
    /// Custom roles: named sets of permissions beside the built-in roles.
    #[command(subcommand)]
    Roles(RolesCmd),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// CSV file with a header row.
    pub file: PathBuf,
    /// List to add the contacts to (created if missing).
    #[arg(long)]
    pub list: String,
    /// Where and how the consent was obtained (rows may override with gdpr_source).
    #[arg(long)]
    pub source: Option<String>,
    /// Channels the consent covers.
    #[arg(long, default_value = "email")]
    pub channels: String,
    /// Default region for phone numbers without a country code (e.g. NL).
    #[arg(long)]
    pub region: Option<String>,
    /// What to do with contacts that already exist.
    #[arg(long, value_parser = ["skip", "update", "merge"], default_value = "merge")]
    pub on_existing: String,
    /// Check and count without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Create unknown columns as attributes (identifying unless --segmentable).
    #[arg(long)]
    pub create_attributes: bool,
    /// Columns to create as segmentable (clear) attributes.
    #[arg(long, value_delimiter = ',')]
    pub segmentable: Vec<String>,
    /// Consent purpose.
    #[arg(long, default_value = "marketing")]
    pub consent_purpose: String,
}

#[derive(Subcommand, Debug)]
pub enum ContactsCmd {
    /// Show one contact by id.
    Get {
        id: String,
        /// State a purpose to see unmasked values (audited).
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Find a contact by exact email or phone.
    Find {
        #[arg(long, conflicts_with = "phone")]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        purpose: Option<String>,
    },
    /// List contacts, optionally of one list.
    List {
        #[arg(long)]
        list: Option<String>,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        purpose: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ListsCmd {
    Create {
        name: String,
    },
    List,
    Rename {
        list: String,
        name: String,
    },
    Delete {
        list: String,
    },
    /// Add contacts (ids) to a list.
    Add {
        list: String,
        contacts: Vec<String>,
    },
    /// Remove contacts (ids) from a list.
    Remove {
        list: String,
        contacts: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConsentCmd {
    /// The ledger and current state of a contact.
    List {
        contact: String,
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Record a grant, withdrawal or objection.
    Record {
        contact: String,
        #[arg(long)]
        channel: String,
        #[arg(long, value_parser = ["granted", "withdrawn", "objected"], default_value = "granted")]
        action: String,
        #[arg(long)]
        source: String,
        #[arg(long, default_value = "marketing")]
        consent_purpose: String,
    },
    /// A self-contained JSON proof of a contact's consents.
    Proof {
        contact: String,
        #[arg(long)]
        purpose: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a key; prints it once.
    Create {
        #[arg(long)]
        name: String,
        /// Permissions and/or roles, comma-separated (e.g. viewer or contacts:read,lists:manage).
        #[arg(long)]
        scopes: String,
        /// Limit the key to these lists.
        #[arg(long, value_delimiter = ',')]
        lists: Vec<String>,
        /// Expiry, e.g. 90d, 12h.
        #[arg(long)]
        expires: Option<String>,
        /// Addresses and CIDR blocks the key may be used from (any when left out).
        #[arg(long, value_delimiter = ',')]
        allow_ips: Vec<String>,
    },
    List,
    Revoke {
        id: String,
    },
    /// Rotate every live key of the workspace (when someone leaves): prints one
    /// line per key, `OLD_ID NEW_ID NAME NEW_KEY`, tab-separated; the new keys
    /// are shown once. The old keys keep working for `--overlap`, or stop at once.
    RotateAll {
        #[arg(long)]
        overlap: Option<String>,
    },
    /// Show, set or clear the addresses a key may be used from.
    Allowlist {
        id: String,
        #[command(subcommand)]
        action: AllowlistCmd,
    },
    /// Rotate a key: prints the new key once; the old one keeps working for
    /// `--overlap` (e.g. 24h), or stops at once without it.
    Rotate {
        id: String,
        #[arg(long)]
        overlap: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    /// Invite a colleague by email address; prints the single-use invitation
    /// token (valid 72 hours) to pass on to them.
    Add {
        email: String,
        /// A role (owner, admin, marketer, sender, viewer, auditor) or permissions, comma-separated.
        #[arg(long)]
        role: String,
        /// Limit the user to these lists.
        #[arg(long, value_delimiter = ',')]
        lists: Vec<String>,
    },
    /// List the workspace's users.
    List,
    /// Disable a user: they sign in no more and the API keys they created are revoked.
    Disable { id: String },
    /// Enable a disabled user again.
    Enable { id: String },
    /// Remove a user: their address and invitations are deleted, their keys revoked.
    Remove { id: String },
    /// Reset a user's second factors (a lost phone): their authenticator app,
    /// passkeys and recovery codes are removed and their sessions end.
    #[command(name = "reset-2fa")]
    Reset2fa { id: String },
    /// Give a user another role (built-in or custom) and lists; their sessions end.
    SetRole {
        id: String,
        role: String,
        /// Limit the user to these lists (all lists when left out).
        #[arg(long, value_delimiter = ',')]
        lists: Vec<String>,
    },
    /// Show, set or clear the addresses a user may sign in and work from.
    Allowlist {
        id: String,
        #[command(subcommand)]
        action: AllowlistCmd,
    },
    /// Accept an invitation: reads the token, then the new password, one per line
    /// on standard input (never on the command line, where process lists show it).
    Accept,
}

#[derive(Subcommand, Debug)]
pub enum RolesCmd {
    /// List the custom roles: name, then permissions.
    List,
    /// Define a role from permissions (and roles whose permissions it takes).
    Create {
        name: String,
        #[arg(long)]
        permissions: String,
    },
    /// Replace a role's permissions; the sessions of its users end.
    Update {
        name: String,
        #[arg(long)]
        permissions: String,
    },
    /// Delete a role no user holds.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SecurityCmd {
    /// Require a second factor of every user (`on`), or stop requiring it (`off`);
    /// without an argument, show whether it is required.
    #[command(name = "require-2fa")]
    Require2fa {
        #[arg(value_parser = ["on", "off"])]
        state: Option<String>,
    },
    /// Show, set or clear the workspace's address allowlist: every sign-in and
    /// request must come from an address on it. `clear` is the way back in for
    /// an administrator shut out by it.
    #[command(subcommand)]
    Allowlist(AllowlistCmd),
    /// Reset all passwords: every user must choose a new one at their next
    /// sign-in, and every session ends now.
    ResetPasswords,
    /// The security overview: second-factor coverage, keys near expiry or
    /// unused, allowlists, recent failed sign-ins.
    Report {
        /// Print the overview as JSON (as `GET /api/v1/security` answers it).
        #[arg(long)]
        json: bool,
    },
}

/// What to do with an address allowlist.
#[derive(Subcommand, Debug)]
pub enum AllowlistCmd {
    /// Print the list, one CIDR block per line (nothing: any address).
    Show,
    /// Replace the list with these addresses and CIDR blocks (comma- or space-separated).
    Set {
        #[arg(required = true, value_delimiter = ',')]
        entries: Vec<String>,
    },
    /// Empty the list: any address is allowed again.
    Clear,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the hash chain and check the signed checkpoints.
    Verify,
    /// Show the latest events.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
    },
    /// Sign a checkpoint at the current head.
    Checkpoint,
}

/// Everything a command needs: the vault and the workspace it acts in.
pub struct CommandContext {
    pub vault: Arc<Vault>,
    pub workspace_id: String,
}

/// Opens (creating on first use) the data directory, and returns the vault, the
/// default workspace and, when it was just created, the owner key.
pub async fn bootstrap(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<(Arc<Vault>, String, Option<secrecy::SecretString>)> {
    create_private_dir(data_dir)?;
    let config = data_dir.join("consentry.toml");
    if !config.exists() {
        std::fs::write(&config, DEFAULT_CONFIG).with_context(|| format!("failed to write {}", config.display()))?;
    }
    let master = load_or_create_master_key(data_dir)?;
    let settings = crate::config::Settings::load(data_dir, None)?;
    // On PostgreSQL, servers starting together on an empty database set it up once.
    let (store, _setup_lock): (Arc<dyn crate::store::Store>, _) = match database_url {
        Some(url) => {
            let pg = crate::store::postgres::PostgresStore::connect_with(url, settings.database_pool_size).await?;
            for warning in pg.durability_warnings().await? {
                tracing::warn!("{warning}");
            }
            let lock = pg.bootstrap_lock().await?;
            (Arc::new(pg), Some(lock))
        }
        None => (
            Arc::new(SqliteStore::open_with(
                &data_dir.join("consentry.db"),
                settings.import_commit_window,
            )?),
            None,
        ),
    };
    let mut vault = Vault::new(store, master, Arc::new(SystemClock));
    vault.key_max_lifetime = settings.api_key_max_lifetime;
    let vault = Arc::new(vault);
    if let Some(ws) = vault.default_workspace().await? {
        vault.keys(&ws.id).await.context("failed to open the workspace keys")?;
        return Ok((vault, ws.id, None));
    }
    let ws = vault.create_workspace("default").await?;
    let (_, token) = vault
        .create_api_key(&Principal::operator(&ws.id), "owner", "owner", &[], None)
        .await?;
    vault.checkpoint(&ws.id).await?;
    Ok((vault, ws.id, Some(token)))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create data directory {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("failed to restrict data directory {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Writes a secret file that only the owner can read.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("failed to create {} (it must not exist yet)", path.display()))?;
    f.write_all(contents)
        .with_context(|| format!("failed to write {}", path.display()))?;
    f.sync_all().with_context(|| format!("failed to sync {}", path.display()))?;
    Ok(())
}

/// `consentry migrate-store`: copy, then prove the copy (counts, audit chains).
async fn migrate_store(cli: &Cli, from: &str, to: &str) -> anyhow::Result<i32> {
    let source = from
        .strip_prefix("sqlite://")
        .context("--from must be sqlite://PATH (the consentry.db of the instance to move)")?;
    if !to.starts_with("postgres://") && !to.starts_with("postgresql://") {
        anyhow::bail!("--to must be a postgres:// URL of an empty database");
    }
    // The instance's own key: the copy is checked by opening its workspaces.
    let master = match std::env::var("CONSENTRY_MASTER_KEY") {
        Ok(hexkey) => MasterKey::from_hex(&hexkey).context("CONSENTRY_MASTER_KEY is not a valid key")?,
        Err(_) => MasterKey::load(&cli.data_dir.join("master.key")).with_context(|| {
            format!(
                "the source instance's master key is needed: give its --data-dir (no master.key in {}) or CONSENTRY_MASTER_KEY",
                cli.data_dir.display()
            )
        })?,
    };
    let target = crate::store::postgres::PostgresStore::connect(to).await?;
    let report = crate::store::postgres::transfer::copy_from_sqlite(Path::new(source), &target).await?;
    for (table, rows) in &report.tables {
        println!("{table}: {rows} rows");
    }
    let vault = Vault::new(Arc::new(target), master, Arc::new(SystemClock));
    for ws in vault.store.list_workspaces().await? {
        vault
            .keys(&ws.id)
            .await
            .context("the master key does not open the copied workspace keys")?;
    }
    verify_all_audit(&vault).await
}

/// Verifies every workspace's audit chain, one line each; exit code 2 on a break.
async fn verify_all_audit(vault: &Vault) -> anyhow::Result<i32> {
    let mut failed = false;
    for ws in vault.store.list_workspaces().await? {
        let report = vault.verify_audit(&ws.id).await?;
        match report.problem {
            None => println!(
                "ok: workspace {}: {} events, {} checkpoints",
                ws.id, report.events, report.checkpoints
            ),
            Some(p) => {
                failed = true;
                println!("FAILED: workspace {}: first bad sequence {}: {}", ws.id, p.seq, p.reason);
            }
        }
    }
    Ok(if failed { 2 } else { 0 })
}

fn load_or_create_master_key(data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Ok(hexkey) = std::env::var("CONSENTRY_MASTER_KEY") {
        return MasterKey::from_hex(&hexkey).context("CONSENTRY_MASTER_KEY is not a valid key");
    }
    let path = data_dir.join("master.key");
    if path.exists() {
        return MasterKey::load(&path);
    }
    let key = MasterKey::generate()?;
    write_private_file(&path, key.to_hex().as_bytes())?;
    Ok(key)
}

async fn open(cli: &Cli) -> anyhow::Result<CommandContext> {
    let (vault, default_ws, created) = bootstrap(&cli.data_dir, cli.database_url.as_deref()).await?;
    if let Some(token) = created {
        print_new_owner_key(&cli.data_dir, token.expose_secret(), crate::config::DEFAULT_LISTEN)?;
    }
    let workspace_id = cli.workspace.clone().unwrap_or(default_ws);
    Ok(CommandContext { vault, workspace_id })
}

fn print_new_owner_key(data_dir: &Path, token: &str, listen: &str) -> anyhow::Result<()> {
    let mut err = std::io::stderr();
    writeln!(err, "created {} with a new workspace and an owner API key.", data_dir.display())?;
    writeln!(err, "the key is shown once; keep it somewhere safe:")?;
    println!("{token}");
    writeln!(err, "try it:")?;
    writeln!(err, "  curl -H \"Authorization: Bearer {token}\" http://{listen}/api/v1/lists")?;
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn parse_id(raw: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(raw.trim()).context("the contact id is not a UUID (find a contact by email or phone with `contacts find`)")
}

struct Bar(indicatif::ProgressBar);

impl ImportProgress for Bar {
    fn set_total(&self, rows: u64) {
        self.0.set_length(rows);
    }
    fn advance(&self, rows: u64) {
        self.0.inc(rows);
    }
}

/// Runs a command other than `serve`; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Serve { listen } => serve(&cli, listen.as_deref()).await,
        Command::Init { owner_key_file } => {
            let (vault, ws, created) = bootstrap(&cli.data_dir, cli.database_url.as_deref()).await?;
            match (created, owner_key_file) {
                (Some(token), Some(path)) => {
                    write_private_file(path, format!("{}\n", token.expose_secret()).as_bytes())?;
                    eprintln!("initialised {}; the owner key is in {}", cli.data_dir.display(), path.display());
                }
                (Some(token), None) => print_new_owner_key(&cli.data_dir, token.expose_secret(), crate::config::DEFAULT_LISTEN)?,
                (None, _) => eprintln!(
                    "{} is already initialised (workspace {ws}); no new key was made",
                    cli.data_dir.display()
                ),
            }
            drop(vault);
            Ok(0)
        }
        Command::Migrate => {
            match cli.database_url.as_deref() {
                Some(url) => {
                    let pg = crate::store::postgres::PostgresStore::connect(url).await?;
                    let version = pg.migrate().await?;
                    println!("postgres schema version {version}; connection {}", pg.transport().await?);
                }
                None => {
                    create_private_dir(&cli.data_dir)?;
                    let version = SqliteStore::open(&cli.data_dir.join("consentry.db"))?.schema_version()?;
                    println!("sqlite schema version {version}");
                }
            }
            Ok(0)
        }
        Command::MigrateStore { from, to } => migrate_store(&cli, from, to).await,
        Command::Import(args) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            let opts = ImportOptions {
                list: args.list.clone(),
                source: args.source.clone(),
                channels: Channel::parse_list(&args.channels).map_err(anyhow::Error::msg)?,
                region: args.region.as_deref().map(Region::parse).transpose().map_err(anyhow::Error::msg)?,
                on_existing: OnExisting::parse(&args.on_existing).map_err(anyhow::Error::msg)?,
                dry_run: args.dry_run,
                create_attributes: args.create_attributes,
                segmentable: args.segmentable.clone(),
                purpose: Purpose::parse(&args.consent_purpose).map_err(anyhow::Error::msg)?,
            };
            let path = args.file.clone();
            std::fs::metadata(&path).with_context(|| format!("failed to open {}", path.display()))?;
            let opener: SourceOpener = Arc::new(move || {
                let f = std::fs::File::open(&path)?;
                Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, f)) as Box<dyn std::io::Read + Send>)
            });
            let progress: Option<Arc<dyn ImportProgress>> = if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                Some(Arc::new(Bar(bar)))
            } else {
                None
            };
            let stop = Arc::new(AtomicBool::new(false));
            let stop_on_signal = stop.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupted: finishing the current batch; run the same command again to resume");
                    stop_on_signal.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
            let report = ctx.vault.import_csv(&p, opener, opts, progress, stop).await?;
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            let c = report.counts;
            eprintln!(
                "{}import {}: read {}, created {}, updated {}, unchanged {}, suppressed {}, rejected {}{}",
                if report.dry_run { "dry run of " } else { "" },
                if report.import_id.is_empty() { "-" } else { &report.import_id },
                c.read,
                c.created,
                c.updated,
                c.unchanged,
                c.suppressed,
                c.rejected,
                if report.resumed { " (resumed)" } else { "" }
            );
            for r in &report.rejections {
                eprintln!("  row {} column {}: {}", r.row, r.column, r.reason);
            }
            if c.rejected as usize > report.rejections.len() {
                eprintln!(
                    "  ... {} more rejected rows (GET /api/v1/imports/{}/rejections)",
                    c.rejected as usize - report.rejections.len(),
                    report.import_id
                );
            }
            if report.status == crate::store::ImportStatus::Running {
                eprintln!("the import was interrupted; run the same command again to resume it");
                return Ok(2);
            }
            Ok(if c.rejected > 0 { 1 } else { 0 })
        }
        Command::Export {
            list,
            purpose,
            out,
            format,
        } => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            let format = if format == "jsonl" {
                ExportFormat::Jsonl
            } else {
                ExportFormat::Csv
            };
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)
                .with_context(|| format!("failed to create {} (it must not exist yet)", out.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let record = match ctx.vault.export_list(&p, list, purpose, format, &mut w).await {
                Ok(r) => r,
                Err(e) => {
                    drop(w);
                    let _ = std::fs::remove_file(out);
                    return Err(e.into());
                }
            };
            w.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .context("failed to finish the export file")?;
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            eprintln!("exported {} contacts to {} (export {})", record.row_count, out.display(), record.id);
            Ok(0)
        }
        Command::Contacts(cmd) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            match cmd {
                ContactsCmd::Get { id, purpose } => {
                    let v = ctx.vault.get_contact(&p, parse_id(id)?, &p.read_mode(purpose.as_deref())?).await?;
                    print_json(&v)?;
                }
                ContactsCmd::Find {
                    email,
                    phone,
                    region,
                    purpose,
                } => {
                    let v = ctx
                        .vault
                        .lookup_contact(
                            &p,
                            email.as_deref(),
                            phone.as_deref(),
                            region.as_deref(),
                            &p.read_mode(purpose.as_deref())?,
                        )
                        .await?;
                    print_json(&v)?;
                }
                ContactsCmd::List {
                    list,
                    after,
                    limit,
                    purpose,
                } => {
                    let after = after.as_deref().map(parse_id).transpose()?;
                    let (items, next) = ctx
                        .vault
                        .list_contacts(&p, list.as_deref(), after, *limit, &p.read_mode(purpose.as_deref())?)
                        .await?;
                    print_json(&serde_json::json!({ "items": items, "next": next }))?;
                }
            }
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Lists(cmd) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            match cmd {
                ListsCmd::Create { name } => print_json(&ctx.vault.create_list(&p, name).await?)?,
                ListsCmd::List => print_json(&ctx.vault.list_lists(&p).await?)?,
                ListsCmd::Rename { list, name } => print_json(&ctx.vault.rename_list(&p, list, name).await?)?,
                ListsCmd::Delete { list } => {
                    ctx.vault.delete_list(&p, list).await?;
                    eprintln!("deleted list {list}");
                }
                ListsCmd::Add { list, contacts } => {
                    let ids = contacts.iter().map(|c| parse_id(c)).collect::<anyhow::Result<Vec<_>>>()?;
                    let n = ctx.vault.add_members(&p, list, ids).await?;
                    eprintln!("added {n} contacts to {list}");
                }
                ListsCmd::Remove { list, contacts } => {
                    let ids = contacts.iter().map(|c| parse_id(c)).collect::<anyhow::Result<Vec<_>>>()?;
                    let n = ctx.vault.remove_members(&p, list, ids).await?;
                    eprintln!("removed {n} contacts from {list}");
                }
            }
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Consent(cmd) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            match cmd {
                ConsentCmd::List { contact, purpose } => print_json(
                    &ctx.vault
                        .consent_ledger(&p, parse_id(contact)?, &p.read_mode(purpose.as_deref())?)
                        .await?,
                )?,
                ConsentCmd::Proof { contact, purpose } => {
                    ctx.vault.checkpoint(&ctx.workspace_id).await?;
                    print_json(
                        &ctx.vault
                            .consent_proof(&p, parse_id(contact)?, &p.read_mode(purpose.as_deref())?)
                            .await?,
                    )?
                }
                ConsentCmd::Record {
                    contact,
                    channel,
                    action,
                    source,
                    consent_purpose,
                } => {
                    let input = crate::vault::consents::ConsentInput {
                        channel: Channel::parse(channel).map_err(anyhow::Error::msg)?,
                        purpose: Some(consent_purpose.clone()),
                        action: crate::domain::ConsentAction::parse(action),
                        method: Some(crate::domain::ConsentMethod::Api),
                        source: source.clone(),
                        occurred_at: None,
                        ip: None,
                        user_agent: None,
                        notice_version: None,
                    };
                    print_json(&ctx.vault.record_consent(&p, parse_id(contact)?, input).await?)?
                }
            }
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Keys(cmd) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            match cmd {
                KeysCmd::Create {
                    name,
                    scopes,
                    lists,
                    expires,
                    allow_ips,
                } => {
                    let (view, token) = ctx
                        .vault
                        .create_api_key_from(&p, name, scopes, lists, expires.as_deref(), allow_ips)
                        .await?;
                    if std::io::stdout().is_terminal() {
                        println!("created key {} ({}), scopes {}", view.id, view.name, view.scopes.join(","));
                        println!("expires: {}", crate::vault::api_keys::describe_expiry(&view));
                        println!("the key is shown once:");
                    }
                    println!("{}", token.expose_secret());
                }
                KeysCmd::List => {
                    for k in ctx.vault.list_api_keys(&p).await? {
                        let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                        println!(
                            "{}\t{}\t{}\t{}\texpires {}\tlast used {}{}",
                            k.id,
                            k.name,
                            state,
                            k.scopes.join(","),
                            k.expires_at.as_deref().unwrap_or("never"),
                            k.last_used_at.as_deref().unwrap_or("never"),
                            k.last_used_from.as_deref().map(|a| format!(" from {a}")).unwrap_or_default()
                        );
                    }
                }
                KeysCmd::Revoke { id } => {
                    ctx.vault.revoke_api_key(&p, id).await?;
                    eprintln!("revoked key {id}");
                }
                KeysCmd::RotateAll { overlap } => {
                    let rotated = ctx.vault.rotate_all_api_keys(&p, overlap.as_deref()).await?;
                    if std::io::stdout().is_terminal() {
                        println!("rotated {} keys; the new keys are shown once:", rotated.len());
                    }
                    for (old, view, token) in rotated {
                        println!("{old}\t{}\t{}\t{}", view.id, view.name, token.expose_secret());
                    }
                }
                KeysCmd::Allowlist { id, action } => {
                    let list = match action {
                        AllowlistCmd::Show => {
                            ctx.vault
                                .list_api_keys(&p)
                                .await?
                                .into_iter()
                                .find(|k| k.id == *id)
                                .ok_or_else(|| anyhow::anyhow!("no such api key {id}; `consentry keys list` shows the keys"))?
                                .allowlist
                        }
                        AllowlistCmd::Set { entries } => ctx.vault.set_api_key_allowlist(&p, id, &split_entries(entries), false).await?,
                        AllowlistCmd::Clear => ctx.vault.set_api_key_allowlist(&p, id, &[], false).await?,
                    };
                    print_allowlist(&list);
                }
                KeysCmd::Rotate { id, overlap } => {
                    let (view, token) = ctx.vault.rotate_api_key(&p, id, overlap.as_deref()).await?;
                    if std::io::stdout().is_terminal() {
                        println!("key {id} rotated to {}; the old key works until the overlap ends", view.id);
                        println!("the new key is shown once:");
                    }
                    println!("{}", token.expose_secret());
                }
            }
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Users(cmd) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            let show = |u: &crate::vault::users::UserView| {
                let lists = if u.lists.is_empty() {
                    "all lists".to_string()
                } else {
                    u.lists.join(",")
                };
                println!("{}\t{}\t{}\t{}\t{}", u.id, u.email, u.status, u.role, lists);
            };
            match cmd {
                UsersCmd::Add { email, role, lists } => {
                    let invitation = ctx.vault.invite_user(&p, email, role, lists).await?;
                    if std::io::stdout().is_terminal() {
                        println!(
                            "invited {} as {} (user {})",
                            invitation.user.email, invitation.user.role, invitation.user.id
                        );
                        println!("the invitation expires {}; it is shown once:", invitation.expires_at);
                    }
                    println!("{}", invitation.token.expose_secret());
                }
                UsersCmd::List => ctx.vault.list_users(&p).await?.iter().for_each(show),
                UsersCmd::Disable { id } => show(&ctx.vault.set_user_enabled(&p, id, false).await?),
                UsersCmd::Enable { id } => show(&ctx.vault.set_user_enabled(&p, id, true).await?),
                UsersCmd::Remove { id } => {
                    ctx.vault.remove_user(&p, id).await?;
                    eprintln!("removed user {id}");
                }
                UsersCmd::Reset2fa { id } => match ctx.vault.reset_user_second_factor(&p, id).await? {
                    true => eprintln!("removed the second factor of user {id}; their sessions ended"),
                    false => eprintln!("user {id} had no second factor"),
                },
                UsersCmd::SetRole { id, role, lists } => show(&ctx.vault.set_user_role(&p, id, role, lists).await?),
                UsersCmd::Allowlist { id, action } => {
                    let list = match action {
                        AllowlistCmd::Show => ctx.vault.get_user(&p, id).await?.allowlist,
                        AllowlistCmd::Set { entries } => ctx.vault.set_user_allowlist(&p, id, &split_entries(entries), false).await?,
                        AllowlistCmd::Clear => ctx.vault.set_user_allowlist(&p, id, &[], false).await?,
                    };
                    print_allowlist(&list);
                }
                UsersCmd::Accept => {
                    let mut lines = std::io::stdin().lines();
                    let mut next = |what: &str| -> anyhow::Result<SecretString> {
                        match lines.next() {
                            Some(line) => {
                                let line = zeroize::Zeroizing::new(line?);
                                Ok(SecretString::from(line.trim_end_matches('\r').to_string()))
                            }
                            None => {
                                anyhow::bail!("standard input ended before the {what}: give the token, then the password, one per line")
                            }
                        }
                    };
                    let (token, password) = (next("invitation token")?, next("password")?);
                    let user = ctx.vault.accept_invitation(&token, &password).await?;
                    eprintln!("user {} can now sign in", user.id);
                }
            }
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Security(SecurityCmd::Require2fa { state }) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            let required = match state.as_deref() {
                Some(s) => ctx.vault.set_second_factor_required(&p, s == "on").await?,
                None => ctx.vault.second_factor_required(&p).await?,
            };
            println!("second factor {}", if required { "required" } else { "not required" });
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Roles(cmd) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            let show = |r: &crate::vault::roles::RoleView| println!("{}\t{}", r.name, r.permissions.join(","));
            match cmd {
                RolesCmd::List => ctx.vault.list_roles(&p).await?.iter().for_each(show),
                RolesCmd::Create { name, permissions } => show(&ctx.vault.create_role(&p, name, permissions).await?),
                RolesCmd::Update { name, permissions } => show(&ctx.vault.update_role(&p, name, permissions).await?),
                RolesCmd::Delete { name } => {
                    ctx.vault.delete_role(&p, name).await?;
                    eprintln!("deleted role {name}");
                }
            }
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Security(SecurityCmd::ResetPasswords) => {
            let ctx = open(&cli).await?;
            let n = ctx.vault.reset_all_passwords(&Principal::operator(&ctx.workspace_id)).await?;
            println!("{n} users must choose a new password at their next sign-in; every session ended");
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Security(SecurityCmd::Report { json }) => {
            let ctx = open(&cli).await?;
            let report = ctx.vault.security_report(&Principal::operator(&ctx.workspace_id)).await?;
            if *json {
                print_json(&report)?;
            } else {
                print_security_report(&report);
            }
            Ok(0)
        }
        Command::Security(SecurityCmd::Allowlist(action)) => {
            let ctx = open(&cli).await?;
            let p = Principal::operator(&ctx.workspace_id);
            let list = match action {
                AllowlistCmd::Show => ctx.vault.workspace_allowlist(&p).await?,
                AllowlistCmd::Set { entries } => ctx.vault.set_workspace_allowlist(&p, &split_entries(entries), false).await?,
                AllowlistCmd::Clear => ctx.vault.set_workspace_allowlist(&p, &[], false).await?,
            };
            print_allowlist(&list);
            ctx.vault.checkpoint(&ctx.workspace_id).await?;
            Ok(0)
        }
        Command::Audit(cmd) => {
            let ctx = open(&cli).await?;
            match cmd {
                AuditCmd::Verify => verify_all_audit(&ctx.vault).await,
                AuditCmd::Tail { lines } => {
                    let head = ctx.vault.store.audit_head(&ctx.workspace_id).await?.map(|e| e.seq).unwrap_or(0);
                    let p = Principal::operator(&ctx.workspace_id);
                    for e in ctx.vault.audit_events(&p, (head - i64::from(*lines)).max(0), *lines).await? {
                        println!(
                            "{}\t#{}\t{}\t{}\t{}\t{}\t{}{}",
                            rfc3339(e.at),
                            e.seq,
                            e.actor,
                            e.action,
                            e.target.as_deref().unwrap_or("-"),
                            e.outcome,
                            e.details,
                            e.purpose.map(|p| format!("\tpurpose: {p}")).unwrap_or_default()
                        );
                    }
                    Ok(0)
                }
                AuditCmd::Checkpoint => {
                    match ctx.vault.checkpoint(&ctx.workspace_id).await? {
                        Some(c) => println!("signed checkpoint at sequence {}", c.seq),
                        None => println!("the latest event is already checkpointed"),
                    }
                    Ok(0)
                }
            }
        }
    }
}

/// `consentry serve`: set up if needed, serve until SIGINT/SIGTERM, let running
/// imports finish their current batch, and sign a last checkpoint.
async fn serve(cli: &Cli, listen: Option<&str>) -> anyhow::Result<i32> {
    let (vault, _, created) = bootstrap(&cli.data_dir, cli.database_url.as_deref()).await?;
    let settings = Settings::load(&cli.data_dir, listen)?;
    let http = crate::startup::HttpSettings {
        listen: settings.listen,
        import_body_limit: settings.import_body_limit,
        trusted_proxies: settings.trusted_proxies.clone(),
        forwarded_header: settings.forwarded_header,
        public_url: settings.public_url.clone(),
    };
    let app = crate::startup::Application::build(vault.clone(), http).await?;
    let addr = app.local_addr();
    if let Some(token) = created {
        print_new_owner_key(&cli.data_dir, token.expose_secret(), &addr.to_string())?;
    }
    eprintln!(
        "consentry is serving on http://{addr} (data in {}); API reference at http://{addr}/api/docs",
        cli.data_dir.display()
    );
    if let Some(rp) = vault.relying_party() {
        eprintln!(
            "passkeys work for pages served from {} (set public_url in consentry.toml to change it)",
            rp.origin().as_str().trim_end_matches('/')
        );
    }
    tracing::info!(%addr, "listening");
    let checkpoints = vault.clone();
    let ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            every.tick().await;
            if let Err(e) = checkpoints.checkpoint_all().await {
                tracing::error!(error = %format!("{e:#}"), "failed to sign audit checkpoints");
            }
        }
    });
    app.run_until(shutdown_signal()).await?;
    ticker.abort();
    vault.checkpoint_all().await?;
    tracing::info!("stopped");
    Ok(0)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Entries given as separate arguments and/or comma-separated.
fn split_entries(raw: &[String]) -> Vec<String> {
    raw.iter()
        .flat_map(|e| e.split([',', ' ']))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// Prints an allowlist, one block per line; says so on a terminal when it is empty.
fn print_allowlist(list: &[String]) {
    if list.is_empty() && std::io::stderr().is_terminal() {
        eprintln!("no allowlist: any address is allowed");
    }
    for entry in list {
        println!("{entry}");
    }
}

/// Prints the security overview for a person.
fn print_security_report(r: &crate::vault::security_report::SecurityReport) {
    let f = &r.second_factor;
    println!("security overview at {}", r.generated_at);
    println!(
        "second factor: {} of {} users ({}%), {}",
        f.with_second_factor,
        f.users,
        f.coverage_percent,
        if f.required { "required" } else { "not required" }
    );
    for u in &f.without_second_factor {
        println!("  without: {}\t{}\t{}\t{}", u.id, u.email, u.role, u.status);
    }
    let k = &r.keys;
    println!("api keys: {} active, {} usable from any address", k.active, k.without_allowlist);
    for key in &k.expiring_soon {
        println!(
            "  expiring {}: {}\t{}",
            key.expires_at.as_deref().unwrap_or("never"),
            key.id,
            key.name
        );
    }
    for key in &k.unused {
        println!(
            "  unused since {}: {}\t{}",
            key.last_used_at.as_deref().unwrap_or("creation"),
            key.id,
            key.name
        );
    }
    let a = &r.allowlists;
    let workspace = if a.workspace.is_empty() {
        "any address".to_string()
    } else {
        a.workspace.join(", ")
    };
    println!(
        "allowlists: workspace {workspace}; {} users and {} keys with their own",
        a.users_with_allowlist, a.keys_with_allowlist
    );
    let fails = &r.failed_authentications;
    println!(
        "failed or refused authentications in the last {} hours: {}",
        fails.window_hours, fails.count
    );
    for e in &fails.recent {
        println!(
            "  {}\t{}\t{}\taudit #{}",
            e.at,
            e.action,
            e.target.as_deref().unwrap_or("-"),
            e.audit_seq
        );
    }
}
