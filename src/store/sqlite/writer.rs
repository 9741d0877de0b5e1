//! The single writer thread of the SQLite backend with group commit: every write is
//! a job run inside its own savepoint, and all jobs waiting in the queue share one
//! transaction and one fsync. A job's result is released to its caller only after
//! the commit, so nothing is acknowledged before it is durable. The one exception
//! is a read inside an import's open transaction (`read_in_chain`), which answers
//! at once and whose caller checks later that what it read still holds.

use super::super::{StoreError, StoreResult};
use anyhow::Context;
use rusqlite::Connection;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Called with the commit error, if any, once the group transaction has ended.
type Completion = Box<dyn FnOnce(Option<String>) + Send>;
/// Runs inside a savepoint; returns whether to keep its changes and its completion.
type JobFn = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

/// How a queued write shares its transaction.
#[derive(Clone, PartialEq, Eq)]
enum Mode {
    /// In a savepoint, group-committed with the other jobs waiting.
    Group,
    /// A large import batch: no savepoint (a savepoint copies every page the job
    /// first touches into a sub-journal, which costs a large batch dearly), and
    /// consecutive batches of one chain share a transaction (see `Writer::start`).
    Chained { chain: String, last: bool },
    /// A read in the open transaction of a chain (or on its own when none is
    /// open): it neither ends the chain nor waits for its commit. What it read
    /// may still be rolled back with the chain; its caller must check it later.
    ChainedRead { chain: String },
}

struct Job {
    mode: Mode,
    run: JobFn,
}

/// Most jobs committed together.
const MAX_GROUP: usize = 1024;

pub struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread. Consecutive batches of one import share a
    /// transaction for at most `chain_window`: each commit writes every page the
    /// transaction dirtied to the WAL, and the batches of a large import dirty the
    /// same leaf pages of the random blind-index indexes again and again, so fewer
    /// commits write far less. A kill loses at most this much work, which the rerun
    /// redoes; a write of another kind ends the shared transaction at once.
    pub fn start(conn: Connection, chain_window: Duration) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("consentry-sqlite-writer".into())
            .spawn(move || run(conn, rx, chain_window))
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
        self.submit(Mode::Group, f).await
    }

    /// Runs `f` without a savepoint in a transaction that consecutive jobs of the
    /// same `chain` may share; the last job of a chain commits at once. The result
    /// is released after the commit. When one job of a shared transaction fails,
    /// the whole transaction is rolled back and every job in it gets an error.
    pub async fn write_chained<T, F>(&self, chain: String, last: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> (bool, StoreResult<T>) + Send + 'static,
    {
        self.submit(Mode::Chained { chain, last }, f).await
    }

    /// Runs a read `f` inside the open transaction of `chain`, if that is the
    /// chain being written, and answers at once (see `Mode::ChainedRead`).
    pub async fn read_in_chain<T, F>(&self, chain: String, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let run: JobFn = Box::new(move |conn| {
            let _ = done_tx.send(f(conn));
            (true, Box::new(|_| {}) as Completion)
        });
        self.send(Job {
            mode: Mode::ChainedRead { chain },
            run,
        })?;
        done_rx
            .await
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("the database writer stopped before answering")))?
    }

    fn send(&self, job: Job) -> StoreResult<()> {
        let sender = self
            .tx
            .as_ref()
            .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("the store is closed")))?;
        sender
            .send(job)
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("the database writer has stopped")))
    }

    async fn submit<T, F>(&self, mode: Mode, f: F) -> StoreResult<T>
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
        self.send(Job { mode, run })?;
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

