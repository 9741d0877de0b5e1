//! Audit operations: reading the log, signing checkpoints, verifying chains.

use super::{Vault, VaultResult};
use crate::access::{Permission, Principal};
use crate::audit::verify::{ChainVerifier, VerifyReport};
use crate::audit::{AuditEvent, Checkpoint};

impl Vault {
    /// A page of audit events after `after_seq`.
    pub async fn audit_events(&self, p: &Principal, after_seq: i64, limit: u32) -> VaultResult<Vec<AuditEvent>> {
        p.require(Permission::AuditRead)?;
        Ok(self.store.list_audit(&p.workspace_id, after_seq, limit.clamp(1, 1000)).await?)
    }

    /// Signs a checkpoint at the current head if it moved since the last one.
    pub async fn checkpoint(&self, workspace_id: &str) -> VaultResult<Option<Checkpoint>> {
        let Some(head) = self.store.audit_head(workspace_id).await? else {
            return Ok(None);
        };
        let last = self.store.list_checkpoints(workspace_id).await?.into_iter().last();
        if last.as_ref().is_some_and(|c| c.seq >= head.seq) {
            return Ok(None);
        }
        let keys = self.keys(workspace_id).await?;
        let at = self.now();
        let msg = Checkpoint::message(workspace_id, head.seq, &head.hash, at);
        let cp = Checkpoint {
            workspace_id: workspace_id.to_string(),
            seq: head.seq,
            hash: head.hash,
            at,
            signature: hex::encode(keys.sign_checkpoint(&msg)),
        };
        self.store.insert_checkpoint(cp.clone()).await?;
        Ok(Some(cp))
    }

    /// Checkpoints every workspace whose log moved.
    pub async fn checkpoint_all(&self) -> VaultResult<()> {
        for ws in self.store.list_workspaces().await? {
            self.checkpoint(&ws.id).await?;
        }
        Ok(())
    }

    /// Recomputes a workspace's chain and checks its checkpoints against the key
    /// derived from the master key (so a replaced public key is noticed too).
    pub async fn verify_audit(&self, workspace_id: &str) -> VaultResult<VerifyReport> {
        let keys = self.keys(workspace_id).await?;
        let checkpoints = self.store.list_checkpoints(workspace_id).await?;
        let mut verifier = ChainVerifier::new(workspace_id, checkpoints);
        let mut after = 0i64;
        loop {
            let page = self.store.list_audit(workspace_id, after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                verifier.push(e);
            }
            if verifier.failed() {
                break;
            }
        }
        Ok(verifier.finish(&keys.audit_public_key()))
    }
}
