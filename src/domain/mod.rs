//! Pure types and rules of the vault, with no I/O: parsed identifiers, channels,
//! purposes, consent actions and the attribute classification. Everything that comes
//! from outside (HTTP bodies, CSV cells, CLI arguments, database rows) is turned into
//! one of these types once, and the rest of the code trusts them.

pub mod consent;
pub mod email;
pub mod mask;
pub mod names;
pub mod phone;

pub use consent::{Channel, ConsentAction, ConsentMethod, Purpose};
pub use email::EmailAddress;
pub use phone::{PhoneNumber, Region};

use serde::{Deserialize, Serialize};

/// How an attribute of a workspace schema is stored (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeClass {
    /// Stored only as ciphertext and masked for readers without `contacts:read`.
    Identifying,
    /// Stored in clear, typed, usable in segments.
    Segmentable,
}

impl AttributeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeClass::Identifying => "identifying",
            AttributeClass::Segmentable => "segmentable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "identifying" => Some(AttributeClass::Identifying),
            "segmentable" => Some(AttributeClass::Segmentable),
            _ => None,
        }
    }
}

/// Parses an attribute name: lower-case ASCII letters, digits and `_`, starting with
/// a letter, at most 64 characters.
pub fn parse_attribute_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("attribute name is empty".into());
    }
    if name.len() > 64 {
        return Err("attribute name is longer than 64 characters".into());
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err("attribute names use lower-case letters, digits and '_' and start with a letter".into());
    }
    Ok(name.to_string())
}

/// Longest value accepted for a name or attribute, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;
