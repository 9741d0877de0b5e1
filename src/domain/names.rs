//! Checked free-text values (names and attribute values): bounded length, no control
//! characters other than tab.

use super::MAX_FIELD_BYTES;

/// Trims a free-text value; `Ok(None)` when it is empty.
pub fn parse_text(raw: &str) -> Result<Option<String>, &'static str> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.len() > MAX_FIELD_BYTES {
        return Err("value is longer than 4096 bytes");
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\t') {
        return Err("value contains control characters");
    }
    Ok(Some(trimmed.to_string()))
}
