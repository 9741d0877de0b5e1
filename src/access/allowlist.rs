//! Address allowlists: CIDR blocks (IPv4 and IPv6) a workspace, a user or an API
//! key may be used from. An empty list allows every address. Entries are stored
//! in their canonical form (`203.0.113.0/24`, `2001:db8::/32`; a bare address is
//! a block of one), so what is shown is what is checked.

use ipnet::IpNet;
use std::net::IpAddr;

/// Most entries one list holds.
pub const MAX_ENTRIES: usize = 100;

/// A parsed allowlist. A stored list with an entry that no longer parses is
/// `unreadable`: it allows no address until it is set again (never every one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    nets: Vec<IpNet>,
    unreadable: bool,
}

impl Allowlist {
    /// Parses entries such as `203.0.113.0/24`, `2001:db8::/48` or `198.51.100.7`.
    /// A block written with host bits (`10.1.2.3/8`) is refused rather than
    /// silently widened or narrowed. The error names the entry (1-based).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        if entries.len() > MAX_ENTRIES {
            return Err(format!("an allowlist holds at most {MAX_ENTRIES} entries"));
        }
        let mut nets: Vec<IpNet> = Vec::with_capacity(entries.len());
        for (i, raw) in entries.iter().enumerate() {
            let raw = raw.as_ref().trim();
            let net = parse_entry(raw).map_err(|why| format!("entry {}: {why}", i + 1))?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(Allowlist { nets, unreadable: false })
    }

    /// Reads a stored list. When an entry no longer parses (a damaged row) the
    /// list keeps the entries that do and is marked unreadable: it then allows
    /// only those, and none at all when none parse, so damage never opens it.
    pub fn from_stored(entries: &[String]) -> Self {
        match Allowlist::parse(entries) {
            Ok(list) => list,
            Err(why) => {
                tracing::warn!(%why, "a stored allowlist does not parse; it allows only the entries that do");
                Allowlist {
                    nets: entries.iter().filter_map(|e| parse_entry(e.trim()).ok()).collect(),
                    unreadable: true,
                }
            }
        }
    }

    /// Whether the list allows every address (it has no entry and is not damaged).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.unreadable
    }

    /// Whether `ip` may be used: always for an empty list; never for an unknown
    /// address when the list is not empty or is damaged.
    pub fn permits(&self, ip: Option<IpAddr>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(ip) = ip else { return false };
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The entries in canonical form, as stored and shown.
    pub fn entries(&self) -> Vec<String> {
        self.nets.iter().map(ToString::to_string).collect()
    }
}

fn parse_entry(raw: &str) -> Result<IpNet, String> {
    if raw.is_empty() {
        return Err("empty; give an address or a block such as 203.0.113.0/24".into());
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net: IpNet = raw
        .parse()
        .map_err(|_| "not an IP address or CIDR block; give for example 203.0.113.0/24, 2001:db8::/48 or 198.51.100.7".to_string())?;
    if net.trunc() != net {
        return Err(format!("has host bits set; the block is {}", net.trunc()));
    }
    Ok(net)
}

/// Whether `ip` falls in any of the `nets` (for trusted proxies).
pub fn in_any(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// Parses one trusted-proxy entry: an address or a CIDR block.
pub fn parse_proxy(raw: &str) -> Result<IpNet, String> {
    parse_entry(raw.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn blocks_and_single_addresses_of_both_families() {
        let list = Allowlist::parse(&["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]).unwrap_or_default();
        assert_eq!(list.entries(), ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]);
        assert!(list.permits(ip("203.0.113.200")));
        assert!(list.permits(ip("2001:db8:1::5")));
        assert!(list.permits(ip("198.51.100.7")));
        assert!(list.permits(ip("::ffff:203.0.113.9")), "an IPv4-mapped peer is its IPv4 address");
        assert!(!list.permits(ip("198.51.100.8")));
        assert!(!list.permits(ip("2001:db9::1")));
        assert!(!list.permits(None), "an unknown address is refused when a list is set");
        assert!(Allowlist::default().permits(None), "an empty list allows every address");
    }

    #[test]
    fn a_damaged_stored_list_never_opens() {
        let stored = |e: &[&str]| Allowlist::from_stored(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let none_parse = stored(&[crate::store::UNREADABLE, "garbage"]);
        assert!(!none_parse.is_empty());
        assert!(!none_parse.permits(ip("203.0.113.9")));
        let one_parses = stored(&["garbage", "203.0.113.0/24"]);
        assert!(one_parses.permits(ip("203.0.113.9")));
        assert!(!one_parses.permits(ip("198.51.100.1")));
        assert!(stored(&[]).permits(ip("198.51.100.1")));
        assert_eq!(crate::store::stored_strings("not json", "test"), [crate::store::UNREADABLE]);
        assert_eq!(crate::store::stored_strings(r#"["a"]"#, "test"), ["a"]);
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            Allowlist::parse(&["10.0.0.0/8", "10.1.2.3/8"]).unwrap_err(),
            "entry 2: has host bits set; the block is 10.0.0.0/8"
        );
        assert!(Allowlist::parse(&["example.com"])
            .unwrap_err()
            .starts_with("entry 1: not an IP address"));
        assert!(Allowlist::parse(&["10.0.0.0/33"]).is_err());
        assert!(Allowlist::parse(&[""]).is_err());
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("10.0.{}.0/24", i % 256)).collect();
        assert!(Allowlist::parse(&many).is_err());
        assert_eq!(Allowlist::parse(&["10.0.0.1", "10.0.0.1/32"]).map(|l| l.entries().len()), Ok(1));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(entries in proptest::collection::vec(".{0,60}", 0..5)) {
            let _ = Allowlist::parse(&entries);
        }

        #[test]
        fn a_block_permits_exactly_its_addresses(a in any::<u32>(), prefix in 0u8..=32, probe in any::<u32>()) {
            let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(a), prefix).map(|n| n.trunc());
            prop_assume!(net.is_ok());
            let net = net.unwrap_or_default();
            let list = Allowlist::parse(&[net.to_string()]).unwrap_or_default();
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            let inside = (probe & mask) == (u32::from(net.network()) & mask);
            prop_assert_eq!(list.permits(Some(IpAddr::from(std::net::Ipv4Addr::from(probe)))), inside);
        }
    }
}
