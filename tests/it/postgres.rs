//! consentry on PostgreSQL with the real binary: migrations racing at start, two
//! servers sharing one database, index use of the lookup, and no planted value in
//! the cluster's files or log. Each test creates and drops its own database (see
//! `pg.rs`); without `CONSENTRY_TEST_POSTGRES_URL` they skip, in CI they fail.

use crate::pg::TestDatabase;
use crate::support::{contains, files_under};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};
use tokio_postgres::NoTls;

fn consentry(data_dir: &Path, db: &TestDatabase, master_hex: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_consentry"));
    c.arg("--data-dir")
        .arg(data_dir)
        .arg("--database-url")
        .arg(&db.url)
        .env("CONSENTRY_MASTER_KEY", master_hex)
        .env_remove("CONSENTRY_DATA_DIR")
        .env_remove("CONSENTRY_DATABASE_URL");
    c
}

fn master_hex() -> String {
    consentry::crypto::MasterKey::generate().unwrap().to_hex().to_string()
}

async fn admin(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Kills a server if the test fails before stopping it.
struct Server {
    child: Option<std::process::Child>,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn start_server(data_dir: &Path, db: &TestDatabase, master: &str, log: PathBuf) -> Server {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = consentry(data_dir, db, master)
        .args(["--log-format", "json", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let server = Server {
        child: Some(child),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server on {} did not become ready", server.base);
}

fn csv(from: usize, to: usize) -> String {
    let mut s = String::from("email,first_name\n");
    for i in from..to {
        s.push_str(&format!("shared.{i}@example.com,Person{i}\n"));
    }
    s
}

/// Imports `body` into the list "shared" over HTTP; the job's report.
async fn import_csv(client: &reqwest::Client, base: &str, owner: &str, body: String) -> serde_json::Value {
    let r = client
        .post(format!("{base}/api/v1/imports?list=shared&source=signup%20form"))
        .bearer_auth(owner)
        .header("Content-Type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{report}");
    report
}

/// Starts `consentry ARGS` in every data directory at once; their outputs.
fn run_together(
    dirs: &[tempfile::TempDir],
    db: &TestDatabase,
    master: &str,
    args: impl Fn(&Path) -> Vec<String>,
) -> Vec<std::process::Output> {
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            consentry(d.path(), db, master)
                .args(args(d.path()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

#[tokio::test]
async fn servers_starting_together_apply_the_migrations_once() {
    let Some(db) = TestDatabase::create().await else { return };
    let master = master_hex();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    for out in run_together(&dirs, &db, &master, |_| vec!["migrate".into()]) {
        assert!(out.status.success(), "migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("postgres schema version 12; connection "), "{stdout}");
    }
    let client = admin(&db).await;
    let applied: i64 = client
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, 12, "each migration once");
}

/// `consentry migrate` against `url`: its exit status, output and errors.
fn migrate_with(dir: &Path, url: &str, master: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--database-url")
        .arg(url)
        .arg("migrate")
        .env("CONSENTRY_MASTER_KEY", master)
        .env_remove("CONSENTRY_DATA_DIR")
        .env_remove("CONSENTRY_DATABASE_URL")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The server's own certificate (Debian's `ssl-cert` package: CN and SAN
/// localhost), used as the trusted root.
const SERVER_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

#[tokio::test]
async fn tls_to_postgres_follows_sslmode() {
    let Some(db) = TestDatabase::create().await else { return };
    let ssl_on: String = admin(&db).await.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl_on != "on" || !Path::new(SERVER_CERT).exists() {
        assert!(
            std::env::var("CONSENTRY_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "the test PostgreSQL server must have ssl = on with {SERVER_CERT} (Debian's default)"
        );
        eprintln!("skipped: the test PostgreSQL server has no TLS (ssl = {ssl_on})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let master = master_hex();
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = |opts: &str| format!("{}{sep}{opts}", db.url);
    let by_name = |opts: &str| url(opts).replacen("127.0.0.1", "localhost", 1);
    assert!(db.url.contains("127.0.0.1"), "the test URL names the server by address: {}", db.url);

    let (ok, out) = migrate_with(dir.path(), &db.url, &master);
    assert!(ok && out.contains("connection unencrypted"), "{out}");
    let (ok, out) = migrate_with(dir.path(), &url("sslmode=require"), &master);
    assert!(
        ok && out.contains("connection TLSv1.") && out.contains("certificate not checked"),
        "{out}"
    );
    // verify-full: the certificate must lead to the given root and name the host.
    let (ok, out) = migrate_with(
        dir.path(),
        &by_name(&format!("sslmode=verify-full&sslrootcert={SERVER_CERT}")),
        &master,
    );
    assert!(
        ok && out.contains("connection TLSv1.") && out.contains("host name checked"),
        "{out}"
    );
    let (ok, out) = migrate_with(dir.path(), &url(&format!("sslmode=verify-full&sslrootcert={SERVER_CERT}")), &master);
    assert!(
        !ok && out.contains("certificate"),
        "an address the certificate does not name is refused: {out}"
    );
    // verify-ca checks the chain only.
    let (ok, out) = migrate_with(dir.path(), &url(&format!("sslmode=verify-ca&sslrootcert={SERVER_CERT}")), &master);
    assert!(ok && out.contains("certificate chain checked"), "{out}");
    // A root that did not sign the server's certificate: refused, in both modes.
    let other = dir.path().join("other-root.pem");
    let ca_bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let first_ca = ca_bundle.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap_or_default();
    if !first_ca.is_empty() {
        std::fs::write(&other, first_ca).unwrap();
        for mode in ["verify-ca", "verify-full"] {
            let (ok, out) = migrate_with(
                dir.path(),
                &by_name(&format!("sslmode={mode}&sslrootcert={}", other.display())),
                &master,
            );
            assert!(!ok && out.contains("certificate"), "{mode} with a foreign root: {out}");
        }
    }
    let (ok, out) = migrate_with(dir.path(), &url("sslmode=verify-full&sslrootcert=/nonexistent/root.pem"), &master);
    assert!(!ok && out.contains("/nonexistent/root.pem"), "{out}");
}

#[tokio::test]
async fn servers_set_up_an_empty_database_once_when_they_start_together() {
    let Some(db) = TestDatabase::create().await else { return };
    let master = master_hex();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let init = |d: &Path| vec!["init".into(), "--owner-key-file".into(), d.join("owner.key").display().to_string()];
    for out in run_together(&dirs, &db, &master, init) {
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let keys = dirs.iter().filter(|d| d.path().join("owner.key").exists()).count();
    assert_eq!(keys, 1, "exactly one start created the owner key");
    let pg = admin(&db).await;
    let workspaces: i64 = pg.query_one("SELECT COUNT(*) FROM workspaces", &[]).await.unwrap().get(0);
    let api_keys: i64 = pg.query_one("SELECT COUNT(*) FROM api_keys", &[]).await.unwrap().get(0);
    assert_eq!((workspaces, api_keys), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_session_or_a_narrowed_allowlist_is_refused_by_every_server_at_once() {
    let Some(db) = TestDatabase::create().await else { return };
    let master = master_hex();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key_file = dir_a.path().join("owner.key");
    let out = consentry(dir_a.path(), &db, &master)
        .args(["init", "--owner-key-file", key_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    let owner = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    let a = start_server(dir_a.path(), &db, &master, dir_a.path().join("server.log")).await;
    let b = start_server(dir_b.path(), &db, &master, dir_b.path().join("server.log")).await;
    let client = reqwest::Client::new();
    let invited: serde_json::Value = client
        .post(format!("{}/api/v1/users", a.base))
        .bearer_auth(&owner)
        .json(&serde_json::json!({ "email": "wessel@example.com", "role": "marketer" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = invited["user"]["id"].as_str().unwrap().to_string();
    let first = "vlinder kapstok zonnebril 7";
    let r = client
        .post(format!("{}/api/v1/invitations/accept", b.base))
        .json(&serde_json::json!({ "token": invited["token"], "password": first }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sign_in = |base: String, password: &'static str| {
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{base}/api/v1/auth/login"))
                .json(&serde_json::json!({ "email": "wessel@example.com", "password": password }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
            let csrf = r.json::<serde_json::Value>().await.unwrap()["csrf_token"]
                .as_str()
                .unwrap()
                .to_string();
            (cookie, csrf)
        }
    };
    let lists = |base: String, cookie: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{base}/api/v1/lists"))
                .header("Cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    // A password change on A ends the session on B at once.
    let (cookie, csrf) = sign_in(a.base.clone(), first).await;
    assert_eq!(lists(b.base.clone(), cookie.clone()).await, 200);
    let second = "zeilboot tulpenveld molenwiek 4";
    let r = client
        .post(format!("{}/api/v1/auth/password", a.base))
        .header("Cookie", &cookie)
        .header("X-Consentry-CSRF", &csrf)
        .json(&serde_json::json!({ "current_password": first, "new_password": second }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(lists(b.base.clone(), cookie).await, 401, "after a password change");

    // A role change on B ends the session on A at once.
    let (cookie, _) = sign_in(b.base.clone(), second).await;
    assert_eq!(lists(a.base.clone(), cookie.clone()).await, 200);
    let r = client
        .put(format!("{}/api/v1/users/{user}/role", b.base))
        .bearer_auth(&owner)
        .json(&serde_json::json!({ "role": "viewer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lists(a.base.clone(), cookie).await, 401, "after a role change");

    // A workspace allowlist set on A shuts the session out on B at once (and
    // clearing it from the command line lets it back in).
    let (cookie, _) = sign_in(a.base.clone(), second).await;
    let r = client
        .put(format!("{}/api/v1/security/allowlist", a.base))
        .bearer_auth(&owner)
        .json(&serde_json::json!({ "allowlist": ["192.0.2.0/24"], "confirm_lockout": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lists(b.base.clone(), cookie.clone()).await, 403);
    let out = consentry(dir_b.path(), &db, &master)
        .args(["security", "allowlist", "clear"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lists(b.base.clone(), cookie.clone()).await, 200);

    // Disabling on B ends the session on A at once.
    let r = client
        .post(format!("{}/api/v1/users/{user}/disable", b.base))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lists(a.base.clone(), cookie).await, 401, "after a disable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_share_contacts_keys_and_one_audit_chain() {
    let Some(db) = TestDatabase::create().await else { return };
    let master = master_hex();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key_file = dir_a.path().join("owner.key");
    let out = consentry(dir_a.path(), &db, &master)
        .args(["init", "--owner-key-file", key_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    let owner = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    let a = start_server(dir_a.path(), &db, &master, dir_a.path().join("server.log")).await;
    let b = start_server(dir_b.path(), &db, &master, dir_b.path().join("server.log")).await;
    let client = reqwest::Client::new();

    // Imports on A: four files of 600 rows that overlap pairwise by 100 rows, all
    // at once; lookups and key creation on B meanwhile.
    let imports = (0..4).map(|i| {
        let (client, base, owner) = (client.clone(), a.base.clone(), owner.clone());
        tokio::spawn(async move { import_csv(&client, &base, &owner, csv(i * 500, i * 500 + 600)).await })
    });
    let imports: Vec<_> = imports.collect();
    let mut new_keys = Vec::new();
    for i in 0..40 {
        let r = client
            .post(format!("{}/api/v1/contacts/lookup", b.base))
            .bearer_auth(&owner)
            .json(&serde_json::json!({ "email": format!("shared.{}@example.com", i * 50) }))
            .send()
            .await
            .unwrap();
        assert!(r.status() == 200 || r.status() == 404, "lookup on B: {}", r.status());
        if i % 10 == 0 {
            let r = client
                .post(format!("{}/api/v1/keys", b.base))
                .bearer_auth(&owner)
                .json(&serde_json::json!({ "name": format!("k{i}"), "scopes": ["viewer"] }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let created: serde_json::Value = r.json().await.unwrap();
            new_keys.push(created["token"].as_str().unwrap().to_string());
        }
    }
    let mut created = 0;
    for handle in imports {
        let report = handle.await.unwrap();
        assert_eq!(report["status"], "finished", "{report}");
        created += report["counts"]["created"].as_u64().unwrap();
    }
    // 2,100 distinct addresses in all; each created exactly once, by one import.
    assert_eq!(created, 2_100);
    let pg = admin(&db).await;
    let contacts: i64 = pg.query_one("SELECT COUNT(*) FROM contacts", &[]).await.unwrap().get(0);
    assert_eq!(contacts, 2_100);
    let members: i64 = pg.query_one("SELECT COUNT(*) FROM list_members", &[]).await.unwrap().get(0);
    assert_eq!(members, 2_100);

    // Every contact is found through either server.
    for base in [&a.base, &b.base] {
        let r = client
            .post(format!("{base}/api/v1/contacts/lookup"))
            .bearer_auth(&owner)
            .json(&serde_json::json!({ "email": "shared.2099@example.com" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // A key made on B works on A; revoked on A, it is refused by B at once.
    let key = new_keys.pop().unwrap();
    let r = client
        .get(format!("{}/api/v1/lists", a.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = key.split('_').nth(1).unwrap();
    let r = client
        .delete(format!("{}/api/v1/keys/{id}", a.base))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .get(format!("{}/api/v1/lists", b.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    drop(a);
    drop(b);
    // One chain, no fork, no gap, no duplicate sequence.
    let (n, max, distinct): (i64, i64, i64) = {
        let r = pg
            .query_one("SELECT COUNT(*), MAX(seq), COUNT(DISTINCT seq) FROM audit_events", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((n, distinct), (max, max));
    let out = consentry(dir_a.path(), &db, &master).args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `database_pool_size` bounds the server's connections, and one connection is
/// enough for imports, their look-ups ahead, unmasked reads and the audit
/// group commit at once (no store call waits for a second connection while it
/// holds one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_pooled_connection_serves_imports_and_audited_reads_together() {
    let Some(db) = TestDatabase::create().await else { return };
    let master = master_hex();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("owner.key");
    let out = consentry(dir.path(), &db, &master)
        .args(["init", "--owner-key-file", key_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    let config = dir.path().join("consentry.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("database_pool_size = 16"), "{text}");
    std::fs::write(&config, text.replace("database_pool_size = 16", "database_pool_size = 1")).unwrap();
    let owner = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    let server = start_server(dir.path(), &db, &master, dir.path().join("server.log")).await;
    let client = reqwest::Client::new();
    let imports: Vec<_> = (0..2)
        .map(|i| {
            let (client, base, owner) = (client.clone(), server.base.clone(), owner.clone());
            tokio::spawn(async move { import_csv(&client, &base, &owner, csv(i * 4_000, i * 4_000 + 5_000)).await })
        })
        .collect();
    let lookups: Vec<_> = (0..32)
        .map(|i| {
            let (client, base, owner) = (client.clone(), server.base.clone(), owner.clone());
            tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/api/v1/contacts/lookup"))
                    .bearer_auth(&owner)
                    .header("X-Consentry-Purpose", "support ticket")
                    .json(&serde_json::json!({ "email": format!("shared.{}@example.com", i * 100) }))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        let mut created = 0;
        for handle in imports {
            let report = handle.await.unwrap();
            assert_eq!(report["status"], "finished", "{report}");
            created += report["counts"]["created"].as_u64().unwrap();
        }
        for handle in lookups {
            let status = handle.await.unwrap();
            assert!(status == 200 || status == 404, "lookup: {status}");
        }
        created
    })
    .await
    .expect("imports and lookups on one pooled connection did not finish in 120 s");
    // 9,000 distinct addresses, each created once.
    assert_eq!(finished, 9_000);
    let pg = admin(&db).await;
    let opened: i64 = pg
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(opened, 1, "the server holds {opened} connections with database_pool_size = 1");
    drop(server);
    let out = consentry(dir.path(), &db, &master).args(["audit", "verify"]).output().unwrap();
    assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn the_lookup_by_blind_index_uses_the_unique_index() {
    let Some(db) = TestDatabase::create().await else { return };
    let store = consentry::store::postgres::PostgresStore::connect(&db.url).await.unwrap();
    drop(store);
    let pg = admin(&db).await;
    pg.batch_execute(
        "INSERT INTO contacts (id, workspace_id, email_bidx, contact_key, email_ct, created_at, updated_at)
         SELECT uuid_send(gen_random_uuid()), 'ws', sha256(i::text::bytea), '\\x00', '\\x00', 0, 0 FROM generate_series(1, 20000) i;
         ANALYZE contacts;",
    )
    .await
    .unwrap();
    let plan: Vec<String> = pg
        .query(
            "EXPLAIN SELECT c.id FROM contacts c WHERE c.workspace_id = 'ws' AND c.email_bidx = sha256('77'::bytea) AND c.deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("contacts_email"), "the lookup does not use the unique index:\n{plan}");
}

/// The cluster's data directory and the files of this test's database, when this
/// process may read them.
async fn database_files(db: &TestDatabase) -> Option<(PathBuf, Vec<PathBuf>)> {
    let pg = admin(db).await;
    pg.batch_execute("CHECKPOINT").await.unwrap();
    let dir: String = pg.query_one("SHOW data_directory", &[]).await.unwrap().get(0);
    let oid: u32 = pg
        .query_one("SELECT oid FROM pg_database WHERE datname = current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let base = PathBuf::from(&dir).join("base").join(oid.to_string());
    if std::fs::read_dir(&base).is_err() {
        if std::env::var("CONSENTRY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("cannot read PostgreSQL's data directory {dir}; CI runs as root and must be able to");
        }
        eprintln!("skipped: this user cannot read PostgreSQL's data directory {dir}");
        return None;
    }
    Some((PathBuf::from(dir), files_under(&base)))
}

#[tokio::test]
async fn planted_values_never_reach_postgres_files_or_its_log() {
    let Some(db) = TestDatabase::create().await else { return };
    let started = SystemTime::now() - Duration::from_secs(2);
    let master = master_hex();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("owner.key");
    let out = consentry(dir.path(), &db, &master)
        .args(["init", "--owner-key-file", key_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
    let planted = [
        "Pgzeldaplanted",
        "pgzelda.planted@example.com",
        "Pgwildlingplanted",
        "+31612398711",
        "612398711",
    ];
    let file = dir.path().join("planted.csv");
    std::fs::write(
        &file,
        "email,phone,first_name,last_name,consent_ip\npgzelda.planted@example.com,0612398711,Pgzeldaplanted,Pgwildlingplanted,192.0.2.7\n",
    )
    .unwrap();
    let out = consentry(dir.path(), &db, &master)
        .args([
            "import",
            file.to_str().unwrap(),
            "--list",
            "planted",
            "--source",
            "web form",
            "--region",
            "NL",
            "--channels",
            "email,sms",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    let out = consentry(dir.path(), &db, &master)
        .args([
            "contacts",
            "find",
            "--email",
            "pgzelda.planted@example.com",
            "--purpose",
            "planted-value test",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Pgzeldaplanted"),
        "the contact reads back"
    );

    let Some((data_dir, mut files)) = database_files(&db).await else {
        return;
    };
    // WAL written during this test (older segments belong to other work).
    files.extend(
        files_under(&data_dir.join("pg_wal"))
            .into_iter()
            .filter(|p| std::fs::metadata(p).and_then(|m| m.modified()).is_ok_and(|t| t >= started)),
    );
    for log_dir in [data_dir.join("log"), PathBuf::from("/var/log/postgresql")] {
        if log_dir.is_dir() {
            files.extend(files_under(&log_dir));
        }
    }
    assert!(files.len() > 10, "the scan found the database's files");
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else { continue };
        for value in planted {
            assert!(!contains(&bytes, value), "{value} is in clear in {}", f.display());
        }
    }
}

#[tokio::test]
async fn migrate_store_moves_an_instance_without_decrypting_and_refuses_a_full_target() {
    let Some(db) = TestDatabase::create().await else { return };
    let cli = crate::support::Cli::init();
    let file = cli.write(
        "c.csv",
        b"email,phone,first_name,last_name,consent_ip\njane@example.com,0612345678,Jane,Doe,192.0.2.1\nbob@example.com,,Bob,,\n",
    );
    cli.ok(&[
        "import",
        file.to_str().unwrap(),
        "--list",
        "nl",
        "--source",
        "form",
        "--channels",
        "email,sms",
        "--region",
        "NL",
    ]);
    cli.ok(&[
        "export",
        "--list",
        "nl",
        "--purpose",
        "backup",
        "--out",
        cli.path("e.csv").to_str().unwrap(),
    ]);
    let before = cli.ok(&["contacts", "find", "--email", "jane@example.com", "--purpose", "check"]);
    cli.ok(&["users", "add", "colleague@example.com", "--role", "viewer"]);
    let users_before = cli.ok(&["users", "list"]);
    let source = format!("sqlite://{}", cli.data_dir().join("consentry.db").display());
    let out = cli.run(&["migrate-store", "--from", &source, "--to", &db.url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "migrate-store: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("contacts: 2 rows") && stdout.contains("consent_events: 3 rows"),
        "{stdout}"
    );
    assert!(
        stdout.contains("users: 1 rows") && stdout.contains("user_invitations: 1 rows"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: workspace"), "{stdout}");

    // The same contact, read through PostgreSQL with the same master key.
    let after = cli.ok(&[
        "--database-url",
        &db.url,
        "contacts",
        "find",
        "--email",
        "jane@example.com",
        "--purpose",
        "check",
    ]);
    assert_eq!(before, after);
    assert_eq!(
        cli.ok(&["--database-url", &db.url, "users", "list"]),
        users_before,
        "users moved sealed and open the same"
    );
    // Ciphertexts moved as they were.
    let pg = admin(&db).await;
    let moved: Vec<u8> = pg
        .query_one("SELECT email_ct FROM contacts ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let original: Vec<u8> = cli
        .db()
        .query_row("SELECT email_ct FROM contacts ORDER BY id LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(moved, original);
    // Writing goes on after the moved ledger.
    cli.ok(&[
        "--database-url",
        &db.url,
        "import",
        file.to_str().unwrap(),
        "--list",
        "nl",
        "--source",
        "form",
        "--channels",
        "email,whatsapp",
        "--region",
        "NL",
    ]);
    cli.ok(&["--database-url", &db.url, "audit", "verify"]);

    let out = cli.run(&["migrate-store", "--from", &source, "--to", &db.url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}