fn run(conn: Connection, rx: mpsc::Receiver<Job>, chain_window: Duration) {
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        match first.mode {
            Mode::Chained { .. } => {
                held = run_chain(&conn, first, &rx, chain_window);
                continue;
            }
            Mode::ChainedRead { .. } => {
                // No chain is open: the read runs on its own.
                let (_, completion) = (first.run)(&conn);
                completion(None);
                continue;
            }
            Mode::Group => {}
        }
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) if j.mode != Mode::Group => {
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

/// Runs `first` and the jobs of its chain that follow within `window` in one
/// transaction; returns the job that ended the chain, if one arrived.
fn run_chain(conn: &Connection, first: Job, rx: &mpsc::Receiver<Job>, window: Duration) -> Option<Job> {
    let Mode::Chained { chain, .. } = first.mode.clone() else {
        return Some(first);
    };
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = format!("failed to begin a transaction: {e}");
        let (_, completion) = fail_job(first, conn);
        completion(Some(msg));
        return None;
    }
    let deadline = Instant::now() + window;
    let mut completions: Vec<Completion> = Vec::new();
    let mut next = Some(first);
    let mut held = None;
    let mut failed = false;
    while let Some(job) = next.take() {
        let last = matches!(&job.mode, Mode::Chained { last: true, .. });
        let (keep, completion) = (job.run)(conn);
        completions.push(completion);
        if !keep {
            failed = true;
            break;
        }
        if last {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Reads of this chain run in its transaction as they come, without
        // ending it; anything else of another kind ends the chain.
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(j) if matches!(&j.mode, Mode::ChainedRead { chain: c } if *c == chain) => {
                    let (_, completion) = (j.run)(conn);
                    completion(None);
                }
                Ok(j) if matches!(&j.mode, Mode::Chained { chain: c, .. } if *c == chain) => {
                    next = Some(j);
                    break;
                }
                Ok(j) => {
                    held = Some(j);
                    break;
                }
                Err(_) => break,
            }
        }
    }
    let end_err = if failed {
        let _ = conn.execute_batch("ROLLBACK");
        Some("rolled back together with a failed batch of the same import".to_string())
    } else {
        conn.execute_batch("COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, "commit failed");
            e.to_string()
        })
    };
    for c in completions {
        c(end_err.clone());
    }
    held
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn writer(window_ms: u64) -> (tempfile::TempDir, Arc<Writer>, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER NOT NULL)")
            .unwrap();
        (dir, Arc::new(Writer::start(conn, Duration::from_millis(window_ms)).unwrap()), path)
    }

    fn count(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// Starts the chain "imp" with a first batch (row 1) that waits for its commit.
    fn open_chain(w: &Arc<Writer>) -> tokio::task::JoinHandle<StoreResult<()>> {
        let w = w.clone();
        tokio::spawn(async move { w.write_chained("imp".into(), false, insert(1)).await })
    }

    fn insert(v: i64) -> impl FnOnce(&Connection) -> (bool, StoreResult<()>) + Send + 'static {
        move |c: &Connection| {
            let r = c
                .execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map(|_| ())
                .map_err(|e| StoreError::Backend(e.into()));
            (r.is_ok(), r)
        }
    }

    #[tokio::test]
    async fn batches_of_one_chain_are_committed_together_and_answered_after_the_commit() {
        let (_dir, w, path) = writer(5_000);
        let first = open_chain(&w);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!first.is_finished(), "the first batch waits for the shared commit");
        assert_eq!(count(&path), 0, "nothing is visible before the commit");
        w.write_chained("imp".into(), true, insert(2)).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(count(&path), 2);
    }

    #[tokio::test]
    async fn a_failed_batch_rolls_back_its_whole_chain_and_every_batch_hears_of_it() {
        let (_dir, w, path) = writer(5_000);
        let first = open_chain(&w);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let failing = w
            .write_chained("imp".into(), false, |_c: &Connection| {
                (false, Err::<(), _>(StoreError::Backend(anyhow::anyhow!("planner refused"))))
            })
            .await;
        match failing {
            Err(StoreError::Backend(e)) => assert!(format!("{e:#}").contains("planner refused")),
            other => panic!("the failed batch gets its own error, not {other:?}"),
        }
        assert!(first.await.unwrap().is_err(), "the earlier batch is reported lost");
        assert_eq!(count(&path), 0);
        // The writer goes on with the next work.
        w.write(insert(3)).await.unwrap();
        assert_eq!(count(&path), 1);
    }

    #[tokio::test]
    async fn a_read_in_a_chain_sees_its_uncommitted_rows_answers_at_once_and_keeps_it_open() {
        let (_dir, w, path) = writer(5_000);
        let first = open_chain(&w);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = w
            .read_in_chain("imp".into(), |c| {
                c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(|e| StoreError::Backend(e.into()))
            })
            .await
            .unwrap();
        assert_eq!(seen, 1, "the read sees the chain's uncommitted row");
        assert!(!first.is_finished(), "the read did not end the chain");
        assert_eq!(count(&path), 0);
        w.write_chained("imp".into(), true, insert(2)).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(count(&path), 2, "both batches committed together");
        // Without an open chain the read runs on its own.
        let alone = w
            .read_in_chain("other".into(), |c| {
                c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(|e| StoreError::Backend(e.into()))
            })
            .await
            .unwrap();
        assert_eq!(alone, 2);
    }

    #[tokio::test]
    async fn another_write_or_the_window_ends_a_chain() {
        let (_dir, w, path) = writer(5_000);
        let first = open_chain(&w);
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.write(insert(2)).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(count(&path), 2);

        let (_dir2, short, path2) = writer(50);
        short.write_chained("imp".into(), false, insert(1)).await.unwrap();
        assert_eq!(count(&path2), 1, "the window closed and committed without a last batch");
    }
}
