//! The vocabulary of the consent ledger: channels, purposes, actions and methods.
//! A consent is always per contact x channel x purpose; the ledger is append-only and
//! the current state is derived from it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A channel a contact can be reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    Whatsapp,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Whatsapp];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            "whatsapp" => Ok(Channel::Whatsapp),
            other => Err(format!("unknown channel {other:?}: use email, sms or whatsapp")),
        }
    }

    /// Parses a comma-separated list such as `email,sms`.
    pub fn parse_list(raw: &str) -> Result<Vec<Channel>, String> {
        let mut out = Vec::new();
        for part in raw.split([',', ';', ' ']).filter(|p| !p.trim().is_empty()) {
            let c = Channel::parse(part)?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err("no channel given: use email, sms or whatsapp".into());
        }
        Ok(out)
    }

    /// Whether this channel is addressed by phone number.
    pub fn uses_phone(self) -> bool {
        !matches!(self, Channel::Email)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a consent is for, e.g. `marketing` or `newsletter`: a short lower-case slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Purpose(String);

impl Purpose {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let p = raw.trim().to_ascii_lowercase();
        if p.is_empty() || p.len() > 64 || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err("consent purpose must be 1-64 letters, digits, '_' or '-' (for example marketing)".into());
        }
        Ok(Purpose(p))
    }

    pub fn marketing() -> Self {
        Purpose("marketing".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a ledger event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAction {
    Granted,
    Withdrawn,
    Objected,
}

impl ConsentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentAction::Granted => "granted",
            ConsentAction::Withdrawn => "withdrawn",
            ConsentAction::Objected => "objected",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "granted" => Some(ConsentAction::Granted),
            "withdrawn" => Some(ConsentAction::Withdrawn),
            "objected" => Some(ConsentAction::Objected),
            _ => None,
        }
    }

    /// Whether an address with this state must be suppressed.
    pub fn suppresses(self) -> bool {
        !matches!(self, ConsentAction::Granted)
    }
}

/// How a consent was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    Form,
    DoubleOptIn,
    Import,
    Api,
    UnsubscribeLink,
}

impl ConsentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentMethod::Form => "form",
            ConsentMethod::DoubleOptIn => "double_opt_in",
            ConsentMethod::Import => "import",
            ConsentMethod::Api => "api",
            ConsentMethod::UnsubscribeLink => "unsubscribe_link",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "form" => Some(ConsentMethod::Form),
            "double_opt_in" => Some(ConsentMethod::DoubleOptIn),
            "import" => Some(ConsentMethod::Import),
            "api" => Some(ConsentMethod::Api),
            "unsubscribe_link" => Some(ConsentMethod::UnsubscribeLink),
            _ => None,
        }
    }
}

/// Checks a consent source ("where and how the consent was obtained").
pub fn parse_source(raw: &str) -> Result<String, &'static str> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("consent source is empty: say where and how the consent was obtained");
    }
    if s.len() > 500 {
        return Err("consent source is longer than 500 characters");
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("consent source contains control characters");
    }
    Ok(s.to_string())
}
