//! The floor for import benchmarks: the same CSV rows inserted into a plain SQLite
//! table with the same unique indexes (email, phone), the same pragmas
//! (WAL, synchronous=FULL) and the same batch size, without crypto, consent or
//! list rows. Usage: `sqlite_floor FILE.csv DB`.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (file, db) = (
        args.get(1).ok_or_else(|| anyhow::anyhow!("usage: sqlite_floor FILE.csv DB"))?,
        args.get(2).ok_or_else(|| anyhow::anyhow!("usage: sqlite_floor FILE.csv DB"))?,
    );
    let start = Instant::now();
    let conn = rusqlite::Connection::open(db)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;
         CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT, last_name TEXT,
             country TEXT, language TEXT, loyalty_tier TEXT, customer_number TEXT);
         CREATE UNIQUE INDEX contacts_email ON contacts(email);
         CREATE UNIQUE INDEX contacts_phone ON contacts(phone);",
    )?;
    let mut reader = csv::Reader::from_path(file)?;
    let mut rows = 0u64;
    let mut batch: Vec<csv::StringRecord> = Vec::with_capacity(5000);
    let flush = |batch: &mut Vec<csv::StringRecord>| -> anyhow::Result<()> {
        let tx = conn.unchecked_transaction()?;
        {
            let mut s = tx.prepare_cached("INSERT INTO contacts (email, phone, first_name, last_name, country, language, loyalty_tier, customer_number) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            for r in batch.iter() {
                s.execute(rusqlite::params![&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7]])?;
            }
        }
        tx.commit()?;
        batch.clear();
        Ok(())
    };
    for r in reader.records() {
        batch.push(r?);
        rows += 1;
        if batch.len() == 5000 {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    let secs = start.elapsed().as_secs_f64();
    println!("{rows} rows in {secs:.2} s = {:.0} rows/s", rows as f64 / secs);
    Ok(())
}
