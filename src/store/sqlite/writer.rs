//! The single writer thread of the SQLite backend with group commit: every write is
//! a job run inside its own savepoint, and all jobs waiting in the queue share one
//! transaction and one fsync. A job's result is released to its caller only after
//! the commit, so nothing is acknowledged before it is durable.

use super::super::{StoreError, StoreResult};
use anyhow::Context;
use rusqlite::Connection;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Called with the commit error, if any, once the group transaction has ended.
type Completion = Box<dyn FnOnce(Option<String>) + Send>;
/// Runs inside a savepoint; returns whether to keep its changes and its completion.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

/// Most jobs committed together.
const MAX_GROUP: usize = 1024;

pub struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(conn: Connection) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("consentry-sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .context("failed to start the database writer thread")?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` in the writer transaction. With `keep == false` returned from `f`
    /// its changes are rolled back but its value is still delivered.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> (bool, StoreResult<T>) + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn| {
            let (keep, result) = f(conn);
            let keep = keep && result.is_ok();
            let completion: Completion = Box::new(move |commit_err| {
                let result = match commit_err {
                    Some(e) if keep => Err(StoreError::Backend(anyhow::anyhow!("failed to commit: {e}"))),
                    _ => result,
                };
                let _ = done_tx.send(result);
            });
            (keep, completion)
        });
        let sender = self
            .tx
            .as_ref()
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("the store is closed")))?;
        sender
            .send(job)
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("the database writer has stopped")))?;
        done_rx
            .await
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("the database writer stopped before answering")))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = format!("failed to begin a transaction: {e}");
            for job in jobs {
                // Run nothing; tell every caller.
                let (_, completion) = fail_job(job, &conn, &msg);
                completion(Some(msg.clone()));
            }
            continue;
        }
        let mut completions = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                tracing::error!(error = %e, "failed to open a savepoint");
            }
            let (keep, completion) = job(&conn);
            let end = if keep { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "failed to close a savepoint");
            }
            completions.push(completion);
        }
        let commit_err = conn.execute_batch("COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        if let Some(e) = &commit_err {
            tracing::error!(error = %e, "group commit failed");
        }
        for c in completions {
            c(commit_err.clone());
        }
    }
}

fn fail_job(job: Job, conn: &Connection, _msg: &str) -> (bool, Completion) {
    // The job is run against a connection outside any transaction would be unsafe;
    // instead it is run inside a savepoint that is always rolled back.
    let _ = conn.execute_batch("SAVEPOINT failed");
    let out = job(conn);
    let _ = conn.execute_batch("ROLLBACK TO failed; RELEASE failed");
    (false, out.1)
}
