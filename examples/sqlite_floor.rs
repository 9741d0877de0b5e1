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
    let usage = || anyhow::anyhow!("usage: sqlite_floor FILE.csv DB [--blind-index] [--commit-rows N]");
    let (file, db) = (args.get(1).ok_or_else(usage)?, args.get(2).ok_or_else(usage)?);
    let blind = args.iter().any(|a| a == "--blind-index");
    let commit_rows: usize = match args.iter().position(|a| a == "--commit-rows") {
        Some(i) => args.get(i + 1).ok_or_else(usage)?.parse()?,
        None => 5000,
    };
    let key = HmacSha256::new_from_slice(&rand::random::<[u8; 32]>())?;
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
