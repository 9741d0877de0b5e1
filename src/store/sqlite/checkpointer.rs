//! WAL checkpoints off the writer thread. With automatic checkpoints, the commit
//! that crosses the WAL threshold copies the log back into the database and
//! fsyncs it while every request waiting on that group commit waits too. Here a
//! thread of its own runs passive checkpoints (which never block the writer) a few
//! times a second, and a full one when the store closes.

use anyhow::Context;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(250);

pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("failed to open database {}", path.display()))?;
        conn.execute_batch("PRAGMA busy_timeout = 10000;")
            .context("failed to configure the checkpointer")?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("consentry-sqlite-checkpointer".into())
            .spawn(move || run(conn, flag))
            .context("failed to start the checkpoint thread")?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(conn: Connection, stop: Arc<(Mutex<bool>, Condvar)>) {
    let (lock, cvar) = &*stop;
    loop {
        let stopped = match lock.lock() {
            Ok(guard) => match cvar.wait_timeout_while(guard, EVERY, |s| !*s) {
                Ok((guard, _)) => *guard,
                Err(_) => true,
            },
            Err(_) => true,
        };
        if stopped {
            break;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "passive WAL checkpoint failed");
        }
    }
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
        }
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
