//! The import service over a real SQLite store: counts, deduplication, consent
//! evidence, suppression, encodings, and bad input that must leave nothing behind.

use consentry::access::{Principal, ReadMode};
use consentry::clock::SystemClock;
use consentry::crypto::MasterKey;
use consentry::domain::{Channel, Purpose, Region};
use consentry::import::service::{ImportOptions, ImportReport, OnExisting, SourceOpener};
use consentry::store::sqlite::SqliteStore;
use consentry::vault::{Vault, VaultError};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

struct Harness {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    vault: Vault,
    ws: String,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("consentry.db");
    let store = SqliteStore::open(&db).unwrap();
    let vault = Vault::new(Arc::new(store), MasterKey::generate().unwrap(), Arc::new(SystemClock));
    let ws = vault.create_workspace("test").await.unwrap().id;
    Harness { _dir: dir, db, vault, ws }
}

fn opts() -> ImportOptions {
    ImportOptions {
        list: "newsletter".into(),
        source: Some("signup form".into()),
        channels: vec![Channel::Email],
        region: Some(Region::parse("NL").unwrap()),
        on_existing: OnExisting::Merge,
        dry_run: false,
        create_attributes: false,
        segmentable: vec![],
        purpose: Purpose::marketing(),
    }
}

fn bytes(data: Vec<u8>) -> SourceOpener {
    let data = Arc::new(data);
    Arc::new(move || Ok(Box::new(std::io::Cursor::new(data.as_ref().clone())) as Box<dyn std::io::Read + Send>))
}

impl Harness {
    fn owner(&self) -> Principal {
        Principal::operator(&self.ws)
    }

    async fn import(&self, data: &[u8], o: ImportOptions) -> Result<ImportReport, VaultError> {
        self.vault
            .import_csv(&self.owner(), bytes(data.to_vec()), o, None, Arc::new(AtomicBool::new(false)))
            .await
    }

    fn count(&self, sql: &str) -> i64 {
        rusqlite::Connection::open(&self.db)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }
}

#[tokio::test]
async fn import_creates_contacts_with_consent_evidence_and_membership() {
    let h = harness().await;
    let r = h
        .import(
            b"email,phone,first_name\na@example.com,0612345678,Ann\nb@example.com,,Bob\n",
            opts(),
        )
        .await
        .unwrap();
    assert_eq!((r.counts.read, r.counts.created, r.counts.rejected), (2, 2, 0));
    let view = h
        .vault
        .lookup_contact(
            &h.owner(),
            Some("A@Example.com"),
            None,
            None,
            &ReadMode::Unmasked { purpose: "t".into() },
        )
        .await
        .unwrap();
    assert_eq!(view.phone.as_deref(), Some("+31612345678"));
    let ledger = h.vault.consent_ledger(&h.owner(), view.id, &ReadMode::Masked).await.unwrap();
    assert_eq!(ledger.events.len(), 1);
    let e = &ledger.events[0];
    assert_eq!(
        (e.channel.as_str(), e.method.as_str(), e.source.as_str()),
        ("email", "import", "signup form")
    );
    assert_eq!(e.evidence["import"], serde_json::json!(r.import_id));
    assert_eq!(e.evidence["file_sha256"], serde_json::json!(r.file_sha256));
    assert_eq!(h.count("SELECT COUNT(*) FROM list_members"), 2);
}

#[tokio::test]
async fn reimporting_the_same_file_changes_nothing() {
    let h = harness().await;
    let data = b"email,first_name\na@example.com,Ann\nb@example.com,Bob\n";
    h.import(data, opts()).await.unwrap();
    let again = h.import(data, opts()).await.unwrap();
    assert_eq!((again.counts.read, again.counts.created, again.counts.unchanged), (2, 0, 2));
    assert_eq!(h.count("SELECT COUNT(*) FROM contacts"), 2);
    assert_eq!(h.count("SELECT COUNT(*) FROM consent_events"), 2);
}

