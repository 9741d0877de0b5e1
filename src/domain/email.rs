//! `EmailAddress`: an address a mail system accepts, internationalised domains
//! included. Parsing normalises once: surrounding whitespace is trimmed, the domain is
//! lower-cased and converted to its ASCII (punycode) form for the blind index, so
//! `Jane@Exämple.com` and `jane@xn--exmple-cua.com` are the same contact.

use std::fmt;

/// A checked email address. `Debug` never prints the address.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress {
    display: String,
    normalized: String,
}

impl EmailAddress {
    /// Parses and normalises an address; the error says what is wrong without
    /// repeating the value.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("email is empty");
        }
        if trimmed.len() > 254 {
            return Err("email is longer than 254 characters");
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("email contains whitespace or control characters");
        }
        let at = trimmed.rfind('@').ok_or("email has no '@'")?;
        let (local, domain) = (&trimmed[..at], &trimmed[at + 1..]);
        if local.is_empty() {
            return Err("email has nothing before '@'");
        }
        if local.len() > 64 {
            return Err("email local part is longer than 64 characters");
        }
        if domain.is_empty() {
            return Err("email has no domain after '@'");
        }
        let ascii_domain = idna::domain_to_ascii(domain).map_err(|_| "email domain is not a valid domain name")?;
        if ascii_domain.is_empty() || ascii_domain.len() > 253 {
            return Err("email domain is not a valid domain name");
        }
        let labels: Vec<&str> = ascii_domain.split('.').collect();
        if labels.len() < 2 {
            return Err("email domain has no dot");
        }
        for label in &labels {
            if label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
                || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err("email domain is not a valid domain name");
            }
        }
        if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
            return Err("email domain is not a valid domain name");
        }
        let candidate = format!("{local}@{ascii_domain}");
        if !email_address::EmailAddress::is_valid(&candidate) {
            return Err("email local part is not valid");
        }
        let display_domain = domain.to_lowercase();
        Ok(EmailAddress {
            display: format!("{local}@{display_domain}"),
            normalized: candidate.to_lowercase(),
        })
    }

    /// Reads back an address this program parsed and sealed with an authenticated
    /// cipher: it is only re-normalised, not re-validated.
    pub fn from_sealed(display: &str) -> Result<Self, &'static str> {
        let at = display.rfind('@').ok_or("email has no '@'")?;
        let (local, domain) = (&display[..at], &display[at + 1..]);
        let ascii = if domain.is_ascii() {
            domain.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(domain).map_err(|_| "email domain is not a valid domain name")?
        };
        Ok(EmailAddress {
            display: display.to_string(),
            normalized: format!("{local}@{ascii}").to_lowercase(),
        })
    }

    /// The address as it will be shown and stored (encrypted).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The form the blind index is computed over.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_common_addresses() {
        for ok in ["a@b.co", "jane.doe+tag@example.com", "x_y@sub.example.org", "o'brien@example.ie"] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn normalises_case_and_idn_domains() {
        let a = EmailAddress::parse("  Jane@Exämple.COM ").unwrap();
        let b = EmailAddress::parse("jane@xn--exmple-cua.com").unwrap();
        assert_eq!(a.normalized(), b.normalized());
        assert_eq!(a.as_str(), "Jane@exämple.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a@@b.com",
            "a@1.2",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_address() {
        let a = EmailAddress::parse("secret@example.com").unwrap();
        assert!(!format!("{a:?}").contains("secret"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = EmailAddress::parse(&s);
        }

        #[test]
        fn normalized_form_reparses_to_itself(local in "[a-z0-9._+-]{1,20}", domain in "[a-z]{1,10}\\.[a-z]{2,5}") {
            let raw = format!("{local}@{domain}");
            if let Ok(parsed) = EmailAddress::parse(&raw) {
                let again = EmailAddress::parse(parsed.normalized()).unwrap();
                prop_assert_eq!(again.normalized(), parsed.normalized());
            }
        }
    }
}
