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
//! membership and its consent event, with the writer's pragmas (64 MiB cache, WAL
//! checkpointed every 250 ms on a connection of its own). The values of a
//! transaction are prepared before it starts, so the time reported beside the
//! total is the database's alone: what the data model costs SQLite per contact
//! before any parsing, sealing, planning or audit. It then reads the file again and
//! makes, for each row, the reads a re-import of it makes (the contact by each blind
//! index, its columns, its list membership, its consent events), one read
//! transaction a batch, and reports their time alone the same way.

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
    let commit_rows: usize = match args.iter().position(|a| a == "--commit-rows") {
        Some(i) => args.get(i + 1).ok_or_else(usage)?.parse()?,
        None => 5000,
    };
    let key = HmacSha256::new_from_slice(&rand::random::<[u8; 32]>())?;
    if args.iter().any(|a| a == "--data-model") {
        let commit_rows = match args.iter().position(|a| a == "--commit-rows") {
            Some(_) => commit_rows,
            None => 100_000,
        };
        return data_model(file, db, &key, commit_rows);
    }
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
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536; PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 0;",
    )?;
    let ws: String = conn.query_row("SELECT id FROM workspaces ORDER BY created_at LIMIT 1", [], |r| r.get(0))?;
    let list = format!("lst_{}", uuid::Uuid::now_v7().simple());
    let import = format!("imp_{}", uuid::Uuid::now_v7().simple());
    let now = 1_796_000_000_000_000i64;
    conn.execute(
        "INSERT INTO lists (id, workspace_id, name, created_at) VALUES (?1, ?2, 'floor', ?3)",
        rusqlite::params![list, ws, now],
    )?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkpointer = {
        let (done, db) = (done.clone(), db.to_string());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let c = rusqlite::Connection::open(db)?;
            c.execute_batch("PRAGMA busy_timeout = 10000;")?;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(250));
                c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            }
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
    };
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
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    checkpointer.join().map_err(|_| anyhow::anyhow!("the checkpointer panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    let w = writing.as_secs_f64();
    println!(
        "{rows} rows in {secs:.2} s = {:.0} rows/s; the database's writes {w:.2} s = {:.1} us a row = {:.0} rows/s",
        rows as f64 / secs,
        w * 1e6 / rows as f64,
        rows as f64 / w
    );
    look_up_again(file, &conn, &list, key, email, phone, commit_rows)
}

/// The reads a re-import of the same file makes for each row, on the same
/// connection and page cache: the contact by each blind index, its columns, its
/// list membership and its consent events, the blind indexes computed before each
/// batch of `batch_rows` (one read transaction each) so the time reported is the
/// database's alone.
fn look_up_again(
    file: &str,
    conn: &rusqlite::Connection,
    list: &str,
    key: &HmacSha256,
    email: usize,
    phone: usize,
    batch_rows: usize,
) -> anyhow::Result<()> {
    use rusqlite::OptionalExtension;
    let start = Instant::now();
    let mut by_email = conn.prepare_cached("SELECT id FROM contacts WHERE email_bidx = ?1")?;
    let mut by_phone = conn.prepare_cached("SELECT id FROM contacts WHERE phone_bidx = ?1")?;
    let mut by_id = conn.prepare_cached(
        "SELECT id, workspace_id, email_bidx, phone_bidx, contact_key, email_ct, phone_ct, first_name_ct, last_name_ct,
         attributes_ct, segment_attributes, created_at, updated_at FROM contacts WHERE id = ?1",
    )?;
    let mut member = conn.prepare_cached("SELECT 1 FROM list_members WHERE list_id = ?1 AND contact_id = ?2")?;
    let mut consent = conn.prepare_cached("SELECT channel, purpose, action FROM consent_events WHERE contact_id = ?1 ORDER BY seq")?;
    let (mut rows, mut found, mut reading) = (0u64, 0u64, std::time::Duration::ZERO);
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(batch_rows);
    let mut probe = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>| -> anyhow::Result<()> {
        let began = Instant::now();
        // One read transaction a batch, as the import's look-ups run inside its
        // open transaction: no lock taken and released for every statement.
        conn.execute_batch("BEGIN")?;
        for (e, p) in batch.iter() {
            let a: Option<Vec<u8>> = by_email.query_row([e], |r| r.get(0)).optional()?;
            let b: Option<Vec<u8>> = by_phone.query_row([p], |r| r.get(0)).optional()?;
            let ids = match (a, b) {
                (Some(a), Some(b)) if a == b => vec![a],
                (a, b) => a.into_iter().chain(b).collect(),
            };
            for id in ids {
                let columns = by_id.query_row([&id], |r| {
                    let mut bytes = 0;
                    for i in 0..13 {
                        bytes += match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b.len(),
                            _ => 8,
                        };
                    }
                    Ok(bytes)
                })?;
                let in_list = member.query_row(rusqlite::params![list, id], |_| Ok(())).optional()?.is_some();
                let events = consent
                    .query_map([&id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                    })?
                    .count();
                found += u64::from(columns > 0 && in_list && events > 0);
            }
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
    anyhow::ensure!(found == rows, "looked up {rows} rows and found {found} of them whole");
    let secs = start.elapsed().as_secs_f64();
    let r = reading.as_secs_f64();
    println!(
        "looked up again: {rows} rows in {secs:.2} s = {:.0} rows/s; the database's reads {r:.2} s = {:.1} us a row = {:.0} rows/s",
        rows as f64 / secs,
        r * 1e6 / rows as f64,
        rows as f64 / r
    );
    Ok(())
}
