//! Who may do what (DESIGN.md §5): permissions, the built-in role presets that expand
//! to them, the `Principal` every service call is made for, and the masking decision.
//! Checks happen here, below the HTTP and CLI layers, so no entry point can skip them.

pub mod allowlist;
pub mod password;

use crate::store::ListScope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One permission. The string forms are what keys store and clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    ContactsReadMasked,
    ContactsRead,
    ContactsWrite,
    ContactsImport,
    ContactsExport,
    ContactsErase,
    ListsManage,
    SegmentsManage,
    MessagesWrite,
    CampaignsSend,
    CampaignsApprove,
    UsersManage,
    KeysManage,
    SecurityManage,
    AuditRead,
    GdprManage,
}

impl Permission {
    pub const ALL: [Permission; 16] = [
        Permission::ContactsReadMasked,
        Permission::ContactsRead,
        Permission::ContactsWrite,
        Permission::ContactsImport,
        Permission::ContactsExport,
        Permission::ContactsErase,
        Permission::ListsManage,
        Permission::SegmentsManage,
        Permission::MessagesWrite,
        Permission::CampaignsSend,
        Permission::CampaignsApprove,
        Permission::UsersManage,
        Permission::KeysManage,
        Permission::SecurityManage,
        Permission::AuditRead,
        Permission::GdprManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ContactsReadMasked => "contacts:read_masked",
            Permission::ContactsRead => "contacts:read",
            Permission::ContactsWrite => "contacts:write",
            Permission::ContactsImport => "contacts:import",
            Permission::ContactsExport => "contacts:export",
            Permission::ContactsErase => "contacts:erase",
            Permission::ListsManage => "lists:manage",
            Permission::SegmentsManage => "segments:manage",
            Permission::MessagesWrite => "messages:write",
            Permission::CampaignsSend => "campaigns:send",
            Permission::CampaignsApprove => "campaigns:approve",
            Permission::UsersManage => "users:manage",
            Permission::KeysManage => "keys:manage",
            Permission::SecurityManage => "security:manage",
            Permission::AuditRead => "audit:read",
            Permission::GdprManage => "gdpr:manage",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The built-in roles.
pub const BUILT_IN_ROLES: [&str; 6] = ["owner", "admin", "marketer", "sender", "viewer", "auditor"];

/// Expands a comma-separated list of permissions and role names (`owner`, `admin`,
/// `marketer`, `sender`, `viewer`, `auditor`) into permissions.
pub fn parse_scopes(raw: &str) -> Result<BTreeSet<Permission>, String> {
    parse_scopes_with(raw, &[])
}

/// Like `parse_scopes`, also knowing a workspace's custom roles (name and
/// permission names).
pub fn parse_scopes_with(raw: &str, custom: &[(String, Vec<String>)]) -> Result<BTreeSet<Permission>, String> {
    use Permission::*;
    let mut out = BTreeSet::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let role: &[Permission] = match part {
            "owner" => &Permission::ALL,
            "admin" => {
                // Everything but the security settings.
                out.extend(Permission::ALL.into_iter().filter(|p| *p != SecurityManage));
                continue;
            }
            "marketer" => &[
                ContactsReadMasked,
                ContactsWrite,
                ContactsImport,
                ListsManage,
                SegmentsManage,
                MessagesWrite,
            ],
            "sender" => &[ContactsReadMasked, CampaignsSend],
            "viewer" => &[ContactsReadMasked],
            "auditor" => &[ContactsReadMasked, AuditRead],
            other => match Permission::parse(other) {
                Some(p) => {
                    out.insert(p);
                    continue;
                }
                None if custom.iter().any(|(name, _)| name == other) => {
                    for (_, perms) in custom.iter().filter(|(name, _)| name == other) {
                        out.extend(perms.iter().filter_map(|p| Permission::parse(p)));
                    }
                    continue;
                }
                None => {
                    let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                    return Err(format!(
                        "unknown scope {other:?}: use a role (owner, admin, marketer, sender, viewer, auditor{}) or one of {}",
                        custom.iter().map(|(n, _)| format!(", {n}")).collect::<String>(),
                        known.join(", ")
                    ));
                }
            },
        };
        out.extend(role.iter().copied());
    }
    if out.is_empty() {
        return Err("no scopes given".into());
    }
    Ok(out)
}

/// The caller of a service function: an API key, or the operator at the CLI.
#[derive(Debug, Clone)]
pub struct Principal {
    pub workspace_id: String,
    /// `key:<id>` or `cli`, as recorded in the audit log.
    pub actor: String,
    pub permissions: BTreeSet<Permission>,
    pub lists: ListScope,
    /// Keyed hash of the client IP, for the audit log.
    pub ip_hash: Option<String>,
    /// The client's address, to warn before an allowlist shuts it out. Never
    /// stored or logged.
    pub ip: Option<std::net::IpAddr>,
    /// For a signed-in user: when their session's second factor was last
    /// checked (microseconds), for the actions that need a recent check.
    pub factor_checked_at: Option<i64>,
}

/// How recent a second-factor check must be for exports and security settings.
pub const STEP_UP_MICROS: i64 = 10 * 60 * 1_000_000;

impl Principal {
    /// The local operator: every permission on every list of a workspace.
    pub fn operator(workspace_id: &str) -> Self {
        Principal {
            workspace_id: workspace_id.to_string(),
            actor: "cli".into(),
            permissions: Permission::ALL.into_iter().collect(),
            lists: ListScope::All,
            ip_hash: None,
            ip: None,
            factor_checked_at: None,
        }
    }

