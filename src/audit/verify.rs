//! Chain verification: recomputes every hash in sequence and checks every checkpoint
//! signature. The first inconsistency is reported with its sequence number.

use super::{AuditEvent, Checkpoint, GENESIS_HASH};
use crate::crypto::verify_checkpoint;
use std::collections::HashMap;

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub checkpoints: u64,
    pub problem: Option<ChainProblem>,
}

/// The first inconsistency of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub seq: i64,
    pub reason: String,
}

/// Verifies a chain incrementally, one event at a time, in stored order.
pub struct ChainVerifier {
    workspace_id: String,
    expected_seq: i64,
    prev_hash: String,
    hashes_at_checkpoints: HashMap<i64, String>,
    checkpoints: Vec<Checkpoint>,
    events: u64,
    problem: Option<ChainProblem>,
}

impl ChainVerifier {
    pub fn new(workspace_id: &str, checkpoints: Vec<Checkpoint>) -> Self {
        ChainVerifier {
            workspace_id: workspace_id.to_string(),
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            hashes_at_checkpoints: HashMap::new(),
            checkpoints,
            events: 0,
            problem: None,
        }
    }

    /// Whether a problem was already found (the rest need not be read).
    pub fn failed(&self) -> bool {
        self.problem.is_some()
    }

    pub fn push(&mut self, event: &AuditEvent) {
        if self.problem.is_some() {
            return;
        }
        self.events += 1;
        let fail = |seq: i64, reason: String| Some(ChainProblem { seq, reason });
        if event.workspace_id != self.workspace_id {
            self.problem = fail(event.seq, "event belongs to another workspace".into());
        } else if event.seq != self.expected_seq {
            let seq = self.expected_seq.min(event.seq);
            self.problem = fail(
                seq,
                format!(
                    "expected sequence {} but found {} (an event was deleted, inserted or reordered)",
                    self.expected_seq, event.seq
                ),
            );
        } else if event.prev_hash != self.prev_hash {
            self.problem = fail(event.seq, "previous-hash link does not match the event before it".into());
        } else if event.compute_hash() != event.hash {
            self.problem = fail(event.seq, "event content does not match its hash (the row was edited)".into());
        }
        if self.problem.is_none() {
            self.prev_hash = event.hash.clone();
            self.expected_seq += 1;
            if self.checkpoints.iter().any(|c| c.seq == event.seq) {
                self.hashes_at_checkpoints.insert(event.seq, event.hash.clone());
            }
        }
    }

    /// Checks the checkpoints against the recomputed chain and the public key.
    pub fn finish(mut self, public_key: &[u8]) -> VerifyReport {
        let last_seq = self.expected_seq - 1;
        if self.problem.is_none() {
            for c in &self.checkpoints {
                let msg = Checkpoint::message(&c.workspace_id, c.seq, &c.hash, c.at);
                let sig_ok = hex::decode(&c.signature).is_ok_and(|s| verify_checkpoint(public_key, &msg, &s));
                let reason = if !sig_ok {
                    Some("checkpoint signature is invalid".to_string())
                } else if c.seq > last_seq {
                    Some(format!(
                        "checkpoint at sequence {} but the log ends at {last_seq} (events were removed)",
                        c.seq
                    ))
                } else if self.hashes_at_checkpoints.get(&c.seq) != Some(&c.hash) {
                    Some("event hash differs from the signed checkpoint (the chain was rewritten)".to_string())
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let seq = c.seq.min(last_seq + 1);
                    if self.problem.as_ref().is_none_or(|p| seq < p.seq) {
                        self.problem = Some(ChainProblem { seq, reason });
                    }
                }
            }
        }
        VerifyReport {
            events: self.events,
            checkpoints: self.checkpoints.len() as u64,
            problem: self.problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditDraft;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::chain(&AuditDraft::new("ws", "cli", "test.event"), seq, seq * 10, &prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(events: &[AuditEvent]) -> VerifyReport {
        let mut v = ChainVerifier::new("ws", vec![]);
        for e in events {
            v.push(e);
        }
        v.finish(&[0; 32])
    }

    #[test]
    fn untouched_chain_verifies() {
        assert_eq!(verify(&chain(5)).problem, None);
    }

    #[test]
    fn edit_delete_and_reorder_name_the_first_bad_sequence() {
        let mut edited = chain(5);
        edited[2].actor = "someone".into();
        assert_eq!(verify(&edited).problem.unwrap().seq, 3);

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify(&deleted).problem.unwrap().seq, 2);

        let mut reordered = chain(5);
        reordered.swap(1, 3);
        reordered[1].seq = 2;
        reordered[3].seq = 4;
        assert_eq!(verify(&reordered).problem.unwrap().seq, 2);
    }
}