#[tokio::test]
async fn duplicates_inside_a_file_become_one_contact() {
    let h = harness().await;
    let r = h
        .import(b"email,first_name\na@example.com,\nA@EXAMPLE.COM,Ann\n", opts())
        .await
        .unwrap();
    assert_eq!((r.counts.created, r.counts.updated, r.counts.unchanged), (1, 1, 0));
    let v = h
        .vault
        .lookup_contact(
            &h.owner(),
            Some("a@example.com"),
            None,
            None,
            &ReadMode::Unmasked { purpose: "t".into() },
        )
        .await
        .unwrap();
    assert_eq!(v.first_name.as_deref(), Some("Ann"));
}

#[tokio::test]
async fn merge_fills_empty_fields_and_update_overwrites() {
    let h = harness().await;
    h.import(b"email,first_name\na@example.com,Ann\n", opts()).await.unwrap();
    let r = h
        .import(b"email,first_name,last_name\na@example.com,Anna,Smith\n", opts())
        .await
        .unwrap();
    assert_eq!(r.counts.updated, 1);
    let un = ReadMode::Unmasked { purpose: "t".into() };
    let v = h
        .vault
        .lookup_contact(&h.owner(), Some("a@example.com"), None, None, &un)
        .await
        .unwrap();
    assert_eq!((v.first_name.as_deref(), v.last_name.as_deref()), (Some("Ann"), Some("Smith")));
    let r = h
        .import(
            b"email,first_name\na@example.com,Anna\n",
            ImportOptions {
                on_existing: OnExisting::Update,
                ..opts()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.counts.updated, 1);
    let v = h
        .vault
        .lookup_contact(&h.owner(), Some("a@example.com"), None, None, &un)
        .await
        .unwrap();
    assert_eq!(v.first_name.as_deref(), Some("Anna"));
}

#[tokio::test]
async fn rows_without_a_consent_source_are_rejected() {
    let h = harness().await;
    let o = ImportOptions { source: None, ..opts() };
    let r = h
        .import(b"email,gdpr_source\na@example.com,event stand\nb@example.com,\n", o)
        .await
        .unwrap();
    assert_eq!((r.counts.created, r.counts.rejected), (1, 1));
    assert_eq!(r.rejections[0].row, 3);
    assert_eq!(r.rejections[0].column, "gdpr_source");
    let err = h
        .import(b"email\na@example.com\n", ImportOptions { source: None, ..opts() })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("consent source"), "{err}");
}

#[tokio::test]
async fn suppressed_addresses_are_not_resubscribed() {
    let h = harness().await;
    h.import(b"email\na@example.com\n", opts()).await.unwrap();
    let v = h
        .vault
        .lookup_contact(&h.owner(), Some("a@example.com"), None, None, &ReadMode::Masked)
        .await
        .unwrap();
    let withdraw: consentry::vault::consents::ConsentInput = serde_json::from_value(
        serde_json::json!({"channel": "email", "action": "withdrawn", "method": "unsubscribe_link", "source": "unsubscribe link"}),
    )
    .unwrap();
    h.vault.record_consent(&h.owner(), v.id, withdraw).await.unwrap();
    let r = h.import(b"email\na@example.com\n", opts()).await.unwrap();
    assert_eq!((r.counts.suppressed, r.counts.updated, r.counts.created), (1, 0, 0));
    let ledger = h.vault.consent_ledger(&h.owner(), v.id, &ReadMode::Masked).await.unwrap();
    assert_eq!(ledger.state[0].action, "withdrawn");
}

#[tokio::test]
async fn rejection_reports_never_repeat_the_value() {
    let h = harness().await;
    let r = h
        .import(b"email,phone\nsecret-value-not-email,\nok@example.com,+31 6 99\n", opts())
        .await
        .unwrap();
    assert_eq!(r.counts.rejected, 2);
    let text = serde_json::to_string(&r.rejections).unwrap();
    assert!(!text.contains("secret-value") && !text.contains("+31 6 99"), "{text}");
    assert_eq!(
        r.rejections.iter().map(|x| (x.row, x.column.as_str())).collect::<Vec<_>>(),
        vec![(2, "email"), (3, "phone")]
    );
}