    pub fn has(&self, p: Permission) -> bool {
        self.permissions.contains(&p)
    }

    /// Fails with `Forbidden` unless the principal holds `p`.
    pub fn require(&self, p: Permission) -> Result<(), AccessError> {
        if self.has(p) {
            Ok(())
        } else {
            Err(AccessError::Forbidden(p))
        }
    }

    /// Fails with `StepUpRequired` unless a signed-in user's session had its
    /// second factor checked within the last 10 minutes (`now` in
    /// microseconds). API keys and the operator at the CLI are not sessions
    /// and are not asked.
    pub fn require_recent_factor(&self, now: i64) -> Result<(), AccessError> {
        if !self.actor.starts_with("user:") {
            return Ok(());
        }
        match self.factor_checked_at {
            Some(at) if now - at <= STEP_UP_MICROS => Ok(()),
            _ => Err(AccessError::StepUpRequired),
        }
    }

    /// Whether an account limited to `lists` (empty: every list) stays within
    /// the lists this principal reaches.
    pub fn covers_lists(&self, lists: &[String]) -> bool {
        match &self.lists {
            ListScope::All => true,
            ListScope::Lists(mine) => !lists.is_empty() && lists.iter().all(|l| mine.contains(l)),
        }
    }

    /// Whether contacts are visible at all (masked or not).
    pub fn require_contact_read(&self) -> Result<(), AccessError> {
        if self.has(Permission::ContactsRead) || self.has(Permission::ContactsReadMasked) {
            Ok(())
        } else {
            Err(AccessError::Forbidden(Permission::ContactsReadMasked))
        }
    }

    /// Decides how identifying fields are shown: unmasked only with `contacts:read`
    /// and a stated purpose.
    pub fn read_mode(&self, purpose: Option<&str>) -> Result<ReadMode, AccessError> {
        self.require_contact_read()?;
        match purpose.map(str::trim).filter(|p| !p.is_empty()) {
            None => Ok(ReadMode::Masked),
            Some(p) => {
                self.require(Permission::ContactsRead)?;
                Ok(ReadMode::Unmasked {
                    purpose: parse_purpose_text(p)?,
                })
            }
        }
    }
}

/// Checks a stated purpose: 1-200 printable characters.
pub fn parse_purpose_text(raw: &str) -> Result<String, AccessError> {
    let p = raw.trim();
    if p.is_empty() || p.len() > 200 || p.chars().any(char::is_control) {
        return Err(AccessError::BadPurpose);
    }
    Ok(p.to_string())
}

/// How contact data leaves the vault for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadMode {
    Masked,
    Unmasked { purpose: String },
}

impl ReadMode {
    pub fn purpose(&self) -> Option<&str> {
        match self {
            ReadMode::Masked => None,
            ReadMode::Unmasked { purpose } => Some(purpose),
        }
    }
}

/// Refusals of the access layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error("this action needs the {} permission", .0.as_str())]
    Forbidden(Permission),
    #[error("a purpose must be 1-200 printable characters")]
    BadPurpose,
    /// The account acted on reaches lists beyond the caller's.
    #[error("this account reaches lists beyond yours, so you cannot manage it")]
    OutOfScope,
    /// A signed-in user must confirm with a second factor first.
    #[error("this action needs a second-factor check within the last 10 minutes: send a code of your authenticator app (or a recovery code) to POST /api/v1/auth/factor, then try again; a user without a second factor must enrol one first")]
    StepUpRequired,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_without_contacts_read_cannot_unmask() {
        let mut p = Principal::operator("ws");
        p.permissions = parse_scopes("viewer").unwrap();
        assert_eq!(p.read_mode(None), Ok(ReadMode::Masked));
        assert_eq!(p.read_mode(Some("support")), Err(AccessError::Forbidden(Permission::ContactsRead)));
    }

    #[test]
    fn step_up_is_asked_of_sessions_only_and_lasts_ten_minutes() {
        let mut user = Principal::operator("ws");
        assert_eq!(user.require_recent_factor(0), Ok(()), "the operator");
        user.actor = "key:k1".into();
        assert_eq!(user.require_recent_factor(0), Ok(()), "an API key");
        user.actor = "user:u1".into();
        assert_eq!(user.require_recent_factor(0), Err(AccessError::StepUpRequired), "never checked");
        user.factor_checked_at = Some(1_000);
        assert_eq!(user.require_recent_factor(1_000 + STEP_UP_MICROS), Ok(()));
        assert_eq!(user.require_recent_factor(1_001 + STEP_UP_MICROS), Err(AccessError::StepUpRequired));
    }

    #[test]
    fn unknown_scopes_are_named() {
        let err = parse_scopes("contacts:read,contacts:fly").unwrap_err();
        assert!(err.contains("contacts:fly"));
    }
}
