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
type JobFn = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

/// A queued write. A `solo` job (a large import batch) gets a transaction of its
/// own instead of a savepoint in a group: a savepoint copies every page the job
/// first touches into a sub-journal, which costs a large batch dearly.
struct Job {
    solo: bool,
    run: JobFn,
}

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
        self.submit(false, f).await
    }

    /// Like `write`, in a transaction of its own.
    pub async fn write_solo<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> (bool, StoreResult<T>) + Send + 'static,
    {
        self.submit(true, f).await
    }

    async fn submit<T, F>(&self, solo: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> (bool, StoreResult<T>) + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let run: JobFn = Box::new(move |conn| {
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
        let job = Job { solo, run };
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
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        if first.solo {
            run_solo(&conn, first);
            continue;
        }
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) if j.solo => {
                    held = Some(j);
                    break;
                }
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        run_group(&conn, jobs);
    }
}

fn run_solo(conn: &Connection, job: Job) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = format!("failed to begin a transaction: {e}");
        let (_, completion) = fail_job(job, conn);
        completion(Some(msg));
        return;
    }
    let (keep, completion) = (job.run)(conn);
    let commit_err = if keep {
        conn.execute_batch("COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        })
    } else {
        let _ = conn.execute_batch("ROLLBACK");
        None
    };
    if let Some(e) = &commit_err {
        tracing::error!(error = %e, "commit failed");
    }
    completion(commit_err);
}

fn run_group(conn: &Connection, jobs: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = format!("failed to begin a transaction: {e}");
        for job in jobs {
            let (_, completion) = fail_job(job, conn);
            completion(Some(msg.clone()));
        }
        return;
    }
    let mut completions = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            tracing::error!(error = %e, "failed to open a savepoint");
        }
        let (keep, completion) = (job.run)(conn);
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

/// Runs a job that cannot be committed inside a savepoint that is always rolled
/// back, so that its caller still gets its completion (with the error).
fn fail_job(job: Job, conn: &Connection) -> (bool, Completion) {
    let _ = conn.execute_batch("SAVEPOINT failed");
    let out = (job.run)(conn);
    let _ = conn.execute_batch("ROLLBACK TO failed; RELEASE failed");
    (false, out.1)
}
