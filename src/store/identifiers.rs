//! The identifier filter of a large import: a Bloom filter of the blind indexes
//! that exist in a workspace, so that the identifiers of new contacts, which a
//! first import is made of, need no look-up in the store's unique indexes (each
//! a random read of a large B-tree). A filter answers "absent" only for an
//! identifier that no contact of the workspace had when it was built and that
//! no batch of its import has written since.
//!
//! It is trusted only while nothing else can have added identifiers: the
//! workspace's audit chain records every change of contacts in the same
//! transaction, so a backend reads the events after the newest one it has
//! checked before it trusts the filter, and an event that may have added an
//! identifier (a contact created or changed, a batch of another import, or an
//! action this module does not know) stops the filter for the rest of the
//! import: every identifier is looked up again. The unique indexes stay the
//! last word: a filter that was wrong makes a batch fail with a conflict, never
//! write a duplicate.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Bits per identifier the filter is sized for: with `HASHES` probes, about one
/// identifier in a hundred that is absent is still reported as maybe present.
const BITS_PER_ENTRY: u64 = 10;
const HASHES: u64 = 7;
/// The largest filter (64 MiB of bits, some 50 million identifiers).
const MAX_BITS: u64 = 1 << 29;

/// A Bloom filter of blind indexes, tied to one import and to the audit event its
/// snapshot ended with. Shared between the import's reader, its planner and the
/// store (bits are set and read atomically).
pub struct IdentifierFilter {
    import_id: String,
    bits: Vec<AtomicU64>,
    mask: u64,
    /// Newest audit sequence number known to add nothing the filter lacks.
    checked: AtomicI64,
    stopped: AtomicBool,
}

impl IdentifierFilter {
    /// An empty filter for `entries` identifiers, built from a snapshot whose
    /// newest audit event in the workspace is `audit_head`.
    pub fn new(import_id: &str, entries: u64, audit_head: i64) -> Self {
        let bits = (entries.max(1024) * BITS_PER_ENTRY).next_power_of_two().min(MAX_BITS);
        IdentifierFilter {
            import_id: import_id.to_string(),
            bits: (0..bits / 64).map(|_| AtomicU64::new(0)).collect(),
            mask: bits - 1,
            checked: AtomicI64::new(audit_head),
            stopped: AtomicBool::new(false),
        }
    }

    /// The two halves of a blind index (already a uniform MAC output) as the
    /// seeds of the probe positions; shorter values are padded.
    fn seeds(bidx: &[u8]) -> (u64, u64) {
        let mut b = [0u8; 16];
        let n = bidx.len().min(16);
        b[..n].copy_from_slice(&bidx[..n]);
        let (lo, hi) = b.split_at(8);
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        (word(lo), word(hi) | 1)
    }

    fn positions(&self, bidx: &[u8]) -> impl Iterator<Item = u64> + '_ {
        let (a, b) = Self::seeds(bidx);
        (0..HASHES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) & self.mask)
    }

    pub fn insert(&self, bidx: &[u8]) {
        for p in self.positions(bidx) {
            if let Some(word) = self.bits.get((p / 64) as usize) {
                word.fetch_or(1 << (p % 64), Ordering::Relaxed);
            }
        }
    }

    /// Whether the identifier may exist; `false` means it was absent from the
    /// snapshot and no batch of the import has written it.
    pub fn may_contain(&self, bidx: &[u8]) -> bool {
        self.positions(bidx).all(|p| {
            self.bits
                .get((p / 64) as usize)
                .is_none_or(|w| w.load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
        })
    }

    /// Whether an identifier can be taken as absent without a look-up (the filter
    /// is in use and says so).
    pub fn absent(&self, bidx: &[u8]) -> bool {
        !self.stopped.load(Ordering::SeqCst) && !self.may_contain(bidx)
    }

    /// The newest audit sequence number already checked.
    pub fn checked(&self) -> i64 {
        self.checked.load(Ordering::SeqCst)
    }

    /// Whether the filter is still in use.
    pub fn in_use(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst)
    }

    /// Takes in the audit events `(seq, action, target)` written after
    /// `checked()`, in order; returns whether the filter is still in use.
    pub fn check_events<'a>(&self, events: impl IntoIterator<Item = (i64, &'a str, Option<&'a str>)>) -> bool {
        for (seq, action, target) in events {
            if may_add_identifiers(action, target, &self.import_id) {
                self.stop();
                return false;
            }
            self.checked.fetch_max(seq, Ordering::SeqCst);
        }
        self.in_use()
    }

    /// Stops the filter: every identifier is looked up from now on.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Whether an audit event may stand for a change that added an identifier to a
