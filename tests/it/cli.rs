//! The command line end to end: set-up, keys, import, export, audit verification
//! and tamper detection, all through the real binary.

use crate::support::{contains, files_under, Cli};

const CSV: &str = "email,phone,first_name,last_name\n\
jane.planted@example.com,+31612345678,Janeplanted,Doeplanted\n\
kees.planted@example.org,+31687654321,Keesplanted,Jansenplanted\n";

#[test]
fn init_creates_a_private_key_file_and_a_second_start_reuses_it() {
    let cli = Cli::init();
    let key = std::fs::read_to_string(cli.path("owner.key")).unwrap();
    assert!(key.trim().starts_with("csk_"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cli.data_dir().join("master.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "master.key");
    assert_eq!(
        std::fs::metadata(cli.path("owner.key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(cli.data_dir().join("consentry.toml").exists());
    let again = cli.run(&["init"]);
    assert!(again.status.success());
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("csk_"),
        "a second init printed a key"
    );
}

#[test]
fn keys_create_prints_the_key_alone_on_stdout_when_piped() {
    let cli = Cli::init();
    let out = cli.ok(&["keys", "create", "--name", "ci", "--scopes", "viewer", "--expires", "90d"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].starts_with("csk_"));
    let listed = cli.ok(&["keys", "list"]);
    assert!(listed.contains("ci") && !listed.contains(lines[0]));
    let id = &lines[0][4..20];
    let rotated = cli.ok(&["keys", "rotate", id, "--overlap", "1h"]);
    assert_eq!(rotated.lines().count(), 1, "{rotated:?}");
    assert!(rotated.starts_with("csk_") && rotated.trim() != lines[0]);
    cli.ok(&["keys", "revoke", id]);
    assert!(cli.ok(&["keys", "list"]).contains("revoked"));
}

#[test]
fn import_then_find_masks_unless_a_purpose_is_given() {
    let cli = Cli::init();
    let f = cli.write("c.csv", CSV.as_bytes());
    let out = cli.import(&f, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let masked = cli.ok(&["contacts", "find", "--email", "JANE.planted@example.com"]);
    assert!(masked.contains("j•••@e•••.com"), "{masked}");
    assert!(!masked.contains("Janeplanted"));
    let clear = cli.ok(&[
        "contacts",
        "find",
        "--email",
        "jane.planted@example.com",
        "--purpose",
        "support ticket 42",
    ]);
    assert!(clear.contains("Janeplanted"));
    let tail = cli.ok(&["audit", "tail", "-n", "5"]);
    assert!(
        tail.contains("contact.read_unmasked") && tail.contains("support ticket 42"),
        "{tail}"
    );
}

#[test]
fn import_exit_codes_say_rejected_and_failed() {
    let cli = Cli::init();
    let f = cli.write("bad_rows.csv", b"email,first_name\nnot-an-email,Piet\nok@example.com,Ok\n");
    let out = cli.import(&f, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("row 2 column email"), "{err}");
    assert!(!err.contains("not-an-email"), "the report repeated the value: {err}");
    let broken = cli.write("broken.csv", b"email,email\na@example.com,b@example.com\n");
    let out = cli.import(&broken, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("appears twice"));
}

#[test]
fn formula_cells_are_exported_as_text() {
    let cli = Cli::init();
    let f = cli.write(
        "f.csv",
        b"email,first_name\nx@example.com,\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\n",
    );
    assert_eq!(cli.import(&f, &[]).status.code(), Some(0));
    let out = cli.path("out.csv");
    cli.ok(&[
        "export",
        "--list",
        "newsletter",
        "--purpose",
        "quarterly review",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""), "{text}");
    let mut r = csv::Reader::from_path(&out).unwrap();
    let row = r.records().next().unwrap().unwrap();
    assert_eq!(&row[3], "'=HYPERLINK(\"http://x\",\"y\")");
    let tail = cli.ok(&["audit", "tail", "-n", "5"]);
    assert!(tail.contains("export.finished") && tail.contains("quarterly review"));
}

#[test]
fn untouched_audit_log_verifies() {
    let cli = Cli::init();
    let f = cli.write("c.csv", CSV.as_bytes());
    cli.import(&f, &[]);
    let out = cli.ok(&["audit", "verify"]);
    assert!(out.starts_with("ok:"), "{out}");
}

fn tamper_and_verify(sql: &str) -> (i32, String) {
    let cli = Cli::init();
    let f = cli.write("c.csv", CSV.as_bytes());
    cli.import(&f, &[]);
    cli.ok(&["lists", "create", "extra"]);
    cli.ok(&["audit", "checkpoint"]);
    cli.db().execute_batch(sql).unwrap();
    let out = cli.run(&["audit", "verify"]);
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).to_string())
}

#[test]
fn editing_an_audit_row_is_reported_with_its_sequence() {
    let (code, out) = tamper_and_verify("UPDATE audit_events SET actor = 'someone' WHERE seq = 3");
    assert_eq!(code, 2);
    assert!(out.contains("first bad sequence 3"), "{out}");
}

#[test]
fn deleting_an_audit_row_is_reported_with_its_sequence() {
    let (code, out) = tamper_and_verify("DELETE FROM audit_events WHERE seq = 4");
    assert_eq!(code, 2);
    assert!(out.contains("first bad sequence 4"), "{out}");
}

#[test]
fn inserting_an_audit_row_is_reported_with_its_sequence() {
    let (code, out) = tamper_and_verify(
        "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3;
         UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1003;
         INSERT INTO audit_events SELECT workspace_id, 3, at, 'forged', action, target, purpose, ip_hash, outcome, details, prev_hash, hash FROM audit_events WHERE seq = 2;",
    );
    assert_eq!(code, 2);
    assert!(out.contains("first bad sequence 3"), "{out}");
}

#[test]
fn reordering_audit_rows_is_reported_with_its_sequence() {
    let (code, out) = tamper_and_verify(
        "UPDATE audit_events SET seq = -1 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = -1;",
    );
    assert_eq!(code, 2);
    assert!(out.contains("first bad sequence 2"), "{out}");
}

#[test]
fn a_rewritten_chain_is_caught_by_the_signed_checkpoint() {
    let cli = Cli::init();
    let f = cli.write("c.csv", CSV.as_bytes());
    cli.import(&f, &[]);
    cli.ok(&["audit", "checkpoint"]);
    // Edit an event and recompute every hash after it, as an attacker with the
    // database but without the signing key would.
    let db = cli.db();
    db.execute("UPDATE audit_events SET actor = 'someone' WHERE seq = 2", []).unwrap();
    let mut events: Vec<consentry::audit::AuditEvent> = {
        let mut s = db.prepare("SELECT workspace_id, seq, at, actor, action, target, purpose, ip_hash, outcome, details, prev_hash, hash FROM audit_events ORDER BY seq").unwrap();
        s.query_map([], |r| {
            Ok(consentry::audit::AuditEvent {
                workspace_id: r.get(0)?,
                seq: r.get(1)?,
                at: r.get(2)?,
                actor: r.get(3)?,
                action: r.get(4)?,
                target: r.get(5)?,
                purpose: r.get(6)?,
                ip_hash: r.get(7)?,
                outcome: r.get(8)?,
                details: r.get(9)?,
                prev_hash: r.get(10)?,
                hash: r.get(11)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let mut prev = consentry::audit::GENESIS_HASH.to_string();
    for e in &mut events {
        e.prev_hash = prev.clone();
        e.hash = e.compute_hash();
        prev = e.hash.clone();
        db.execute(
            "UPDATE audit_events SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![e.prev_hash, e.hash, e.seq],
        )
        .unwrap();
    }
    let out = cli.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("checkpoint"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_ciphertext_copied_to_another_contact_or_field_is_refused() {
    let cli = Cli::init();
    let f = cli.write("c.csv", CSV.as_bytes());
    cli.import(&f, &[]);
    let listed: serde_json::Value = serde_json::from_str(&cli.ok(&["contacts", "list"])).unwrap();
    let ids: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let id_bytes = |s: &str| uuid::Uuid::parse_str(s).unwrap().as_bytes().to_vec();
    let db = cli.db();
    // Another contact's first name into this contact's row.
    db.execute(
        "UPDATE contacts SET first_name_ct = (SELECT first_name_ct FROM contacts WHERE id = ?1) WHERE id = ?2",
        rusqlite::params![id_bytes(&ids[1]), id_bytes(&ids[0])],
    )
    .unwrap();
    let out = cli.run(&["contacts", "get", &ids[0], "--purpose", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("integrity"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("planted"));
    // This contact's last name into its own first-name field.
    db.execute(
        "UPDATE contacts SET first_name_ct = last_name_ct WHERE id = ?1",
        rusqlite::params![id_bytes(&ids[1])],
    )
    .unwrap();
    let out = cli.run(&["contacts", "get", &ids[1], "--purpose", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("first_name"));
    assert!(cli.ok(&["audit", "tail", "-n", "3"]).contains("integrity.violation"));
}

#[test]
fn no_planted_value_is_on_disk_or_in_logs() {
    let cli = Cli::init();
    let f = cli.write("c.csv", CSV.as_bytes());
    let mut logs = Vec::new();
    let out = cli
        .command()
        .args([
            "--log-format",
            "json",
            "import",
            f.to_str().unwrap(),
            "--list",
            "n",
            "--source",
            "form",
            "--region",
            "NL",
        ])
        .env("CONSENTRY_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    logs.extend(out.stderr);
    for args in [
        vec!["contacts", "find", "--email", "jane.planted@example.com", "--purpose", "support"],
        vec!["contacts", "list", "--purpose", "support"],
        vec!["contacts", "find", "--phone", "+31 6 12345678"],
    ] {
        let out = cli.command().args(&args).env("CONSENTRY_LOG", "debug").output().unwrap();
        assert!(out.status.success());
        logs.extend(out.stderr);
    }
    std::fs::remove_file(&f).unwrap();
    let planted = [
        "jane.planted",
        "kees.planted",
        "612345678",
        "687654321",
        "Janeplanted",
        "Doeplanted",
        "Keesplanted",
        "Jansenplanted",
    ];
    for file in files_under(&cli.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        for p in planted {
            assert!(!contains(&bytes, p), "{p} found in {}", file.display());
        }
    }
    for p in planted {
        assert!(!contains(&logs, p), "{p} found in the logs");
    }
}

#[test]
fn keys_expire_after_90_days_unless_told_and_never_beyond_the_configured_maximum() {
    let cli = Cli::init();
    cli.ok(&["keys", "create", "--name", "plain", "--scopes", "viewer"]);
    let listed = cli.ok(&["keys", "list"]);
    let row = listed.lines().find(|l| l.contains("\tplain\t")).unwrap();
    let in_90_days = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let date = format!(
        "{:04}-{:02}-{:02}",
        in_90_days.year(),
        u8::from(in_90_days.month()),
        in_90_days.day()
    );
    assert!(row.contains(&format!("expires {date}")), "{row}");
    let out = cli.run(&["keys", "create", "--name", "long", "--scopes", "viewer", "--expires", "400d"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 365 days") && err.contains("api_key_max_days"), "{err}");
    let config = cli.data_dir().join("consentry.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("api_key_max_days = 365", "api_key_max_days = 30");
    std::fs::write(&config, text).unwrap();
    let out = cli.run(&["keys", "create", "--name", "month", "--scopes", "viewer", "--expires", "60d"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 30 days"));
    cli.ok(&["keys", "create", "--name", "month", "--scopes", "viewer", "--expires", "30d"]);
}

#[test]
fn a_database_pool_size_out_of_range_is_refused_with_the_setting_named() {
    let cli = Cli::init();
    let config = cli.data_dir().join("consentry.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("database_pool_size = 16"), "{text}");
    std::fs::write(&config, text.replace("database_pool_size = 16", "database_pool_size = 0")).unwrap();
    let out = cli.run(&["keys", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database_pool_size is 0; give 1 to 1024"), "{err}");
    std::fs::write(&config, text).unwrap();
    let out = cli
        .command()
        .env("CONSENTRY_DATABASE_POOL_SIZE", "many")
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CONSENTRY_DATABASE_POOL_SIZE \"many\" is not a whole number"), "{err}");
    cli.ok(&["keys", "list"]);
}
