//! The import service. A file is read twice: a first pass hashes the raw bytes and
//! checks the whole structure (so a broken file fails before anything is written),
//! a second pass parses rows, seals new contacts on a worker thread (pipelined with
//! the database) and applies one batch per transaction together with the job's
//! progress. A rerun of the same file with the same options resumes the unfinished
//! job after its last committed batch, so a crash never duplicates or half-writes.

use super::csv_reader::{CsvError, RecordReader, DEFAULT_MAX_RECORD_BYTES};
use crate::access::{Permission, Principal};
use crate::audit::AuditDraft;
use crate::clock::parse_timestamp;
use crate::crypto::{ContactCipher, FieldName, WorkspaceKeys};
use crate::domain::names::parse_text;
use crate::domain::{parse_attribute_name, AttributeClass, Channel, EmailAddress, PhoneNumber, Purpose, Region};
use crate::store::identifiers::IdentifierFilter;
use crate::store::{
    AttributeDef, BatchFound, BatchLookup, BatchWrites, ConsentEventRow, ContactRow, ImportCounts, ImportJob, ImportRejection,
    ImportStatus, StoreResult,
};
use crate::vault::contacts::{open_row, seal_new, seal_row, ContactPlain};
use crate::vault::{Vault, VaultError, VaultResult};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// Rows per batch (a backend may commit several consecutive batches together).
pub const BATCH_ROWS: usize = 2_000;
/// Rejections returned in a report (all are stored).
const REPORT_REJECTIONS: u32 = 1_000;

/// What to do with a row whose email or phone already belongs to a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExisting {
    /// Leave the contact as it is.
    Skip,
    /// Overwrite fields with the file's non-empty values.
    Update,
    /// Fill empty fields only (default).
    Merge,
}

impl OnExisting {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "skip" => Ok(OnExisting::Skip),
            "update" => Ok(OnExisting::Update),
            "merge" => Ok(OnExisting::Merge),
            other => Err(format!("unknown on-existing mode {other:?}: use skip, update or merge")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            OnExisting::Skip => "skip",
            OnExisting::Update => "update",
            OnExisting::Merge => "merge",
        }
    }
}

/// Options of one import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// List (id or name) the contacts are added to; created when missing.
    pub list: String,
    /// File-level consent source; rows may override it with `gdpr_source`.
    pub source: Option<String>,
    pub channels: Vec<Channel>,
    pub region: Option<Region>,
    pub on_existing: OnExisting,
    pub dry_run: bool,
    pub create_attributes: bool,
    pub segmentable: Vec<String>,
    pub purpose: Purpose,
}

/// The result of an import.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub import_id: String,
    pub status: ImportStatus,
    pub counts: ImportCounts,
    /// Rejected cells (row, column, reason), at most the first 1000.
    pub rejections: Vec<ImportRejection>,
    pub dry_run: bool,
    /// Whether this run continued an interrupted job.
    pub resumed: bool,
    pub file_sha256: String,
}

/// Opens the source afresh for each pass.
pub type SourceOpener = Arc<dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Send + Sync>;

/// Progress reporting (a terminal progress bar, metrics).
pub trait ImportProgress: Send + Sync {
    fn set_total(&self, rows: u64);
    fn advance(&self, rows: u64);
}

#[derive(Clone, Debug, PartialEq)]
enum Column {
    Email,
    Phone,
    FirstName,
    LastName,
    GdprSource,
    ConsentChannel,
    ConsentedAt,
    ConsentIp,
    Attribute(String, AttributeClass),
}

/// A row parsed and checked.
struct ParsedRow {
    row: u64,
    plain: ContactPlain,
    source: String,
    channels: Vec<Channel>,
    consented_at: Option<i64>,
    consent_ip: Option<String>,
}

/// A row ready for the planner: parsed, indexed, and sealed as a would-be new
/// contact unless the import's identifier filter says it may exist (then the
/// planner seals it if it turns out to be new).
struct PreparedRow {
    parsed: ParsedRow,
    email_bidx: Option<Vec<u8>>,
    phone_bidx: Option<Vec<u8>>,
    new_row: Option<ContactRow>,
}

enum Item {
    Ok(Box<PreparedRow>),
    Rejected(Vec<ImportRejection>),
}

struct PreparedBatch {
    items: Vec<Item>,
    rows: u64,
}

fn map_csv(e: CsvError) -> VaultError {
    VaultError::BadRequest(format!("the file cannot be imported: {e}"))
}

/// Reads a source through a SHA-256 hasher.
struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// First pass: the file's hash, header and number of data rows, or the first
/// structural error.
fn scan(open: &SourceOpener) -> VaultResult<(String, Vec<String>, u64)> {
    let src = open().map_err(|e| VaultError::BadRequest(format!("failed to open the file: {e}")))?;
    let mut hashing = HashingReader {
        inner: src,
        hasher: sha2::Sha256::new(),
    };
    let (headers, rows) = {
        let mut reader = RecordReader::new(&mut hashing, DEFAULT_MAX_RECORD_BYTES).map_err(map_csv)?;
        let headers = reader.headers().to_vec();
        let mut rows = 0u64;
        while reader.next_record().map_err(map_csv)?.is_some() {
            rows += 1;
        }
        (headers, rows)
    };
    // Drain what the reader did not consume so the hash covers the whole file.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| VaultError::BadRequest(format!("failed to read the file: {e}")))?;
    Ok((hex::encode(hashing.hasher.finalize()), headers, rows))
}