#[tokio::test]
async fn encodings_and_delimiters_are_detected() {
    let h = harness().await;
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            "email;first_name\r\nu16@example.com;Zoë\r\n"
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes()),
        )
        .collect();
    assert_eq!(h.import(&utf16, opts()).await.unwrap().counts.created, 1);
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode("email\tfirst_name\ncp@example.com\tRenée Müller\n");
    assert_eq!(h.import(&cp1252, opts()).await.unwrap().counts.created, 1);
    let bom8 = b"\xEF\xBB\xBFemail,first_name\nbom@example.com,J\xC3\xBCrgen\n";
    assert_eq!(h.import(bom8, opts()).await.unwrap().counts.created, 1);
    let un = ReadMode::Unmasked { purpose: "t".into() };
    for (email, name) in [
        ("u16@example.com", "Zoë"),
        ("cp@example.com", "Renée Müller"),
        ("bom@example.com", "Jürgen"),
    ] {
        let v = h.vault.lookup_contact(&h.owner(), Some(email), None, None, &un).await.unwrap();
        assert_eq!(v.first_name.as_deref(), Some(name));
    }
}

#[tokio::test]
async fn unknown_columns_are_named_unless_attributes_may_be_created() {
    let h = harness().await;
    let data = b"email,loyalty_tier,birthday\na@example.com,gold,1990-01-01\n";
    let err = h.import(data, opts()).await.unwrap_err().to_string();
    assert!(err.contains("\"loyalty_tier\"") && err.contains("\"birthday\""), "{err}");
    let o = ImportOptions {
        create_attributes: true,
        segmentable: vec!["loyalty_tier".into()],
        ..opts()
    };
    h.import(data, o).await.unwrap();
    let raw: String = rusqlite::Connection::open(&h.db)
        .unwrap()
        .query_row("SELECT segment_attributes FROM contacts", [], |r| r.get(0))
        .unwrap();
    assert!(raw.contains("gold") && !raw.contains("1990"), "{raw}");
}

#[tokio::test]
async fn bad_files_get_a_clear_error_and_leave_nothing() {
    let h = harness().await;
    let mut wide = (0..10_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
    wide.push('\n');
    let mut huge = b"email,first_name\na@example.com,\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 100 * 1024 * 1024));
    huge.extend(b"\"\n");
    let junk: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unbalanced quotes",
            b"email,first_name\na@example.com,\"Ann\nb@example.com,Bob\n".to_vec(),
            "not closed",
        ),
        (
            "wrong encoding",
            [
                b"email,first_name\n".to_vec(),
                b"a@example.com,ok\n".repeat(5000),
                b"b@example.com,\xff\xfe\xfa\n".to_vec(),
            ]
            .concat(),
            "UTF-8",
        ),
        ("10,000 columns", wide.into_bytes(), "10000 columns"),
        ("100 MB field", huge, "longer than"),
        ("binary junk", junk, ""),
        ("empty file", Vec::new(), "empty"),
        ("header only", b"email,first_name\n".to_vec(), "no data rows"),
        (
            "duplicate headers",
            b"email,Email\na@example.com,b@example.com\n".to_vec(),
            "appears twice",
        ),
    ];
    for (name, data, expect) in cases {
        let err = h.import(&data, opts()).await.expect_err(name).to_string();
        assert!(err.contains(expect), "{name}: {err}");
        assert!(!err.contains("a@example.com"), "{name}: error repeats data: {err}");
        assert_eq!(h.count("SELECT COUNT(*) FROM contacts"), 0, "{name} left contacts");
        assert_eq!(h.count("SELECT COUNT(*) FROM imports"), 0, "{name} left an import job");
    }
}

