//! The floor for import benchmarks: the same CSV rows inserted into a plain SQLite
//! table with the same unique indexes (email, phone), the same pragmas
//! (WAL, synchronous=FULL) and the same batch size, without crypto, consent or
//! list rows. Usage: `sqlite_floor FILE.csv DB [--blind-index] [--commit-rows N]`
//! (default 5,000 rows per transaction).
//!
//! With `--blind-index` the two unique indexes hold what consentry's do: a keyed
//! hash (HMAC-SHA256, 128 bits) of the email and of the phone instead of the text.
//! The generated file numbers its addresses, so text keys arrive nearly in index
//! order, while blind-index keys arrive in random order, as they do in consentry.
//!
//! With `--data-model`, DB is the database of a consentry data directory just
//! made by `consentry init`, and each row is written as consentry's import writes
//! a new contact, into consentry's own tables: the contact (its id a UUIDv7, its two
//! blind indexes, its wrapped key and five sealed fields as random bytes of the
//! sizes consentry's ciphertexts have, its segmentable attributes), its list
//! membership and its consent event, with the store's writer settings
//! (`WRITER_PRAGMAS`) and its checkpointer. The values of a
//! transaction are prepared before it starts, so the time reported beside the
//! total is the database's alone: what the data model costs SQLite per contact
//! before any parsing, sealing, planning or audit. It then reads the file again and
//! looks each 2,000-row batch up with the store's own import look-up (the contact
//! by each blind index, its columns, its list membership, its consent), one read
//! transaction for each 100,000 rows, and reports its time alone the same way.

use hmac::{Hmac, Mac};
use std::time::Instant;

type HmacSha256 = Hmac<sha2::Sha256>;