fn classify_headers(headers: &[String], schema: &[AttributeDef], opts: &ImportOptions) -> VaultResult<(Vec<Column>, Vec<AttributeDef>)> {
    let mut cols = Vec::new();
    let mut to_create = Vec::new();
    let mut unknown = Vec::new();
    for h in headers {
        let name = h.trim().to_ascii_lowercase();
        let col = match name.as_str() {
            "email" => Column::Email,
            "phone" => Column::Phone,
            "first_name" => Column::FirstName,
            "last_name" => Column::LastName,
            "gdpr_source" => Column::GdprSource,
            "consent_channel" => Column::ConsentChannel,
            "consented_at" => Column::ConsentedAt,
            "consent_ip" => Column::ConsentIp,
            other => match schema.iter().find(|d| d.name == other) {
                Some(d) => Column::Attribute(d.name.clone(), d.class),
                None if opts.create_attributes => {
                    let attr = parse_attribute_name(other)
                        .map_err(|m| VaultError::BadRequest(format!("column {other:?} cannot become an attribute: {m}")))?;
                    let class = if opts.segmentable.iter().any(|s| s == &attr) {
                        AttributeClass::Segmentable
                    } else {
                        AttributeClass::Identifying
                    };
                    to_create.push(AttributeDef { name: attr.clone(), class });
                    Column::Attribute(attr, class)
                }
                None => {
                    unknown.push(h.clone());
                    continue;
                }
            },
        };
        cols.push(col);
    }
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().take(10).map(|u| format!("{u:?}")).collect();
        let more = if unknown.len() > 10 {
            format!(" and {} more", unknown.len() - 10)
        } else {
            String::new()
        };
        return Err(VaultError::BadRequest(format!(
            "unknown column{} {}{more}: add them to the workspace schema, or pass --create-attributes (with --segmentable COL,... for clear, segmentable ones)",
            if unknown.len() == 1 { "" } else { "s" },
            shown.join(", ")
        )));
    }
    if !cols.iter().any(|c| matches!(c, Column::Email | Column::Phone)) {
        return Err(VaultError::BadRequest("the header has neither an email nor a phone column".into()));
    }
    if opts.source.is_none() && !cols.contains(&Column::GdprSource) {
        return Err(VaultError::BadRequest(
            "no consent source: pass --source (where and how the consent was obtained) or add a gdpr_source column".into(),
        ));
    }
    Ok((cols, to_create))
}

fn parse_row(row: u64, fields: &[String], cols: &[Column], opts: &ImportOptions) -> Result<ParsedRow, Vec<ImportRejection>> {
    let mut rejections = Vec::new();
    let reject = |rejections: &mut Vec<ImportRejection>, column: &str, reason: &str| {
        rejections.push(ImportRejection {
            row,
            column: column.to_string(),
            reason: reason.to_string(),
        });
    };
    if fields.len() != cols.len() {
        reject(
            &mut rejections,
            "*",
            &format!("the row has {} fields but the header has {}", fields.len(), cols.len()),
        );
        return Err(rejections);
    }
    let mut plain = ContactPlain::default();
    let mut source = opts.source.clone();
    let mut channels = opts.channels.clone();
    let mut consented_at = None;
    let mut consent_ip = None;
    for (col, raw) in cols.iter().zip(fields) {
        if raw.contains('\u{FFFD}') && !matches!(col, Column::Attribute(..) | Column::FirstName | Column::LastName) {
            reject(&mut rejections, col_name(col), "contains characters that could not be decoded");
            continue;
        }
        let value = raw.trim();
        if value.is_empty() {
            continue;
        }
        match col {
            Column::Email => match EmailAddress::parse(value) {
                Ok(e) => plain.email = Some(e),
                Err(m) => reject(&mut rejections, "email", m),
            },
            Column::Phone => match PhoneNumber::parse(value, opts.region) {
                Ok(p) => plain.phone = Some(p),
                Err(m) => reject(&mut rejections, "phone", m),
            },
            Column::FirstName | Column::LastName => match parse_text(value) {
                Ok(v) => {
                    if *col == Column::FirstName {
                        plain.first_name = v
                    } else {
                        plain.last_name = v
                    }
                }
                Err(m) => reject(&mut rejections, col_name(col), m),
            },
            Column::GdprSource => match crate::domain::consent::parse_source(value) {
                Ok(s) => source = Some(s),
                Err(m) => reject(&mut rejections, "gdpr_source", m),
            },
            Column::ConsentChannel => match Channel::parse_list(value) {
                Ok(c) => channels = c,
                Err(_) => reject(&mut rejections, "consent_channel", "unknown channel: use email, sms or whatsapp"),
            },
            Column::ConsentedAt => match parse_timestamp(value) {
                Some(t) => consented_at = Some(t),
                None => reject(&mut rejections, "consented_at", "not a date (YYYY-MM-DD) or RFC 3339 timestamp"),
            },
            Column::ConsentIp => match value.parse::<std::net::IpAddr>() {
                Ok(ip) => consent_ip = Some(ip.to_string()),
                Err(_) => reject(&mut rejections, "consent_ip", "not an IP address"),
            },
            Column::Attribute(name, class) => match parse_text(value) {
                Ok(Some(v)) => {
                    match class {
                        AttributeClass::Identifying => plain.identifying.insert(name.clone(), v),
                        AttributeClass::Segmentable => plain.segment.insert(name.clone(), v),
                    };
                }
                Ok(None) => {}
                Err(m) => reject(&mut rejections, name, m),
            },
        }
    }
    if !rejections.is_empty() {
        return Err(rejections);
    }
    if plain.email.is_none() && plain.phone.is_none() {
        reject(&mut rejections, "email", "the row has neither an email nor a phone");
        return Err(rejections);
    }
    let Some(source) = source else {
        reject(
            &mut rejections,
            "gdpr_source",
            "no consent source: the row has no gdpr_source and no --source was given",
        );
        return Err(rejections);
    };
    let usable: Vec<Channel> = channels
        .iter()
        .copied()
        .filter(|c| {
            if c.uses_phone() {
                plain.phone.is_some()
            } else {
                plain.email.is_some()
            }
        })
        .collect();
    if usable.is_empty() {
        let needs_phone = channels.iter().all(|c| c.uses_phone());
        let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
        reject(
            &mut rejections,
            if needs_phone { "phone" } else { "email" },
            &format!(
                "no {} for the consent channel(s) {}",
                if needs_phone { "phone" } else { "email" },
                names.join(",")
            ),
        );
        return Err(rejections);
    }
    Ok(ParsedRow {
        row,
        plain,
        source,
        channels: usable,
        consented_at,
        consent_ip,
    })
}

