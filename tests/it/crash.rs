//! Crash safety of imports: `kill -9` at random moments, then the same command
//! again. Never a duplicate, never a half-written contact, never a broken chain, and
//! the job ends with the exact expected counts.

use crate::support::Cli;
use std::time::{Duration, Instant};

const ROWS: usize = 120_000;

fn generate(rows: usize) -> String {
    let mut s = String::from("email,phone,first_name,last_name\n");
    for i in 0..rows {
        // Every 1000th row repeats an earlier address: in-file duplicates too.
        let n = if i % 1000 == 999 { i - 500 } else { i };
        s.push_str(&format!("person{n}@example.com,+3161{:07},First{n},Last{n}\n", n));
    }
    s
}

fn check_invariants(cli: &Cli) {
    let db = cli.db();
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let half: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM contacts c WHERE email_ct IS NULL OR phone_ct IS NULL OR first_name_ct IS NULL OR last_name_ct IS NULL
             OR c.id NOT IN (SELECT contact_id FROM list_members)
             OR NOT EXISTS (SELECT 1 FROM consent_events e WHERE e.contact_id = c.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(half, 0, "half-written contacts");
    let dup: i64 = db
        .query_row("SELECT COUNT(*) - COUNT(DISTINCT email_bidx) FROM contacts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dup, 0, "duplicate contacts");
    let verify = cli.run(&["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", String::from_utf8_lossy(&verify.stdout));
}

fn rows_done(cli: &Cli) -> i64 {
    cli.db()
        .query_row(
            "SELECT COALESCE(MAX(rows_done), 0) FROM imports WHERE status = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
}

#[test]
fn twenty_kills_during_an_import_lose_and_duplicate_nothing() {
    let cli = Cli::init();
    let file = cli.write("big.csv", generate(ROWS).as_bytes());
    let args = [
        "import",
        file.to_str().unwrap(),
        "--list",
        "all",
        "--source",
        "shop checkout",
        "--channels",
        "email,sms",
    ];

    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut kills = 0;
    while kills < 20 {
        let before = rows_done(&cli);
        // Short commit windows, so that a run commits several shared transactions
        // of a few batches each before it is killed.
        let mut child = cli
            .command()
            .env("CONSENTRY_IMPORT_COMMIT_WINDOW_MS", "40")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if kills % 4 == 0 {
            // Anywhere early: start-up, the checking pass, the job's creation.
            std::thread::sleep(Duration::from_millis(next() % 150));
        } else {
            // In the writing phase: after this run committed a batch, at a random
            // moment of the following ones.
            let deadline = Instant::now() + Duration::from_secs(60);
            while rows_done(&cli) == before && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(next() % 60));
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the import ended before kill {kills} ({status:?}); the file is too small for this machine");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        check_invariants(&cli);
    }
    let done_before_rerun = rows_done(&cli);
    eprintln!("20 kills done; {done_before_rerun} of {ROWS} rows were committed before the final run");
    assert!(done_before_rerun > 0 && done_before_rerun < ROWS as i64);
    cli.ok(&args);
    check_invariants(&cli);
    let expected_unique = (0..ROWS).filter(|i| i % 1000 != 999).count() as i64;
    let db = cli.db();
    let contacts: i64 = db.query_row("SELECT COUNT(*) FROM contacts", [], |r| r.get(0)).unwrap();
    assert_eq!(contacts, expected_unique);
    // One job, resumed across every kill, with the exact counts.
    let jobs: i64 = db.query_row("SELECT COUNT(*) FROM imports", [], |r| r.get(0)).unwrap();
    assert_eq!(jobs, 1);
    let (read, created, updated, unchanged, rejected, status): (i64, i64, i64, i64, i64, String) = db
        .query_row(
            "SELECT read_count, created_count, updated_count, unchanged_count, rejected_count, status FROM imports",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(status, "finished");
    assert_eq!(
        (read, created, updated, unchanged, rejected),
        (ROWS as i64, expected_unique, 0, (ROWS as i64) - expected_unique, 0)
    );
    let events: i64 = db.query_row("SELECT COUNT(*) FROM consent_events", [], |r| r.get(0)).unwrap();
    assert_eq!(events, expected_unique * 2, "one consent per channel per contact");
}
