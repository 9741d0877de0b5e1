//! A PostgreSQL database of its own for one test: created on the server named by
//! `CONSENTRY_TEST_POSTGRES_URL` and dropped when the guard goes. Without the URL
//! the PostgreSQL cases say so and skip, unless `CONSENTRY_REQUIRE_POSTGRES=1`
//! (CI), where they fail.

use tokio_postgres::NoTls;

pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    pub name: String,
    admin_url: String,
}

/// The server URL, or `None` (after saying why) when PostgreSQL cases skip here.
pub fn server_url() -> Option<String> {
    match std::env::var("CONSENTRY_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("CONSENTRY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("CONSENTRY_REQUIRE_POSTGRES=1 but CONSENTRY_TEST_POSTGRES_URL is not set: PostgreSQL is required here");
            }
            eprintln!("skipped: set CONSENTRY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres to run the PostgreSQL case");
            None
        }
    }
}

/// Whether the HTTP and CLI suites run on PostgreSQL (`CONSENTRY_TEST_BACKEND=postgres`).
pub fn http_suite_on_postgres() -> bool {
    std::env::var("CONSENTRY_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// The server URL with its database replaced by `name`
/// (`postgres://user:pw@host:port/db?opts` -> `postgres://user:pw@host:port/name?opts`).
fn with_database(url: &str, name: &str) -> String {
    let scheme_end = url
        .find("://")
        .map(|i| i + 3)
        .expect("CONSENTRY_TEST_POSTGRES_URL must be a postgres:// URL");
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

impl TestDatabase {
    /// Creates a database with a fresh name, or `None` when PostgreSQL cases skip.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = server_url()?;
        let name = format!("consentry_test_{}", uuid::Uuid::now_v7().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at CONSENTRY_TEST_POSTGRES_URL: {e}"));
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        Some(TestDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Dropped outside any runtime's worker: a thread with a runtime of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        });
        let _ = done.join();
    }
}