/// workspace's contacts, other than a batch of the import `import_id` itself.
/// Unknown actions may (a new kind of change must not be taken as harmless).
fn may_add_identifiers(action: &str, target: Option<&str>, import_id: &str) -> bool {
    const HARMLESS_PREFIXES: [&str; 6] = ["user.", "auth.", "api_key.", "security.", "role.", "list."];
    const HARMLESS: [&str; 11] = [
        "contact.read_unmasked",
        "contacts.listed_unmasked",
        "consent.read_unmasked",
        "consent.recorded",
        "contact.deleted",
        "export.started",
        "export.finished",
        "import.started",
        "import.finished",
        "attributes.created",
        "integrity.violation",
    ];
    if action == "import.batch_committed" {
        return target.and_then(|t| t.strip_prefix("import:")) != Some(import_id);
    }
    !(HARMLESS.contains(&action) || HARMLESS_PREFIXES.iter().any(|p| action.starts_with(p)))
}

/// How many contacts a store may hold for an import of `new_rows` rows to build
/// a filter: reading every identifier costs about as much as looking up a few
/// of them, so the filter pays for itself only when the import is large beside
/// the contacts that exist.
pub fn worth_building(existing_contacts: u64, new_rows: u64) -> bool {
    new_rows >= 10_000 && existing_contacts <= new_rows.saturating_mul(4)
}

/// The bound of the contact count `worth_building` needs to know.
pub fn count_bound(new_rows: u64) -> u64 {
    new_rows.saturating_mul(4).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bidx(n: u64) -> [u8; 16] {
        use sha2::Digest;
        let d = sha2::Sha256::digest(n.to_le_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }

    #[test]
    fn an_inserted_identifier_is_never_reported_absent() {
        let f = IdentifierFilter::new("imp", 100_000, 0);
        for n in 0..100_000 {
            f.insert(&bidx(n));
        }
        assert!((0..100_000).all(|n| f.may_contain(&bidx(n)) && !f.absent(&bidx(n))));
        let false_positives = (100_000..200_000).filter(|n| f.may_contain(&bidx(*n))).count();
        assert!(
            false_positives < 2_000,
            "{false_positives} of 100,000 absent identifiers reported present"
        );
    }

    #[test]
    fn only_harmless_events_and_the_imports_own_batches_keep_the_filter() {
        let f = IdentifierFilter::new("imp_1", 10, 5);
        let absent = bidx(1);
        assert!(f.absent(&absent));
        assert!(f.check_events([
            (6, "import.batch_committed", Some("import:imp_1")),
            (7, "contact.read_unmasked", Some("contact:x")),
            (8, "user.signed_in", None),
        ]));
        assert_eq!(f.checked(), 8);
        assert!(f.absent(&absent));
        assert!(!f.check_events([(9, "import.batch_committed", Some("import:imp_2"))]));
        assert!(!f.absent(&absent), "a stopped filter reports nothing absent");
        assert!(!f.in_use());

        for (action, target) in [
            ("contact.created", Some("contact:x")),
            ("contact.updated", Some("contact:x")),
            ("import.batch_committed", None),
            ("something.new", None),
        ] {
            let f = IdentifierFilter::new("imp_1", 10, 0);
            assert!(!f.check_events([(1, action, target)]), "{action}");
            assert_eq!(f.checked(), 0);
        }
    }

    #[test]
    fn a_filter_is_built_only_for_imports_large_beside_the_contacts_that_exist() {
        assert!(worth_building(0, 1_000_000));
        assert!(worth_building(4_000_000, 1_000_000));
        assert!(!worth_building(4_000_001, 1_000_000));
        assert!(!worth_building(0, 9_999));
        assert_eq!(count_bound(1_000_000), 4_000_001);
    }
}
