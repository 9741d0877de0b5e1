//! `PhoneNumber`: a number parsed to E.164 with the `rlibphonenumber` crate (a port
//! of Google's libphonenumber with its metadata), and `Region`, the default country
//! for numbers written without one.

use rlibphonenumber::{PhoneNumberFormat, PHONE_NUMBER_UTIL};
use std::fmt;
use std::str::FromStr;

/// A default region (ISO 3166-1 alpha-2) for numbers without an international prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Region(rlibphonenumber::enums::Region);

impl Region {
    pub fn parse(raw: &str) -> Result<Self, String> {
        rlibphonenumber::enums::Region::from_str(&raw.trim().to_ascii_uppercase())
            .ok()
            .filter(|r| PHONE_NUMBER_UTIL.get_country_code_for_region(*r).is_some())
            .map(Region)
            .ok_or_else(|| format!("unknown region {:?}: use a two-letter country code such as NL", raw.trim()))
    }
}

/// `Region(NL)`: part of an import's options hash, so it stays the same across versions.
impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.0)
    }
}

/// A valid phone number in E.164 form. `Debug` never prints the number.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
}

impl PhoneNumber {
    /// Parses a number; without a leading `+` or `00` the default region is needed.
    pub fn parse(raw: &str, default_region: Option<Region>) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("phone is empty");
        }
        if trimmed.len() > 64 {
            return Err("phone is longer than 64 characters");
        }
        if !trimmed.chars().any(|c| c.is_ascii_digit()) {
            return Err("phone has no digits");
        }
        let international = trimmed.starts_with('+') || trimmed.starts_with("00");
        if !international && default_region.is_none() {
            return Err("phone has no country code: write it as +CC... or pass a default region (--region)");
        }
        // `00` is the international prefix of most countries; without a region to
        // say which prefix applies, it is read as `+`.
        let plus;
        let input = match trimmed.strip_prefix("00") {
            Some(rest) if default_region.is_none() => {
                plus = format!("+{rest}");
                plus.as_str()
            }
            _ => trimmed,
        };
        let number = PHONE_NUMBER_UTIL
            .parse(input, default_region.map(|r| r.0))
            .map_err(|_| "phone is not a phone number")?;
        if !number.is_valid() {
            return Err("phone is not a valid number for its country");
        }
        let e164 = number.format_as(PhoneNumberFormat::E164).into_owned();
        Ok(PhoneNumber { e164 })
    }

    /// Reads back a number this program wrote in E.164 form and sealed with an
    /// authenticated cipher, so it needs only a shape check, not a full parse
    /// (which costs far more than the decryption).
    pub fn from_sealed_e164(e164: &str) -> Result<Self, &'static str> {
        let digits = e164.strip_prefix('+').ok_or("phone is not in E.164 form")?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("phone is not in E.164 form");
        }
        Ok(PhoneNumber { e164: e164.to_string() })
    }

    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The country calling code (parsed on demand: only masking needs it).
    pub fn country_code(&self) -> u16 {
        PHONE_NUMBER_UTIL
            .parse(&self.e164, None)
            .ok()
            .and_then(|n| u16::try_from(n.country_code).ok())
            .unwrap_or(0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_national_numbers_with_a_region() {
        let nl = Region::parse("nl").unwrap();
        let p = PhoneNumber::parse("06 12345678", Some(nl)).unwrap();
        assert_eq!(p.as_str(), "+31612345678");
        assert_eq!(p.country_code(), 31);
    }

    #[test]
    fn parses_international_numbers_without_a_region() {
        let p = PhoneNumber::parse("+44 20 7946 0958", None).unwrap();
        assert_eq!(p.as_str(), "+442079460958");
    }

    #[test]
    fn regions_are_two_letter_country_codes_and_print_the_same_across_versions() {
        assert_eq!(format!("{:?}", Region::parse(" nl ").unwrap()), "Region(NL)");
        for bad in ["", "zz", "NLD", "001"] {
            assert!(Region::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_of_several_countries_come_out_in_e164() {
        for (raw, region, e164) in [
            ("+1 650-253-0000", None, "+16502530000"),
            ("(650) 253-0000", Some("US"), "+16502530000"),
            ("+39 02 3661 8300", None, "+390236618300"),
            ("0049 30 12345678", None, "+493012345678"),
            ("+44 (0)20 7946 0958", None, "+442079460958"),
            ("020 7946 0958", Some("GB"), "+442079460958"),
        ] {
            let p = PhoneNumber::parse(raw, region.map(|r| Region::parse(r).unwrap())).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(p.as_str(), e164, "{raw}");
        }
    }

    #[test]
    fn rejects_national_numbers_without_a_region() {
        assert!(PhoneNumber::parse("0612345678", None).is_err());
    }

    #[test]
    fn rejects_junk() {
        for bad in ["", "abc", "+", "+31 1", "+999 123456789"] {
            assert!(PhoneNumber::parse(bad, None).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = PhoneNumber::parse(&s, Some(Region::parse("NL").unwrap()));
        }
    }
}