fn col_name(c: &Column) -> &str {
    match c {
        Column::Email => "email",
        Column::Phone => "phone",
        Column::FirstName => "first_name",
        Column::LastName => "last_name",
        Column::GdprSource => "gdpr_source",
        Column::ConsentChannel => "consent_channel",
        Column::ConsentedAt => "consented_at",
        Column::ConsentIp => "consent_ip",
        Column::Attribute(n, _) => n,
    }
}

fn prepare(
    keys: &WorkspaceKeys,
    parsed: ParsedRow,
    now: i64,
    filter: Option<&IdentifierFilter>,
) -> Result<PreparedRow, crate::crypto::CryptoError> {
    let email_bidx = parsed
        .plain
        .email
        .as_ref()
        .map(|e| keys.blind_index("email", e.normalized()).to_vec());
    let phone_bidx = parsed.plain.phone.as_ref().map(|p| keys.blind_index("phone", p.as_str()).to_vec());
    let may_exist = filter.is_some_and(|f| [&email_bidx, &phone_bidx].into_iter().flatten().any(|b| f.may_contain(b)));
    let new_row = match may_exist {
        true => None,
        false => Some(seal_new(keys, Uuid::now_v7(), &parsed.plain, now)?.1),
    };
    Ok(PreparedRow {
        email_bidx,
        phone_bidx,
        new_row,
        parsed,
    })
}

/// Context the planner needs besides the batch.
struct PlanContext {
    keys: Arc<WorkspaceKeys>,
    job: ImportJob,
    actor: String,
    on_existing: OnExisting,
    purpose: Purpose,
    now: i64,
    dry_run_seen: Option<Arc<std::sync::Mutex<HashSet<Vec<u8>>>>>,
    /// The import's identifier filter: what the batch writes is added to it.
    filter: Option<Arc<IdentifierFilter>>,
}

struct Slot<'b> {
    row: ContactRow,
    cipher: Option<ContactCipher>,
    /// The plaintext: a new contact's is the batch's own row, until a later row
    /// of the batch changes it.
    plain: Option<Cow<'b, ContactPlain>>,
    is_new: bool,
    in_list: bool,
    granted: HashSet<(String, String)>,
    /// Sealed fields changed: the row is sealed again.
    dirty: bool,
    /// Only the clear segmentable attributes changed.
    segment_dirty: bool,
}

impl Slot<'_> {
    fn open(&mut self, keys: &WorkspaceKeys) -> anyhow::Result<()> {
        if self.plain.is_none() {
            let (cipher, plain) = open_row(keys, &self.row).map_err(|e| anyhow::anyhow!("contact {}: {e}", self.row.id))?;
            self.cipher = Some(cipher);
            self.plain = Some(Cow::Owned(plain));
        }
        Ok(())
    }
}

