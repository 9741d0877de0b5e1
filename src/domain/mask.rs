//! Masking of identifying values for readers without `contacts:read`
//! (DESIGN.md §5): enough to recognise a record, never enough to contact a person.

const DOT: &str = "•••";

/// `jane@example.com` becomes `j•••@e•••.com`.
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let l = local.chars().next().map(String::from).unwrap_or_default();
            let (host, tld) = match domain.rsplit_once('.') {
                Some((h, t)) => (h, format!(".{t}")),
                None => (domain, String::new()),
            };
            let h = host.chars().next().map(String::from).unwrap_or_default();
            format!("{l}{DOT}@{h}{DOT}{tld}")
        }
        None => DOT.to_string(),
    }
}

/// `+31612345678` becomes `+31 •••• ••78`.
pub fn mask_phone(e164: &str, country_code: u16) -> String {
    let cc = country_code.to_string();
    let digits: Vec<char> = e164.chars().filter(|c| c.is_ascii_digit()).collect();
    let tail: String = digits.iter().rev().take(2).rev().collect();
    format!("+{cc} •••• ••{tail}")
}

/// `Jane` becomes `J•••`.
pub fn mask_text(value: &str) -> String {
    match value.chars().next() {
        Some(c) => format!("{c}{DOT}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_design_says() {
        assert_eq!(mask_email("jane@example.com"), "j•••@e•••.com");
        assert_eq!(mask_phone("+31612345612", 31), "+31 •••• ••12");
        assert_eq!(mask_text("Jane"), "J•••");
    }
}
