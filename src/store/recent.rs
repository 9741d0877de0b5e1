//! What recent import batches wrote, so that a batch looked up ahead of its turn
//! (in a snapshot taken while earlier batches were still writing) can tell, once
//! it holds the write lock, whether that look-up still holds.
//!
//! Every change of a workspace's contacts, lists, consent and suppressions appends
//! to its audit chain in the same transaction. A look-up made in a snapshot whose
//! audit head was `h` therefore still holds when every event after `h` is an import
//! batch recorded here (same sequence number, same hash) and none of them touched
//! the batch's identifiers or the contacts it found. Anything else in between
//! (another writer, an audited read, a batch this process did not record or that
//! was rolled back and its number reused) and the batch is looked up again.
//! Identifiers and contact ids are kept as 64-bit fingerprints: a fingerprint
//! shared by chance only costs a second look-up.

use super::{BatchLookup, BatchPrefetch, BatchWrites, ImportJob, ImportPlanner, StoreError, StoreResult};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use uuid::Uuid;

/// Most fingerprints kept per workspace (some 25 batches of 2,000 rows with an
/// email and a phone each, where a look-up runs one batch ahead); the oldest
/// batches are forgotten first (a look-up older than what is kept is simply made
/// again).
const MAX_FINGERPRINTS: usize = 100_000;

/// Fingerprint of a blind index (already a uniform MAC output).
pub fn of_bidx(bidx: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bidx.len().min(8);
    b[..n].copy_from_slice(&bidx[..n]);
    u64::from_le_bytes(b) ^ 0x9e37_79b9_7f4a_7c15
}

/// Fingerprint of a contact id (the random low half of a UUID).
pub fn of_contact(id: Uuid) -> u64 {
    id.as_u64_pair().1
}

/// Fingerprints of a batch's identifiers.
pub fn of_lookup(lookup: &BatchLookup) -> impl Iterator<Item = u64> + '_ {
    lookup.email_bidx.iter().chain(&lookup.phone_bidx).map(|b| of_bidx(b))
}

/// What a batch's writes touch: its identifiers and every contact it changes,
/// adds to the list or appends consent events for.
pub fn touched_by(lookup: &BatchLookup, writes: &BatchWrites) -> Vec<u64> {
    let mut touched: Vec<u64> = of_lookup(lookup).collect();
    touched.extend(writes.updates.iter().map(|r| of_contact(r.id)));
    touched.extend(writes.memberships.iter().map(|id| of_contact(*id)));
    touched.extend(writes.consents.iter().map(|e| of_contact(e.contact_id)));
    touched
}

/// Refuses a batch that does not start where the job's progress stands (a batch
/// before it failed or was never written).
pub fn check_start(job: &ImportJob, lookup: &BatchLookup) -> StoreResult<()> {
    if job.rows_done == lookup.first_row {
        return Ok(());
    }
    Err(StoreError::Backend(anyhow::anyhow!(
        "an import batch starting after row {} arrived when the job had done {} rows; run the import again to resume it",
        lookup.first_row,
        job.rows_done
    )))
}

/// The checks of a look-up made ahead: the batch's identifiers and the contacts
/// it found.
fn checks_of(lookup: &BatchLookup, prefetch: &BatchPrefetch) -> Vec<u64> {
    of_lookup(lookup)
        .chain(prefetch.found_contacts.iter().map(|id| of_contact(*id)))
        .collect()
}

#[derive(Default)]
struct Log {
    /// `(audit seq, audit hash, fingerprints)` of recorded batches, oldest first.
    batches: VecDeque<(i64, String, Vec<u64>)>,
    /// Fingerprint -> newest audit seq of a recorded batch that touched it.
    touched: HashMap<u64, i64>,
    fingerprints: usize,
}

/// The batches recently written, per workspace.
#[derive(Default)]
pub struct RecentWrites {
    logs: Mutex<HashMap<String, Log>>,
}

impl RecentWrites {
    /// Records a batch written with the audit event `seq` / `hash` that touched
    /// `fingerprints` (its identifiers and the existing contacts it wrote). It may
    /// be recorded before its commit: a batch rolled back never matches, as the
    /// event that takes its number has another hash.
    pub fn record(&self, workspace_id: &str, seq: i64, hash: &str, fingerprints: Vec<u64>) {
        let Ok(mut logs) = self.logs.lock() else { return };
        let log = logs.entry(workspace_id.to_string()).or_default();
        if log.batches.back().is_some_and(|(last, _, _)| *last >= seq) {
            // Out of order: the chain went back (a rollback not reported); start over.
            *log = Log::default();
        }
        for fp in &fingerprints {
            log.touched.insert(*fp, seq);
        }
        log.fingerprints += fingerprints.len();
        log.batches.push_back((seq, hash.to_string(), fingerprints));
        while log.fingerprints > MAX_FINGERPRINTS && log.batches.len() > 1 {
            let Some((old_seq, _, old)) = log.batches.pop_front() else { break };
            log.fingerprints -= old.len();
            for fp in old {
                if log.touched.get(&fp).is_some_and(|s| *s <= old_seq) {
                    log.touched.remove(&fp);
                }
            }
        }
    }

    /// The writes of a batch looked up ahead (`prefetch`), when its look-up still
    /// holds after the audit events `since` its snapshot (`None`: more than the
    /// store reads back): the plan made ahead, or one made now on that look-up.
    /// `None` when the batch must be looked up again.
    pub fn writes_ahead(
        &self,
        workspace_id: &str,
        lookup: &BatchLookup,
        prefetch: BatchPrefetch,
        since: Option<Vec<(i64, String)>>,
        planner: &mut ImportPlanner,
    ) -> Option<anyhow::Result<BatchWrites>> {
        let since = since?;
        if !self.still_holds(workspace_id, prefetch.audit_head, &since, checks_of(lookup, &prefetch)) {
            return None;
        }
        prefetch.writes_at_turn(planner)
    }