/// Merges a row into a contact's plaintext; returns whether anything changed.
fn merge_plain(target: &mut ContactPlain, incoming: &ContactPlain, mode: OnExisting) -> bool {
    let mut changed = false;
    fn set<T: Clone + PartialEq>(t: &mut Option<T>, v: &Option<T>, overwrite: bool, changed: &mut bool) {
        if let Some(v) = v {
            if t.is_none() || (overwrite && t.as_ref() != Some(v)) {
                *t = Some(v.clone());
                *changed = true;
            }
        }
    }
    let overwrite = mode == OnExisting::Update;
    set(&mut target.email, &incoming.email, overwrite, &mut changed);
    set(&mut target.phone, &incoming.phone, overwrite, &mut changed);
    set(&mut target.first_name, &incoming.first_name, overwrite, &mut changed);
    set(&mut target.last_name, &incoming.last_name, overwrite, &mut changed);
    for (src, dst) in [
        (&incoming.identifying, &mut target.identifying),
        (&incoming.segment, &mut target.segment),
    ] {
        for (k, v) in src {
            let cur = dst.get(k);
            if cur.is_none() || (overwrite && cur != Some(v)) {
                dst.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

fn consent_event(
    ctx: &PlanContext,
    cipher: Option<&ContactCipher>,
    contact: Uuid,
    p: &ParsedRow,
    channel: Channel,
) -> anyhow::Result<ConsentEventRow> {
    let id = Uuid::now_v7();
    let private_evidence_ct = match (&p.consent_ip, cipher) {
        (None, _) => None,
        (Some(_), None) => anyhow::bail!("no contact key to seal the consent evidence with"),
        (Some(ip), Some(cipher)) => Some(cipher.seal(
            FieldName::ConsentEvidence(&id.to_string()),
            serde_json::json!({ "ip": ip }).to_string().as_bytes(),
        )?),
    };
    Ok(ConsentEventRow {
        id,
        workspace_id: ctx.job.workspace_id.clone(),
        contact_id: contact,
        channel: channel.as_str().into(),
        purpose: ctx.purpose.as_str().into(),
        action: "granted".into(),
        method: "import".into(),
        source: p.source.clone(),
        // The job (file hash, uploader, time) is named by id; the ledger view and
        // the consent proof expand it, which keeps a million events small.
        evidence: serde_json::json!({ "import": ctx.job.id, "row": p.row }).to_string(),
        private_evidence_ct,
        actor: ctx.actor.clone(),
        occurred_at: p.consented_at.unwrap_or(ctx.now),
        recorded_at: ctx.now,
        audit_seq: 0,
    })
}

/// Decides the writes of one batch from what the store found. The batch is only
/// read, so that a plan made ahead on a look-up that no longer holds can be made
/// again.
fn plan(ctx: &PlanContext, batch: &PreparedBatch, found: BatchFound) -> anyhow::Result<BatchWrites> {
    let mut counts = ImportCounts {
        read: batch.rows,
        ..Default::default()
    };
    let suppressed: HashSet<Vec<u8>> = found.suppressed.into_iter().collect();
    let mut slots: Vec<Slot> = Vec::new();
    let mut by_bidx: HashMap<Vec<u8>, usize> = HashMap::new();
    for e in found.contacts {
        let idx = slots.len();
        for b in [&e.row.email_bidx, &e.row.phone_bidx].into_iter().flatten() {
            by_bidx.insert(b.clone(), idx);
        }
        let granted = e
            .consent
            .iter()
            .filter(|(_, _, a)| a == "granted")
            .map(|(c, p, _)| (c.clone(), p.clone()))
            .collect();
        slots.push(Slot {
            row: e.row,
            cipher: None,
            plain: None,
            is_new: false,
            in_list: e.in_list,
            granted,
            dirty: false,
            segment_dirty: false,
        });
    }
    let mut memberships = Vec::new();
    let mut consents = Vec::new();
    let mut rejections = Vec::new();
    let first_row = batch.items.first().map(|i| match i {
        Item::Ok(p) => p.parsed.row,
        Item::Rejected(r) => r.first().map(|x| x.row).unwrap_or(0),
    });
    for item in &batch.items {
        let prepared: &PreparedRow = match item {
            Item::Rejected(r) => {
                counts.rejected += 1;
                rejections.extend(r.iter().cloned());
                continue;
            }
            Item::Ok(p) => p,
        };
        let keys_of_row: Vec<&Vec<u8>> = [&prepared.email_bidx, &prepared.phone_bidx].into_iter().flatten().collect();
        if keys_of_row.iter().any(|b| suppressed.contains(*b)) {
            counts.suppressed += 1;
            continue;
        }
        let slot_e = prepared.email_bidx.as_ref().and_then(|b| by_bidx.get(b).copied());
        let slot_p = prepared.phone_bidx.as_ref().and_then(|b| by_bidx.get(b).copied());
        let slot = match (slot_e, slot_p) {
            (Some(a), Some(b)) if a != b => {
                counts.rejected += 1;
                rejections.push(ImportRejection {
                    row: prepared.parsed.row,
                    column: "phone".into(),
                    reason: "the email and the phone belong to two different contacts".into(),
                });
                continue;
            }
            (a, b) => a.or(b),
        };
        let Some(idx) = slot else {
            if let Some(seen) = &ctx.dry_run_seen {
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("dry-run state poisoned"))?;
                if keys_of_row.iter().any(|b| seen.contains(*b)) {
                    counts.unchanged += 1;
                    continue;
                }
                for b in &keys_of_row {
                    seen.insert((*b).clone());
                }
            }
            let idx = slots.len();
            for b in &keys_of_row {
                by_bidx.insert((*b).clone(), idx);
            }
            let parsed = &prepared.parsed;
            let new_row = match &prepared.new_row {
                Some(row) => row.clone(),
                None => seal_new(&ctx.keys, Uuid::now_v7(), &parsed.plain, ctx.now)?.1,
            };
            // Contact keys are reopened only where a value must be sealed here, so a
            // batch in flight does not hold thousands of expanded AES keys.
            let cipher = match parsed.consent_ip {
                Some(_) => Some(ContactCipher::open(&ctx.keys, *new_row.id.as_bytes(), &new_row.contact_key)?),
                None => None,
            };
            let mut granted = HashSet::new();
            for ch in &parsed.channels {
                consents.push(consent_event(ctx, cipher.as_ref(), new_row.id, parsed, *ch)?);
                granted.insert((ch.as_str().to_string(), ctx.purpose.as_str().to_string()));
            }
            memberships.push(new_row.id);
            counts.created += 1;
            slots.push(Slot {
                row: new_row,
                cipher,
                plain: Some(Cow::Borrowed(&parsed.plain)),
                is_new: true,
                in_list: true,
                granted,
                dirty: false,
                segment_dirty: false,
            });
            continue;
        };
        let s = &mut slots[idx];
        if ctx.on_existing == OnExisting::Skip {
            counts.unchanged += 1;
            continue;
        }
        let incoming = &prepared.parsed.plain;
        // Decrypt only when sealed fields may change; segmentable attributes are in
        // clear and merge without opening the contact.
        let needs_open = s.plain.is_some()
            || match ctx.on_existing {
                OnExisting::Update => true,
                _ => {
                    (incoming.email.is_some() && s.row.email_ct.is_none())
                        || (incoming.phone.is_some() && s.row.phone_ct.is_none())
                        || (incoming.first_name.is_some() && s.row.first_name_ct.is_none())
                        || (incoming.last_name.is_some() && s.row.last_name_ct.is_none())
                        || !incoming.identifying.is_empty()
                }
            };
        let mut changed = false;
        if needs_open {
            s.open(&ctx.keys)?;
            if let Some(plain) = s.plain.as_mut() {
                if merge_plain(plain.to_mut(), incoming, ctx.on_existing) {
                    changed = true;
                    s.dirty = true;
                }
            }
        } else if !incoming.segment.is_empty() {
            let mut segment: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&s.row.segment_attributes).unwrap_or_default();
            let mut grew = false;
            for (k, v) in &incoming.segment {
                if !segment.contains_key(k) {
                    segment.insert(k.clone(), v.clone());
                    grew = true;
                }
            }
            if grew {
                s.row.segment_attributes = serde_json::to_string(&segment).unwrap_or_else(|_| "{}".into());
                s.segment_dirty = true;
                changed = true;
            }
        }
        if !s.in_list {
            s.in_list = true;
            memberships.push(s.row.id);
            changed = true;
        }
        for ch in &prepared.parsed.channels {
            let key = (ch.as_str().to_string(), ctx.purpose.as_str().to_string());
            if !s.granted.contains(&key) {
                if s.cipher.is_none() {
                    s.cipher = Some(ContactCipher::open(&ctx.keys, *s.row.id.as_bytes(), &s.row.contact_key)?);
                }
                if let Some(cipher) = &s.cipher {
                    consents.push(consent_event(ctx, Some(cipher), s.row.id, &prepared.parsed, *ch)?);
                }
                s.granted.insert(key);
                changed = true;
            }
        }
        if changed {
            counts.updated += 1;
        } else {
            counts.unchanged += 1;
        }
        // Identifiers added by this row now lead to the same contact.
        if s.dirty {
            if let Some(plain) = &s.plain {
                if let Some(e) = &plain.email {
                    by_bidx.insert(ctx.keys.blind_index("email", e.normalized()).to_vec(), idx);
                }
                if let Some(p) = &plain.phone {
                    by_bidx.insert(ctx.keys.blind_index("phone", p.as_str()).to_vec(), idx);
                }
            }
        }
    }
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    for s in slots {
        if s.is_new {
            let row = match (s.dirty, &s.plain) {
                (true, Some(p)) => {
                    let c = match s.cipher {
                        Some(c) => c,
                        None => ContactCipher::open(&ctx.keys, *s.row.id.as_bytes(), &s.row.contact_key)?,
                    };
                    seal_row(&c, &ctx.keys, s.row.clone(), p)?
                }
                _ => s.row,
            };
            inserts.push(row);
        } else if s.dirty {
            if let (Some(c), Some(p)) = (&s.cipher, &s.plain) {
                updates.push(seal_row(
                    c,
                    &ctx.keys,
                    ContactRow {
                        updated_at: ctx.now,
                        ..s.row.clone()
                    },
                    p,
                )?);
            }
        }
    }
    if let Some(f) = &ctx.filter {
        for row in inserts.iter().chain(&updates) {
            for b in [&row.email_bidx, &row.phone_bidx].into_iter().flatten() {
                f.insert(b);
            }
        }
    }
    let audit = AuditDraft::new(&ctx.job.workspace_id, &ctx.actor, "import.batch_committed")
        .target(format!("import:{}", ctx.job.id))
        .details(serde_json::json!({
            "first_row": first_row, "rows": batch.rows, "created": counts.created, "updated": counts.updated,
            "unchanged": counts.unchanged, "suppressed": counts.suppressed, "rejected": counts.rejected,
        }));
    Ok(BatchWrites {
        inserts,
        updates,
        memberships,
        consents,
        rejections,
        counts,
        rows: batch.rows,
        audit,
        at: ctx.now,
    })
}

fn options_hash(opts: &ImportOptions, list_id: &str, actor: &str) -> String {
    let channels: Vec<&str> = opts.channels.iter().map(|c| c.as_str()).collect();
    let canonical = serde_json::json!({
        "list": list_id, "source": opts.source, "channels": channels, "region": opts.region.map(|r| format!("{r:?}")),
        "on_existing": opts.on_existing.as_str(), "create_attributes": opts.create_attributes,
        "segmentable": opts.segmentable, "purpose": opts.purpose.as_str(), "actor": actor,
    });
    crate::crypto::sha256_hex(canonical.to_string().as_bytes())
}

impl Vault {
    /// Imports a CSV file (see the module documentation).
    pub async fn import_csv(
        &self,
        p: &Principal,
        open: SourceOpener,
        opts: ImportOptions,
        progress: Option<Arc<dyn ImportProgress>>,
        stop: Arc<AtomicBool>,
    ) -> VaultResult<ImportReport> {
        p.require(Permission::ContactsImport)?;
        if let Some(s) = &opts.source {
            crate::domain::consent::parse_source(s).map_err(|m| VaultError::invalid("source", m))?;
        }
        if opts.channels.is_empty() {
            return Err(VaultError::invalid("channels", "give at least one channel"));
        }
        let opener = open.clone();
        let (file_hash, headers, total_rows) = tokio::task::spawn_blocking(move || scan(&opener))
            .await
            .map_err(|e| VaultError::Internal(e.into()))??;
        if total_rows == 0 {
            return Err(VaultError::BadRequest("the file has a header but no data rows".into()));
        }
        let schema = self.store.list_attributes(&p.workspace_id).await?;
        let (cols, to_create) = classify_headers(&headers, &schema, &opts)?;
        let list = if opts.dry_run {
            match self.store.find_list(&p.workspace_id, &opts.list, &p.lists).await? {
                Some(l) => l,
                None => crate::store::ListRecord {
                    id: String::new(),
                    workspace_id: p.workspace_id.clone(),
                    name: opts.list.clone(),
                    created_at: 0,
                    member_count: None,
                },
            }
        } else {
            if !to_create.is_empty() {
                let names: Vec<&str> = to_create.iter().map(|d| d.name.as_str()).collect();
                let draft = AuditDraft::new(&p.workspace_id, &p.actor, "attributes.created")
                    .ip_hash(p.ip_hash.clone())
                    .details(serde_json::json!({ "attributes": names }));
                self.store.create_attributes(&p.workspace_id, to_create, self.now(), draft).await?;
            }
            self.ensure_list(p, &opts.list).await?
        };
        let now = self.now();
        let new_job = ImportJob {
            id: format!("imp_{}", Uuid::now_v7().simple()),
            workspace_id: p.workspace_id.clone(),
            file_hash: file_hash.clone(),
            options_hash: options_hash(&opts, &list.id, &p.actor),
            uploader: p.actor.clone(),
            list_id: list.id.clone(),
            source: opts.source.clone(),
            status: ImportStatus::Running,
            rows_done: 0,
            counts: ImportCounts::default(),
            error: None,
            created_at: now,
            finished_at: None,
        };
        let job = if opts.dry_run {
            new_job.clone()
        } else {
            let draft = AuditDraft::new(&p.workspace_id, &p.actor, "import.started")
                .target(format!("import:{}", new_job.id))
                .ip_hash(p.ip_hash.clone())
                .details(serde_json::json!({ "file_sha256": file_hash, "list": list.id, "rows": total_rows, "on_existing": opts.on_existing.as_str() }));
            self.store.begin_import(new_job.clone(), draft).await?
        };
        let resumed = job.id != new_job.id;
        if let Some(pr) = &progress {
            pr.set_total(total_rows);
            pr.advance(job.rows_done);
        }
        let keys = self.keys(&p.workspace_id).await?;
        // A large import reads every identifier that exists once, so that new
        // contacts need no look-up (`store::identifiers`). Without a filter the
        // import only looks every identifier up.
        let filter = if opts.dry_run {
            None
        } else {
            match self
                .store
                .identifier_filter(&p.workspace_id, &job.id, total_rows.saturating_sub(job.rows_done))
                .await
            {
                Ok(f) => f.map(Arc::new),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the import goes on without an identifier filter");
                    None
                }
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<VaultResult<PreparedBatch>>(2);
        let skip = job.rows_done;
        let producer_keys = keys.clone();
        let producer_opts = opts.clone();
        let producer_stop = stop.clone();
        let producer_filter = filter.clone();
        let producer = std::thread::Builder::new()
            .name("consentry-import-reader".into())
            .spawn(move || {
                produce(
                    open,
                    skip,
                    cols,
                    producer_opts,
                    producer_keys,
                    producer_filter,
                    now,
                    tx,
                    producer_stop,
                )
            })
            .map_err(|e| VaultError::Internal(e.into()))?;
        let dry_run_seen = opts.dry_run.then(|| Arc::new(std::sync::Mutex::new(HashSet::new())));
        let mut dry_counts = ImportCounts::default();
        let mut result: VaultResult<()> = Ok(());
        // Batches are handed to the store without waiting for the previous one to
        // be committed, so that a backend can commit consecutive batches together,
        // and each is looked up ahead of its turn (`prefetch_import_batch`) while
        // the one before still writes. A batch is applied only once the one before
        // has started at the store (its planner runs): batches are applied strictly
        // in file order, which the job's progress (rows done, counted from the
        // top) relies on and the store checks, and at most `AHEAD` batches wait
        // unstarted, which bounds memory. Two, so that a batch is looked up and
        // planned while the one before waits for its turn: the SQLite writer
        // looks up and writes, and with one ahead it waited for each plan.
        const AHEAD: usize = 2;
        let ahead = Arc::new(tokio::sync::Semaphore::new(AHEAD));
        let mut turn: Option<tokio::sync::oneshot::Receiver<()>> = None;
        let mut first_row = job.rows_done;
        let mut in_flight: VecDeque<tokio::task::JoinHandle<(u64, StoreResult<ImportCounts>)>> = VecDeque::new();
        let import_id = (!opts.dry_run).then(|| job.id.clone());
        let mut next = rx.recv().await;
        while let Some(batch) = next.take() {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if !stop.load(Ordering::SeqCst) {
                next = rx.recv().await;
            }
            let last_batch = next.is_none() || stop.load(Ordering::SeqCst);
            let rows = batch.rows;
            let mut lookup = BatchLookup {
                list_id: list.id.clone(),
                first_row,
                filter: filter.clone(),
                ..Default::default()
            };
            first_row += rows;
            for item in &batch.items {
                if let Item::Ok(pr) = item {
                    lookup.email_bidx.extend(pr.email_bidx.clone());
                    lookup.phone_bidx.extend(pr.phone_bidx.clone());
                }
            }
            let ctx = PlanContext {
                keys: keys.clone(),
                job: job.clone(),
                actor: p.actor.clone(),
                on_existing: opts.on_existing,
                purpose: opts.purpose.clone(),
                now: self.now(),
                dry_run_seen: dry_run_seen.clone(),
                filter: filter.clone(),
            };
            let permit = ahead.clone().acquire_owned().await.map_err(|e| VaultError::Internal(e.into()))?;
            let (started, my_turn) = tokio::sync::oneshot::channel::<()>();
            let previous = turn.replace(my_turn);
            let mut planner = crate::store::ImportPlanner::new(move |found| plan(&ctx, &batch, found)).on_start(move || {
                drop(permit);
                let _ = started.send(());
            });
            let (store, ws, id) = (self.store.clone(), p.workspace_id.clone(), import_id.clone());
            in_flight.push_back(tokio::spawn(async move {
                let prefetched = match id.as_deref() {
                    // A failed look-up ahead only means the batch looks up in its turn.
                    Some(id) => store.prefetch_import_batch(&ws, id, &lookup).await.ok().flatten(),
                    None => None,
                };
                // A batch looked up ahead is planned ahead too, while the one
                // before still writes; the store keeps the plan if the look-up
                // still holds at the batch's turn.
                let prefetched = match prefetched {
                    Some(mut pre) => match tokio::task::spawn_blocking(move || {
                        pre.plan_ahead(&mut planner);
                        (planner, pre)
                    })
                    .await
                    {
                        Ok((back, pre)) => {
                            planner = back;
                            Some(pre)
                        }
                        Err(e) => {
                            return (
                                rows,
                                Err(crate::store::StoreError::Backend(anyhow::anyhow!("planning a batch failed: {e}"))),
                            )
                        }
                    },
                    None => None,
                };
                // The previous batch has started, or ended without starting (then
                // this one is refused by the store: the progress is not where it
                // expects it).
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                (
                    rows,
                    store
                        .apply_import_batch(&ws, id.as_deref(), lookup, prefetched, planner, last_batch)
                        .await,
                )
            }));
            while in_flight.front().is_some_and(|h| h.is_finished()) {
                if let Some(h) = in_flight.pop_front() {
                    settle(h.await, &mut dry_counts, progress.as_deref(), &mut result);
                }
            }
            if result.is_err() || last_batch {
                break;
            }
        }
        // Whatever is still in flight finishes before the job is reported.
        for h in in_flight {
            settle(h.await, &mut dry_counts, progress.as_deref(), &mut result);
        }
        let interrupted = result.is_ok() && stop.load(Ordering::SeqCst);
        drop(rx);
        let _ = producer.join();
        if opts.dry_run {
            result?;
            return Ok(ImportReport {
                import_id: String::new(),
                status: ImportStatus::Finished,
                counts: dry_counts,
                rejections: Vec::new(),
                dry_run: true,
                resumed: false,
                file_sha256: file_hash,
            });
        }
        if interrupted {
            let current = self
                .store
                .find_import(&p.workspace_id, &job.id)
                .await?
                .ok_or(VaultError::NotFound("import"))?;
            return self.report(p, current, resumed).await;
        }
        let (status, error) = match result {
            Ok(()) => (ImportStatus::Finished, None),
            // Storage trouble leaves the job running, so that a rerun resumes it.
            Err(e @ (VaultError::AuditUnavailable(_) | VaultError::Internal(_))) => return Err(e),
            Err(e) => (ImportStatus::Failed, Some(e.to_string())),
        };
        let current = self
            .store
            .find_import(&p.workspace_id, &job.id)
            .await?
            .ok_or(VaultError::NotFound("import"))?;
        let draft = AuditDraft::new(&p.workspace_id, &p.actor, "import.finished")
            .target(format!("import:{}", job.id))
            .ip_hash(p.ip_hash.clone())
            .outcome(if status == ImportStatus::Finished {
                crate::audit::Outcome::Success
            } else {
                crate::audit::Outcome::Failure
            })
            .details(serde_json::to_value(current.counts).unwrap_or_default());
        let finished = self
            .store
            .finish_import(&p.workspace_id, &job.id, status, error.clone(), self.now(), draft)
            .await?;
        if let Some(e) = error {
            return Err(VaultError::BadRequest(e));
        }
        self.report(p, finished, resumed).await
    }

    async fn report(&self, p: &Principal, job: ImportJob, resumed: bool) -> VaultResult<ImportReport> {
        let rejections = self
            .store
            .list_import_rejections(&p.workspace_id, &job.id, REPORT_REJECTIONS)
            .await?;
        Ok(ImportReport {
            import_id: job.id,
            status: job.status,
            counts: job.counts,
            rejections,
            dry_run: false,
            resumed,
            file_sha256: job.file_hash,
        })
    }

    /// The state and counts of an import.
    pub async fn get_import(&self, p: &Principal, id: &str) -> VaultResult<ImportReport> {
        p.require(Permission::ContactsImport)?;
        let job = self
            .store
            .find_import(&p.workspace_id, id)
            .await?
            .filter(|j| p.lists.allows_list(&j.list_id))
            .ok_or(VaultError::NotFound("import"))?;
        self.report(p, job, false).await
    }
}

/// Takes in the outcome of one applied batch; the first error is kept.
fn settle(
    joined: Result<(u64, StoreResult<ImportCounts>), tokio::task::JoinError>,
    counts: &mut ImportCounts,
    progress: Option<&dyn ImportProgress>,
    result: &mut VaultResult<()>,
) {
    let applied = match joined {
        Ok((rows, Ok(c))) => {
            counts.add(&c);
            if let Some(pr) = progress {
                pr.advance(rows);
            }
            return;
        }
        Ok((_, Err(e))) => e.into(),
        Err(e) => VaultError::Internal(anyhow::anyhow!("an import batch task failed: {e}")),
    };
    if result.is_ok() {
        *result = Err(applied);
    }
}

#[allow(clippy::too_many_arguments)]
fn produce(
    open: SourceOpener,
    skip: u64,
    cols: Vec<Column>,
    opts: ImportOptions,
    keys: Arc<WorkspaceKeys>,
    filter: Option<Arc<IdentifierFilter>>,
    now: i64,
    tx: tokio::sync::mpsc::Sender<VaultResult<PreparedBatch>>,
    stop: Arc<AtomicBool>,
) {
    let run = || -> VaultResult<()> {
        let src = open().map_err(|e| VaultError::BadRequest(format!("failed to open the file: {e}")))?;
        let mut reader = RecordReader::new(src, DEFAULT_MAX_RECORD_BYTES).map_err(map_csv)?;
        let mut skipped = 0u64;
        while skipped < skip {
            if reader.next_record().map_err(map_csv)?.is_none() {
                return Err(VaultError::BadRequest("the file is shorter than the import being resumed".into()));
            }
            skipped += 1;
        }
        loop {
            let mut records = Vec::with_capacity(BATCH_ROWS);
            while records.len() < BATCH_ROWS {
                match reader.next_record().map_err(map_csv)? {
                    Some(r) => records.push(r),
                    None => break,
                }
            }
            if records.is_empty() {
                return Ok(());
            }
            let rows = records.len() as u64;
            use rayon::prelude::*;
            let items: Vec<Item> = records
                .into_par_iter()
                .map(|r| match parse_row(r.row, &r.fields, &cols, &opts) {
                    Ok(parsed) => {
                        let row = parsed.row;
                        match prepare(&keys, parsed, now, filter.as_deref()) {
                            Ok(p) => Item::Ok(Box::new(p)),
                            Err(_) => Item::Rejected(vec![ImportRejection {
                                row,
                                column: "*".into(),
                                reason: "could not be sealed".into(),
                            }]),
                        }
                    }
                    Err(rej) => Item::Rejected(rej),
                })
                .collect();
            if tx.blocking_send(Ok(PreparedBatch { items, rows })).is_err() || stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
    };
    if let Err(e) = run() {
        let _ = tx.blocking_send(Err(e));
    }
}