fn blind_index(key: &HmacSha256, kind: &str, value: &str) -> Vec<u8> {
    let mut mac = key.clone();
    mac.update(kind.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    mac.finalize().into_bytes()[..16].to_vec()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || anyhow::anyhow!("usage: sqlite_floor FILE.csv DB [--blind-index | --data-model] [--commit-rows N]");
    let (file, db) = (args.get(1).ok_or_else(usage)?, args.get(2).ok_or_else(usage)?);
    let blind = args.iter().any(|a| a == "--blind-index");
    let commit_rows: Option<usize> = match args.iter().position(|a| a == "--commit-rows") {
        Some(i) => Some(args.get(i + 1).ok_or_else(usage)?.parse()?),
        None => None,
    };
    let key = HmacSha256::new_from_slice(&rand::random::<[u8; 32]>())?;
    if args.iter().any(|a| a == "--data-model") {
        return data_model(file, db, &key, commit_rows.unwrap_or(100_000));
    }
    let commit_rows = commit_rows.unwrap_or(5000);
    let start = Instant::now();
    let conn = rusqlite::Connection::open(db)?;
    let key_type = if blind { "BLOB" } else { "TEXT" };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;
         CREATE TABLE contacts (id INTEGER PRIMARY KEY, email {key_type}, phone {key_type}, first_name TEXT, last_name TEXT,
             country TEXT, language TEXT, loyalty_tier TEXT, customer_number TEXT);
         CREATE UNIQUE INDEX contacts_email ON contacts(email);
         CREATE UNIQUE INDEX contacts_phone ON contacts(phone);"
    ))?;
    let mut reader = csv::Reader::from_path(file)?;
    let mut rows = 0u64;
    let mut batch: Vec<csv::StringRecord> = Vec::with_capacity(commit_rows);
    let flush = |batch: &mut Vec<csv::StringRecord>| -> anyhow::Result<()> {
        let tx = conn.unchecked_transaction()?;
        {
            let mut s = tx.prepare_cached("INSERT INTO contacts (email, phone, first_name, last_name, country, language, loyalty_tier, customer_number) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            for r in batch.iter() {
                if blind {
                    let (email, phone) = (blind_index(&key, "email", &r[0]), blind_index(&key, "phone", &r[1]));
                    s.execute(rusqlite::params![email, phone, &r[2], &r[3], &r[4], &r[5], &r[6], &r[7]])?;
                } else {
                    s.execute(rusqlite::params![&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7]])?;
                }
            }
        }
        tx.commit()?;
        batch.clear();
        Ok(())
    };
    for r in reader.records() {
        batch.push(r?);
        rows += 1;
        if batch.len() == commit_rows {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    let secs = start.elapsed().as_secs_f64();
    println!("{rows} rows in {secs:.2} s = {:.0} rows/s", rows as f64 / secs);
    Ok(())
}

/// One new contact as consentry's import writes it, its values prepared.
struct Prepared {
    id: [u8; 16],
    email_bidx: Vec<u8>,
    phone_bidx: Vec<u8>,
    sealed: [Vec<u8>; 6],
    segment_attributes: String,
    evidence: String,
    consent_id: [u8; 16],
}

/// Sizes of consentry's wrapped contact key and sealed email, phone, first name,
/// last name and attributes for the generated file's rows (`length()` of the
/// columns after a `bench/import.sh` import).
const SEALED_BYTES: [usize; 6] = [64, 53, 41, 33, 36, 61];

fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

fn data_model(file: &str, db: &str, key: &HmacSha256, commit_rows: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    let conn = rusqlite::Connection::open(db)?;
    conn.execute_batch(consentry::store::sqlite::WRITER_PRAGMAS)?;
    let ws: String = conn.query_row("SELECT id FROM workspaces ORDER BY created_at LIMIT 1", [], |r| r.get(0))?;
    let list = format!("lst_{}", uuid::Uuid::now_v7().simple());
    let import = format!("imp_{}", uuid::Uuid::now_v7().simple());
    let now = 1_796_000_000_000_000i64;
    conn.execute(
        "INSERT INTO lists (id, workspace_id, name, created_at) VALUES (?1, ?2, 'floor', ?3)",
        rusqlite::params![list, ws, now],
    )?;
    let checkpointer = consentry::store::sqlite::Checkpointer::start(std::path::Path::new(db))?;
    let mut reader = csv::Reader::from_path(file)?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow::anyhow!("no {name} column"))
    };
    let (email, phone, country, language, tier) = (
        col("email")?,
        col("phone")?,
        col("country")?,
        col("language")?,
        col("loyalty_tier")?,
    );
    let (mut rows, mut writing) = (0u64, std::time::Duration::ZERO);
    let mut batch: Vec<Prepared> = Vec::with_capacity(commit_rows);
    let mut flush = |batch: &mut Vec<Prepared>| -> anyhow::Result<()> {
        let began = Instant::now();
        let tx = conn.unchecked_transaction()?;
        {
            let mut contact = tx.prepare_cached(
                "INSERT INTO contacts (id, workspace_id, email_bidx, phone_bidx, contact_key, email_ct, phone_ct, first_name_ct,
                 last_name_ct, attributes_ct, segment_attributes, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?;
            let mut member = tx.prepare_cached("INSERT INTO list_members (list_id, contact_id, added_at) VALUES (?1, ?2, ?3)")?;
            let mut consent = tx.prepare_cached(
                "INSERT INTO consent_events (id, workspace_id, contact_id, channel, purpose, action, method, source, evidence,
                 private_evidence_ct, actor, occurred_at, recorded_at, audit_seq)
                 VALUES (?1, ?2, ?3, 'email', 'marketing', 'granted', 'import', 'benchmark signup form', ?4, NULL, 'cli', ?5, ?5, 1)",
            )?;
            for p in batch.iter() {
                let s = &p.sealed;
                contact.execute(rusqlite::params![
                    &p.id[..],
                    ws,
                    p.email_bidx,
                    p.phone_bidx,
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                    s[4],
                    s[5],
                    p.segment_attributes,
                    now
                ])?;
                member.execute(rusqlite::params![list, &p.id[..], now])?;
                consent.execute(rusqlite::params![&p.consent_id[..], ws, &p.id[..], p.evidence, now])?;
            }
        }
        tx.commit()?;
        writing += began.elapsed();
        batch.clear();
        Ok(())
    };
    for r in reader.records() {
        let r = r?;
        rows += 1;
        batch.push(Prepared {
            id: *uuid::Uuid::now_v7().as_bytes(),
            email_bidx: blind_index(key, "email", &r[email]),
            phone_bidx: blind_index(key, "phone", &r[phone]),
            sealed: SEALED_BYTES.map(random_bytes),
            segment_attributes: serde_json::json!({"country": &r[country], "language": &r[language], "loyalty_tier": &r[tier]}).to_string(),
            evidence: serde_json::json!({"import": import, "row": rows + 1}).to_string(),
            consent_id: *uuid::Uuid::now_v7().as_bytes(),
        });
        if batch.len() == commit_rows {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    drop(checkpointer); // its final checkpoint, as when the store closes
    report("", rows, start.elapsed(), "writes", writing);
    look_up_again(file, &conn, &ws, &list, key, email, phone, commit_rows)
}

/// Prints a pass's rows a second in all and those of the database's part alone.
fn report(pass: &str, rows: u64, total: std::time::Duration, part: &str, database: std::time::Duration) {
    let (secs, db) = (total.as_secs_f64(), database.as_secs_f64());
    println!(
        "{pass}{rows} rows in {secs:.2} s = {:.0} rows/s; the database's {part} {db:.2} s = {:.1} us a row = {:.0} rows/s",
        rows as f64 / secs,
        db * 1e6 / rows as f64,
        rows as f64 / db
    );
}

/// The reads a re-import of the same file makes for each row, on the same
/// connection and page cache: the store's own look-up of each 2,000-row batch
/// (`look_up_import_batch`, as the import's batches are looked up), one read
/// transaction for each `batch_rows` rows as the import's look-ups run inside its
/// open transaction, the blind indexes computed before, so the time reported is
/// the database's alone.
#[allow(clippy::too_many_arguments)]
fn look_up_again(
    file: &str,
    conn: &rusqlite::Connection,
    ws: &str,
    list: &str,
    key: &HmacSha256,
    email: usize,
    phone: usize,
    batch_rows: usize,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let (mut rows, mut found, mut reading) = (0u64, 0u64, std::time::Duration::ZERO);
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(batch_rows);
    let mut probe = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>| -> anyhow::Result<()> {
        let began = Instant::now();
        conn.execute_batch("BEGIN")?;
        for chunk in batch.chunks(2000) {
            let lookup = consentry::store::BatchLookup {
                email_bidx: chunk.iter().map(|(e, _)| e.clone()).collect(),
                phone_bidx: chunk.iter().map(|(_, p)| p.clone()).collect(),
                list_id: list.to_string(),
                first_row: 0,
                filter: None,
            };
            let contacts = consentry::store::sqlite::look_up_import_batch(conn, ws, &lookup)?.contacts;
            found += contacts.iter().filter(|c| c.in_list && !c.consent.is_empty()).count() as u64;
        }
        conn.execute_batch("COMMIT")?;
        reading += began.elapsed();
        batch.clear();
        Ok(())
    };
    let mut reader = csv::Reader::from_path(file)?;
    for r in reader.records() {
        let r = r?;
        rows += 1;
        batch.push((blind_index(key, "email", &r[email]), blind_index(key, "phone", &r[phone])));
        if batch.len() == batch_rows {
            probe(&mut batch)?;
        }
    }
    probe(&mut batch)?;
    anyhow::ensure!(
        found == rows,
        "looked up {rows} rows and found {found} of them in the list with consent"
    );
    report("looked up again: ", rows, start.elapsed(), "reads", reading);
    Ok(())
}