#[tokio::test]
async fn dry_run_counts_without_writing() {
    let h = harness().await;
    let r = h
        .import(
            b"email\na@example.com\nb@example.com\na@example.com\nbad\n",
            ImportOptions { dry_run: true, ..opts() },
        )
        .await
        .unwrap();
    assert_eq!(
        (r.counts.read, r.counts.created, r.counts.unchanged, r.counts.rejected),
        (4, 2, 1, 1)
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM contacts"), 0);
    assert_eq!(h.count("SELECT COUNT(*) FROM lists"), 0);
}

#[tokio::test]
async fn the_same_email_in_two_workspaces_has_unrelated_blind_indexes() {
    let h = harness().await;
    let other = h.vault.create_workspace("other").await.unwrap().id;
    let data = b"email\nsame@example.com\n".to_vec();
    h.import(&data, opts()).await.unwrap();
    h.vault
        .import_csv(
            &Principal::operator(&other),
            bytes(data),
            opts(),
            None,
            Arc::new(AtomicBool::new(false)),
        )
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&h.db).unwrap();
    let rows: Vec<(String, Vec<u8>)> = conn
        .prepare("SELECT workspace_id, email_bidx FROM contacts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].0, rows[1].0);
    assert_ne!(rows[0].1, rows[1].1);
    // And each workspace finds only its own contact.
    let a = h
        .vault
        .lookup_contact(&h.owner(), Some("same@example.com"), None, None, &ReadMode::Masked)
        .await
        .unwrap();
    let b = h
        .vault
        .lookup_contact(
            &Principal::operator(&other),
            Some("same@example.com"),
            None,
            None,
            &ReadMode::Masked,
        )
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
}

/// A large import builds an identifier filter and skips the look-ups it rules out
/// (`store::identifiers`); on both backends it still merges rows that repeat an
/// address of an earlier batch or of an earlier import.
#[tokio::test]
async fn large_imports_merge_addresses_of_earlier_batches_and_imports() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn consentry::store::Store> = Arc::new(SqliteStore::open(&dir.path().join("consentry.db")).unwrap());
    let mut stores = vec![("sqlite", sqlite, None)];
    if let Some(db) = crate::pg::TestDatabase::create().await {
        let pg = consentry::store::postgres::PostgresStore::connect(&db.url).await.unwrap();
        stores.push(("postgres", Arc::new(pg), Some(db)));
    }
    for (backend, store, _db) in stores {
        let vault = Arc::new(Vault::new(store, MasterKey::generate().unwrap(), Arc::new(SystemClock)));
        let ws = vault.create_workspace("test").await.unwrap().id;
        let owner = Principal::operator(&ws);
        let import = |data: String| {
            let (vault, owner) = (vault.clone(), owner.clone());
            async move {
                vault
                    .import_csv(&owner, bytes(data.into_bytes()), opts(), None, Arc::new(AtomicBool::new(false)))
                    .await
                    .unwrap()
            }
        };
        // Rows 0-999 have no phone; rows 11,000-11,999 repeat their addresses,
        // five batches later, with a phone: merged, not created.
        let mut file = String::from("email,phone\n");
        for i in 0..12_000u32 {
            let n = if i >= 11_000 { i - 11_000 } else { i };
            let phone = if i < 1_000 { String::new() } else { format!("+3162{i:07}") };
            file.push_str(&format!("p{n}@example.com,{phone}\n"));
        }
        let first = import(file).await;
        let c = first.counts;
        assert_eq!((c.read, c.created, c.updated, c.rejected), (12_000, 11_000, 1_000, 0), "{backend}");
        let found = vault
            .lookup_contact(
                &owner,
                None,
                Some("+31620011005"),
                None,
                &ReadMode::Unmasked { purpose: "t".into() },
            )
            .await
            .unwrap();
        assert_eq!(found.email.as_deref(), Some("p5@example.com"), "{backend}");

        // A second large import, of addresses the first one created.
        let mut again = String::from("email,phone\n");
        for i in 0..11_000u32 {
            again.push_str(&format!("p{i}@example.com,\n"));
        }
        again.push_str("new@example.com,\n");
        let second = import(again).await;
        let c = second.counts;
        assert_eq!((c.created, c.updated, c.unchanged), (1, 0, 11_000), "{backend}");
    }
}
