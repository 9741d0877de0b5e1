//! The real HTTP server on port 0 over a fresh store, with an owner key, and
//! helpers to call it. The store is SQLite, or a PostgreSQL database of the test's
//! own with `CONSENTRY_TEST_BACKEND=postgres` (see `pg.rs`).

// Test code: a failed step should panic with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use consentry::access::Principal;
use consentry::clock::SystemClock;
use consentry::crypto::MasterKey;
use consentry::startup::{Application, HttpSettings};
use consentry::store::postgres::PostgresStore;
use consentry::store::sqlite::SqliteStore;
use consentry::store::Store;
use consentry::vault::Vault;
use secrecy::ExposeSecret;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct TestApp {
    pub addr: SocketAddr,
    pub vault: Arc<Vault>,
    pub data_dir: tempfile::TempDir,
    pub owner_key: String,
    pub workspace_id: String,
    pub client: reqwest::Client,
    /// The PostgreSQL database of this test, dropped with it.
    pub _database: Option<crate::pg::TestDatabase>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(HttpSettings::default()).await
}

/// Starts a server with these settings (the listen address is always 127.0.0.1:0).
pub async fn spawn_app_with(settings: HttpSettings) -> TestApp {
    spawn_app_on(settings, Arc::new(SystemClock)).await
}

/// Starts a server whose time is `clock`.
pub async fn spawn_app_with_clock(clock: Arc<dyn consentry::clock::Clock>) -> TestApp {
    spawn_app_on(HttpSettings::default(), clock).await
}

async fn spawn_app_on(settings: HttpSettings, clock: Arc<dyn consentry::clock::Clock>) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let (store, database): (Arc<dyn Store>, _) = if crate::pg::http_suite_on_postgres() {
        let db = crate::pg::TestDatabase::create()
            .await
            .expect("CONSENTRY_TEST_BACKEND=postgres needs CONSENTRY_TEST_POSTGRES_URL");
        (Arc::new(PostgresStore::connect(&db.url).await.unwrap()), Some(db))
    } else {
        (Arc::new(SqliteStore::open(&data_dir.path().join("consentry.db")).unwrap()), None)
    };
    let vault = Arc::new(Vault::new(store, MasterKey::generate().unwrap(), clock));
    let ws = vault.create_workspace("test").await.unwrap();
    let (_, token) = vault
        .create_api_key(&Principal::operator(&ws.id), "owner", "owner", &[], None)
        .await
        .unwrap();
    let settings = HttpSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..settings
    };
    let app = Application::build(vault.clone(), settings).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        addr,
        vault,
        data_dir,
        owner_key: token.expose_secret().to_string(),
        workspace_id: ws.id,
        client: reqwest::Client::new(),
        _database: database,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(key)
    }

    pub fn post(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(key)
    }

    pub fn patch(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.patch(self.url(path)).bearer_auth(key)
    }

    pub fn delete(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(key)
    }

    /// A key of this workspace with the given scopes.
    pub async fn key_with_scopes(&self, scopes: &str) -> String {
        let (_, token) = self
            .vault
            .create_api_key(&Principal::operator(&self.workspace_id), "test key", scopes, &[], None)
            .await
            .unwrap();
        token.expose_secret().to_string()
    }

    /// A second workspace and its owner key.
    pub async fn other_workspace(&self) -> (String, String) {
        let ws = self.vault.create_workspace("other").await.unwrap();
        let (_, token) = self
            .vault
            .create_api_key(&Principal::operator(&ws.id), "owner", "owner", &[], None)
            .await
            .unwrap();
        (ws.id, token.expose_secret().to_string())
    }

    /// Creates a contact with the owner key; returns its view.
    pub async fn create_contact(&self, body: Value) -> Value {
        self.create_contact_with(&self.owner_key, body).await
    }

    pub async fn create_contact_with(&self, key: &str, body: Value) -> Value {
        let res = self.post("/api/v1/contacts", key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201, "create failed: {}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    /// A connection to the test database beside the server's own.
    /// Makes every audit insert fail (`true`) or work again (`false`), straight in
    /// the database of whichever backend the test runs on.
    pub async fn break_audit_log(&self, broken: bool) {
        match &self._database {
            None => {
                let db = rusqlite::Connection::open(self.data_dir.path().join("consentry.db")).unwrap();
                let sql = if broken {
                    "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected'); END;"
                } else {
                    "DROP TRIGGER audit_fail;"
                };
                db.execute_batch(sql).unwrap();
            }
            Some(pg) => {
                let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                let sql = if broken {
                    "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$;
                     CREATE TRIGGER audit_fail BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_fail();"
                } else {
                    "DROP TRIGGER audit_fail ON audit_events; DROP FUNCTION audit_fail();"
                };
                client.batch_execute(sql).await.unwrap();
            }
        }
    }
}

/// Asserts a problem+json answer with the status; returns its body.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    let ct = res.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert_eq!(ct, "application/problem+json");
    let request_id = res.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], request_id.as_str());
    body
}

/// The password `active_user` gives its users.
pub const USER_PASSWORD: &str = "vlinder kapstok zonnebril 7";

/// Invites `email` as `role` with the owner key and accepts with `USER_PASSWORD`;
/// returns the user's id.
pub async fn active_user(app: &TestApp, email: &str, role: &str) -> String {
    let invited = app
        .post("/api/v1/users", &app.owner_key)
        .json(&serde_json::json!({ "email": email, "role": role }))
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status(), 201);
    let body: serde_json::Value = invited.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    let accepted = app
        .client
        .post(app.url("/api/v1/invitations/accept"))
        .json(&serde_json::json!({ "token": token, "password": USER_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200, "{}", accepted.text().await.unwrap());
    body["user"]["id"].as_str().unwrap().to_string()
}
