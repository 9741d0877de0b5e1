//! The security overview of a workspace (`GET /api/v1/security`, `consentry
//! security report`): second-factor coverage and who lacks one, API keys near
//! expiry or unused for 30 days, allowlists, and recent failed sign-ins and
//! refused requests. Needs `security:manage`.

use super::users::user_view;
use super::{Vault, VaultResult};
use crate::access::{Permission, Principal};
use crate::clock::rfc3339;
use crate::store::UserStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DAY: i64 = 86_400_000_000;
/// Keys expiring within this many days are reported.
pub const EXPIRY_WARNING_DAYS: i64 = 14;
/// Keys without a use for this many days are reported.
pub const UNUSED_DAYS: i64 = 30;
/// Failures are counted over this many hours.
pub const FAILURE_WINDOW_HOURS: i64 = 24;
/// At most this many failures are counted and this many listed.
const FAILURES_COUNTED: u32 = 1000;
const FAILURES_LISTED: usize = 20;
/// The audit actions that are failed or refused authentications.
const FAILURE_ACTIONS: [&str; 5] = [
    "user.sign_in_failed",
    "user.sign_in_throttled",
    "user.second_factor_failed",
    "auth.failed",
    "auth.address_refused",
];

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecurityReport {
    pub generated_at: String,
    pub second_factor: SecondFactorCoverage,
    pub keys: KeyHealth,
    pub allowlists: AllowlistSummary,
    pub failed_authentications: FailureSummary,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecondFactorCoverage {
    /// Whether the workspace requires a second factor of every user.
    pub required: bool,
    /// Users who can sign in or are invited to (disabled users are left out).
    pub users: u64,
    pub with_second_factor: u64,
    /// Whole percent of those users with a second factor (100 when there are none).
    pub coverage_percent: u64,
    pub without_second_factor: Vec<ReportUser>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportUser {
    pub id: String,
    pub email: String,
    pub role: String,
    pub status: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyHealth {
    /// Keys neither revoked nor expired.
    pub active: u64,
    /// Active keys expiring within 14 days.
    pub expiring_soon: Vec<ReportKey>,
    /// Active keys not used for 30 days (or never, when older than that).
    pub unused: Vec<ReportKey>,
    /// Active keys that may be used from any address.
    pub without_allowlist: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportKey {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AllowlistSummary {
    /// The workspace's list (empty: any address).
    pub workspace: Vec<String>,
    pub users_with_allowlist: u64,
    pub keys_with_allowlist: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailureSummary {
    pub window_hours: i64,
    /// Failed sign-ins, wrong second-factor codes, refused keys and refused
    /// addresses in the window (counted up to 1000).
    pub count: u64,
    /// The newest 20 of them.
    pub recent: Vec<ReportFailure>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportFailure {
    pub at: String,
    pub action: String,
    /// The account or key concerned, when known (`user:ID`, `key:ID`).
    pub target: Option<String>,
    pub audit_seq: i64,
}

impl Vault {
    /// The workspace's security overview.
    pub async fn security_report(&self, p: &Principal) -> VaultResult<SecurityReport> {
        p.require(Permission::SecurityManage)?;
        let ws = &p.workspace_id;
        let now = self.now();
        let keys = self.keys(ws).await?;

        let users: Vec<_> = self
            .store
            .list_users(ws)
            .await?
            .into_iter()
            .filter(|u| u.status != UserStatus::Disabled)
            .collect();
        let mut without = Vec::new();
        for u in &users {
            let has = self.has_second_factor(ws, u.id).await?;
            if !has {
                let v = user_view(&keys, u)?;
                without.push(ReportUser {
                    id: v.id,
                    email: v.email,
                    role: v.role,
                    status: v.status,
                });
            }
        }
        let total = users.len() as u64;
        let with = total - without.len() as u64;

        let api_keys: Vec<_> = self
            .store
            .list_api_keys(ws)
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now))
            .collect();
        let report_key = |k: &crate::store::ApiKeyRecord| ReportKey {
            id: k.id.clone(),
            name: k.name.clone(),
            created_by: k.created_by.clone(),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
        };
        let expiring_soon = api_keys
            .iter()
            .filter(|k| k.expires_at.is_some_and(|e| e - now <= EXPIRY_WARNING_DAYS * DAY))
            .map(report_key)
            .collect();
        let unused = api_keys
            .iter()
            .filter(|k| k.last_used_at.unwrap_or(k.created_at) <= now - UNUSED_DAYS * DAY)
            .map(report_key)
            .collect();

        let failures = self
            .store
            .recent_audit(
                ws,
                FAILURE_ACTIONS.iter().map(ToString::to_string).collect(),
                // Audit events carry the store's wall-clock time.
                crate::store::now_micros() - FAILURE_WINDOW_HOURS * 3_600_000_000,
                FAILURES_COUNTED,
            )
            .await?;

        Ok(SecurityReport {
            generated_at: rfc3339(now),
            second_factor: SecondFactorCoverage {
                required: self.store.second_factor_required(ws).await?,
                users: total,
                with_second_factor: with,
                coverage_percent: (with * 100).checked_div(total).unwrap_or(100),
                without_second_factor: without,
            },
            keys: KeyHealth {
                active: api_keys.len() as u64,
                expiring_soon,
                unused,
                without_allowlist: api_keys.iter().filter(|k| k.allowlist.is_empty()).count() as u64,
            },
            allowlists: AllowlistSummary {
                workspace: self.store.workspace_allowlist(ws).await?,
                users_with_allowlist: users.iter().filter(|u| !u.allowlist.is_empty()).count() as u64,
                keys_with_allowlist: api_keys.iter().filter(|k| !k.allowlist.is_empty()).count() as u64,
            },
            failed_authentications: FailureSummary {
                window_hours: FAILURE_WINDOW_HOURS,
                count: failures.len() as u64,
                recent: failures
                    .iter()
                    .take(FAILURES_LISTED)
                    .map(|e| ReportFailure {
                        at: rfc3339(e.at),
                        action: e.action.clone(),
                        target: e.target.clone(),
                        audit_seq: e.seq,
                    })
                    .collect(),
            },
        })
    }
}