    /// Whether a look-up made at audit head `then` still holds now that the
    /// events `since` (sequence number and hash of every event after `then`, in
    /// order) have been written, for a batch whose identifiers and found contacts
    /// have the fingerprints `check`.
    pub fn still_holds(&self, workspace_id: &str, then: i64, since: &[(i64, String)], check: impl IntoIterator<Item = u64>) -> bool {
        if since.is_empty() {
            return true;
        }
        let Ok(logs) = self.logs.lock() else { return false };
        let Some(log) = logs.get(workspace_id) else { return false };
        // Every event since the snapshot must be a recorded batch, in order.
        let first = log.batches.partition_point(|(seq, _, _)| *seq <= then);
        let recorded = log.batches.range(first..);
        if recorded.len() != since.len() {
            return false;
        }
        let in_order = (then + 1..)
            .zip(recorded.zip(since))
            .all(|(want, ((seq, hash, _), (event_seq, event_hash)))| *seq == want && event_seq == seq && event_hash == hash);
        if !in_order {
            return false;
        }
        !check.into_iter().any(|fp| log.touched.get(&fp).is_some_and(|seq| *seq > then))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(v: &[(i64, &str)]) -> Vec<(i64, String)> {
        v.iter().map(|(s, h)| (*s, h.to_string())).collect()
    }

    #[test]
    fn a_look_up_holds_only_when_every_later_event_is_a_recorded_batch_touching_nothing_of_it() {
        let r = RecentWrites::default();
        // Nothing written since the snapshot: holds, even with nothing recorded.
        assert!(r.still_holds("ws", 7, &[], [1, 2]));
        // Something unknown was written since.
        assert!(!r.still_holds("ws", 7, &events(&[(8, "h8")]), [1, 2]));
        r.record("ws", 8, "h8", vec![10, 11]);
        r.record("ws", 9, "h9", vec![12]);
        let both = events(&[(8, "h8"), (9, "h9")]);
        assert!(r.still_holds("ws", 7, &both, [1, 2]), "two recorded batches touching other things");
        assert!(r.still_holds("ws", 8, &both[1..], [10]), "10 was touched before the snapshot");
        assert!(!r.still_holds("ws", 7, &both, [2, 11]), "11 was touched after the snapshot");
        assert!(
            !r.still_holds("ws", 7, &events(&[(8, "h8"), (9, "h9"), (10, "h10")]), [1]),
            "event 10 is not a recorded batch"
        );
        assert!(
            !r.still_holds("ws", 6, &events(&[(7, "h7"), (8, "h8"), (9, "h9")]), [1]),
            "event 7 is not a recorded batch"
        );
        assert!(
            !r.still_holds("ws", 7, &events(&[(8, "h8"), (9, "other")]), [1]),
            "event 9 is another event than the batch recorded"
        );
        assert!(
            !r.still_holds("ws", 7, &events(&[(8, "h8")]), [1]),
            "the events since do not match the recorded ones"
        );
        assert!(!r.still_holds("other", 7, &both, [1]), "another workspace's log");
        // A gap in the recorded batches: event 10 was something else.
        r.record("ws", 11, "h11", vec![13]);
        assert!(!r.still_holds("ws", 9, &events(&[(10, "h10"), (11, "h11")]), [1]));
        assert!(r.still_holds("ws", 10, &events(&[(11, "h11")]), [1]));
    }

    #[test]
    fn a_sequence_number_seen_again_starts_the_log_over() {
        let r = RecentWrites::default();
        r.record("ws", 5, "h5", vec![1]);
        r.record("ws", 6, "rolled back", vec![2]);
        r.record("ws", 6, "h6", vec![3]);
        assert!(!r.still_holds("ws", 4, &events(&[(5, "h5"), (6, "h6")]), [9]));
        assert!(r.still_holds("ws", 5, &events(&[(6, "h6")]), [9]));
        assert!(!r.still_holds("ws", 5, &events(&[(6, "h6")]), [3]));
        assert!(
            r.still_holds("ws", 5, &events(&[(6, "h6")]), [2]),
            "the batch that touched 2 was forgotten"
        );
        assert!(!r.still_holds("ws", 5, &events(&[(6, "rolled back")]), [9]));
    }

    #[test]
    fn the_oldest_batches_are_forgotten_beyond_the_limit() {
        let r = RecentWrites::default();
        let per = MAX_FINGERPRINTS / 2 + 1;
        r.record("ws", 1, "h1", (0..per as u64).collect());
        r.record("ws", 2, "h2", (per as u64..2 * per as u64).collect());
        let both = events(&[(1, "h1"), (2, "h2")]);
        assert!(!r.still_holds("ws", 0, &both, [u64::MAX]), "batch 1 was forgotten");
        assert!(
            r.still_holds("ws", 1, &both[1..], [0]),
            "fingerprints of a forgotten batch no longer count"
        );
        assert!(!r.still_holds("ws", 1, &both[1..], [per as u64]));
    }

    #[test]
    fn fingerprints_use_the_leading_bytes_and_the_random_half() {
        assert_eq!(of_bidx(&[1; 16]), of_bidx(&[1; 8]));
        assert_ne!(of_bidx(&[1; 16]), of_bidx(&[2; 16]));
        assert_ne!(of_contact(Uuid::now_v7()), of_contact(Uuid::now_v7()));
    }
}
