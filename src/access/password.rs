//! Passwords (DESIGN.md §4): the policy a new password must meet, and Argon2id
//! hashing in PHC format on a bounded pool of blocking threads.
//!
//! The policy follows OWASP ASVS: at least 12 characters, up to 1,024 accepted (so
//! any passphrase of 128 fits), any Unicode, never truncated, no composition rules;
//! refused when it is one of the 10,000 most common passwords shipped in
//! `data/common-passwords.txt` or when zxcvbn scores it below 3. Passwords are
//! compared after Unicode NFKC normalization, so the same passphrase typed on two
//! keyboards that encode an accent differently is the same password.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// Fewest characters a password may have.
pub const MIN_CHARS: usize = 12;
/// Most characters a password may have (bounds the work of checking and hashing).
pub const MAX_CHARS: usize = 1024;
/// zxcvbn's estimate reads this many characters; beyond them a password only
/// grows stronger, and the estimate's cost grows with the length.
const STRENGTH_CHARS: usize = 128;
/// Lowest zxcvbn score accepted (3: more than 10^8 guesses).
const MIN_SCORE: u8 = 3;

/// OWASP's minimum Argon2id parameters: 19 MiB, two passes, one lane.
pub const MIN_MEMORY_KIB: u32 = 19_456;
pub const MIN_ITERATIONS: u32 = 2;

static COMMON_PASSWORDS: &str = include_str!("../../data/common-passwords.txt");

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect())
}

/// Why a new password was refused; the message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the password has {chars} characters; choose one of at least {MIN_CHARS} (a few unrelated words make a good one)")]
    TooShort { chars: usize },
    #[error("the password has {chars} characters; choose one of at most {MAX_CHARS}")]
    TooLong { chars: usize },
    #[error("the password is one of the 10,000 most common passwords; choose one nobody else would")]
    Common,
    #[error("the password is too easy to guess{}{}; choose a longer one of unrelated words", warning.as_ref().map(|w| format!(" ({w})")).unwrap_or_default(), suggestion.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Weak {
        warning: Option<String>,
        suggestion: Option<String>,
    },
}

/// NFKC form of a password, wiped from memory when dropped.
fn normalized(password: &str) -> Zeroizing<String> {
    Zeroizing::new(password.nfkc().collect())
}

/// Checks a new password against the policy. `user_inputs` are words the
/// password must not lean on (the user's email address, name, the workspace's
/// name): zxcvbn counts them as known.
pub fn check_policy(password: &str, user_inputs: &[&str]) -> Result<(), PolicyError> {
    let password = normalized(password);
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PolicyError::TooShort { chars });
    }
    if chars > MAX_CHARS {
        return Err(PolicyError::TooLong { chars });
    }
    if common_passwords().contains(password.to_lowercase().as_str()) {
        return Err(PolicyError::Common);
    }
    let head: Zeroizing<String> = Zeroizing::new(password.chars().take(STRENGTH_CHARS).collect());
    let known = known_words(user_inputs);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(&head, &known);
    if u8::from(estimate.score()) < MIN_SCORE {
        let feedback = estimate.feedback();
        return Err(PolicyError::Weak {
            warning: feedback.and_then(|f| f.warning()).map(|w| w.to_string()),
            suggestion: feedback.and_then(|f| f.suggestions().first()).map(|s| s.to_string()),
        });
    }
    Ok(())
}

/// The user's details as zxcvbn should know them: each whole, and each part of
/// three characters or more (an address's name and domain labels, a name's words).
fn known_words(inputs: &[&str]) -> Vec<String> {
    let mut words = Vec::new();
    for input in inputs {
        let lower = input.to_lowercase();
        words.extend(
            lower
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.chars().count() >= 3)
                .map(str::to_string),
        );
        words.push(lower);
    }
    words.sort();
    words.dedup();
    words
}

/// Argon2id cost parameters (from the settings; never below OWASP's minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: MIN_MEMORY_KIB,
            iterations: MIN_ITERATIONS,
            parallelism: 1,
        }
    }
}

impl HashCost {
    /// Refuses parameters below OWASP's minimum or beyond what a server can bear.
    pub fn validate(self) -> anyhow::Result<Self> {
        if self.memory_kib < MIN_MEMORY_KIB {
            anyhow::bail!(
                "argon2_memory_kib is {}; give at least {MIN_MEMORY_KIB} (19 MiB, OWASP's minimum)",
                self.memory_kib
            );
        }
        if self.memory_kib > 4 * 1024 * 1024 {
            anyhow::bail!("argon2_memory_kib is {}; give at most 4194304 (4 GiB)", self.memory_kib);
        }
        if !(MIN_ITERATIONS..=100).contains(&self.iterations) {
            anyhow::bail!("argon2_iterations is {}; give {MIN_ITERATIONS} to 100", self.iterations);
        }
        if !(1..=64).contains(&self.parallelism) {
            anyhow::bail!("argon2_parallelism is {}; give 1 to 64", self.parallelism);
        }
        Ok(self)
    }

    fn params(self) -> anyhow::Result<Params> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// It matches; `rehash` says the stored hash is weaker than the current
    /// settings (another algorithm or lower costs) and should be replaced.
    Valid {
        rehash: bool,
    },
    Invalid,
}

/// Hashes and verifies passwords with Argon2id. Each hash takes tens of
/// milliseconds of CPU and `memory_kib` of memory, so hashing runs on a pool of
/// its own threads, `pool` of them, at a lower scheduling priority: a burst of
/// sign-ins cannot starve the requests that need no hash, or exhaust memory.
pub struct PasswordHasher {
    cost: HashCost,
    params: Params,
    pool: Arc<HashPool>,
    /// A hash of a random password with the current costs (made on first need):
    /// verifying against it takes as long as against a real one, so unknown
    /// accounts answer as slowly.
    dummy: Arc<OnceLock<String>>,
}

impl PasswordHasher {
    /// `pool` is the most hashes computed at once (at least one).
    pub fn new(cost: HashCost, pool: usize) -> anyhow::Result<Self> {
        let cost = cost.validate()?;
        let params = cost.params()?;
        Ok(PasswordHasher {
            cost,
            params,
            pool: Arc::new(HashPool::new(pool.max(1))),
            dummy: Arc::new(OnceLock::new()),
        })
    }

    /// OWASP's minimum costs (Argon2's defaults), one hashing thread per two CPUs
    /// (at least one).
    pub fn standard() -> Self {
        let pool = (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) / 2).max(1);
        PasswordHasher {
            cost: HashCost::default(),
            params: Params::DEFAULT,
            pool: Arc::new(HashPool::new(pool)),
            dummy: Arc::new(OnceLock::new()),
        }
    }

    pub fn cost(&self) -> HashCost {
        self.cost
    }

    /// The PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) of a password.
    /// Check the policy first: this hashes whatever it is given.
    pub async fn hash(&self, password: &SecretString) -> anyhow::Result<String> {
        let normalized = normalized(password.expose_secret());
        let params = self.params.clone();
        self.on_pool(move || hash_blocking(&params, &normalized)).await?
    }

    /// Checks a password against a stored PHC string; with `None` (no such
    /// account) it checks against a dummy hash, taking the same time, and answers
    /// `Invalid`. A malformed stored string is `Invalid`, never a panic.
    pub async fn verify(&self, password: &SecretString, stored: Option<&str>) -> anyhow::Result<Verified> {
        let normalized = normalized(password.expose_secret());
        let stored = stored.map(str::to_string);
        let (cost, params, dummy) = (self.cost, self.params.clone(), self.dummy.clone());
        self.on_pool(move || {
            let known = stored.is_some();
            let phc = match stored {
                Some(s) => s,
                None => dummy
                    .get_or_init(|| {
                        let random = Zeroizing::new(hex::encode(crate::crypto::random_bytes::<32>()));
                        hash_blocking(&params, &random).unwrap_or_default()
                    })
                    .clone(),
            };
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return Verified::Invalid;
            };
            // The stored string names its own algorithm and costs.
            if Argon2::default().verify_password(normalized.as_bytes(), &parsed).is_err() || !known {
                return Verified::Invalid;
            }
            Verified::Valid {
                rehash: needs_rehash(&parsed, cost),
            }
        })
        .await
    }

    async fn on_pool<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.run(Box::new(move || {
            // The caller may have gone (a closed connection); then the answer is dropped.
            let _ = tx.send(f());
        }))?;
        rx.await.map_err(|_| anyhow::anyhow!("a password hashing thread stopped"))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads password hashes run on, taking jobs in arrival order, started
/// at the first hash. Two things keep a flood of sign-ins (wrong passwords
/// included, which must be hashed too) from starving the requests that need no
/// hash: on Linux the threads run at nice 10, so when the CPU is busy the rest
/// of the server comes first; and while more hashes wait, each thread rests
/// after a hash for as long as the hash took, so under a burst hashing takes at
/// most half a CPU per thread and its memory traffic half the time. A lone
/// sign-in is hashed at once, at full speed. The threads end with the hasher.
struct HashPool {
    threads: usize,
    jobs: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    /// Jobs sent and not yet taken by a thread.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// The niceness of hashing threads (where the platform lets it be set).
pub const HASHING_NICENESS: i32 = 10;

impl HashPool {
    fn new(threads: usize) -> Self {
        HashPool {
            threads,
            jobs: std::sync::Mutex::new(None),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    fn start(threads: usize, waiting: Arc<std::sync::atomic::AtomicUsize>) -> anyhow::Result<std::sync::mpsc::Sender<Job>> {
        use std::sync::atomic::Ordering;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let (rx, waiting) = (rx.clone(), waiting.clone());
            std::thread::Builder::new().name(format!("password-hash-{i}")).spawn(move || {
                lower_priority();
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    waiting.fetch_sub(1, Ordering::AcqRel);
                    let started = std::time::Instant::now();
                    // A job that panics drops its answer (its caller gets an
                    // error) and leaves the thread serving the others.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a password hashing job panicked");
                    }
                    if waiting.load(Ordering::Acquire) > 0 {
                        std::thread::sleep(started.elapsed());
                    }
                }
            })?;
        }
        Ok(tx)
    }

    fn run(&self, job: Job) -> anyhow::Result<()> {
        let mut jobs = self
            .jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("the password hashing pool is unusable"))?;
        let jobs = match &mut *jobs {
            Some(tx) => tx,
            empty => empty.insert(Self::start(self.threads, self.waiting.clone())?),
        };
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        jobs.send(job).map_err(|_| {
            self.waiting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            anyhow::anyhow!("the password hashing pool has stopped")
        })
    }
}

/// Lowers the calling thread's scheduling priority to `HASHING_NICENESS`
/// (best effort: a platform or sandbox that refuses leaves it as it is).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
        // thread-priority maps 0..=99 linearly onto niceness 19..=-20; 22 is nice 10.
        if let Ok(value) = ThreadPriorityValue::try_from(22u8) {
            if let Err(e) = set_current_thread_priority(ThreadPriority::Crossplatform(value)) {
                tracing::debug!(error = ?e, "could not lower the priority of a password hashing thread");
            }
        }
    }
}

fn hash_blocking(params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    Ok(argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("failed to hash a password: {e}"))?
        .to_string())
}

/// Whether a stored hash is weaker than `cost` asks for today.
fn needs_rehash(parsed: &PasswordHash<'_>, cost: HashCost) -> bool {
    if parsed.algorithm != Algorithm::Argon2id.ident() || parsed.version != Some(Version::V0x13.into()) {
        return true;
    }
    let Ok(stored) = Params::try_from(parsed) else { return true };
    stored.m_cost() < cost.memory_kib || stored.t_cost() < cost.iterations || stored.p_cost() < cost.parallelism
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_on_threads_of_their_own_at_a_lower_priority() {
        let hasher = PasswordHasher::new(HashCost::default(), 2).unwrap();
        let (name, nice) = hasher
            .on_pool(|| {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
                // Fields after the command name: state is field 3, nice field 19.
                let rest = stat.rsplit_once(") ").map(|(_, r)| r.to_string()).unwrap_or_default();
                let nice: i32 = rest.split(' ').nth(16).and_then(|n| n.parse().ok()).unwrap_or(0);
                (std::thread::current().name().map(str::to_string), nice)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref().map(|n| n.starts_with("password-hash-")), Some(true));
        assert_eq!(nice, HASHING_NICENESS);
        // Many at once finish, in any order, and the pool ends with the hasher.
        let phc = hasher.hash(&SecretString::from("correct horse battery".to_string())).await.unwrap();
        let password = SecretString::from("correct horse battery".to_string());
        let checks = (0..8).map(|_| hasher.verify(&password, Some(&phc)));
        for v in futures_util::future::join_all(checks).await {
            assert!(matches!(v.unwrap(), Verified::Valid { .. }));
        }
    }
    use proptest::prelude::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn the_shipped_list_holds_ten_thousand_passwords() {
        assert_eq!(common_passwords().len(), 10_000);
        assert!(common_passwords().contains("password"));
    }

    #[test]
    fn the_policy_says_why_a_password_is_refused() {
        assert_eq!(check_policy("short", &[]), Err(PolicyError::TooShort { chars: 5 }));
        // Characters, not bytes: eleven two-byte letters are still too short.
        assert_eq!(check_policy(&"é".repeat(11), &[]), Err(PolicyError::TooShort { chars: 11 }));
        let long = "correct horse battery staple ".repeat(40);
        assert_eq!(check_policy(&long, &[]), Err(PolicyError::TooLong { chars: 1160 }));
        // Common passwords of twelve characters or more, in any case.
        assert_eq!(check_policy("1qaz2wsx3edc", &[]), Err(PolicyError::Common));
        assert_eq!(check_policy("1QAZ2WSX3EDC", &[]), Err(PolicyError::Common));
        let weak = check_policy("aaaaaaaaaaaaaaaa", &[]).unwrap_err();
        assert!(matches!(weak, PolicyError::Weak { .. }), "{weak:?}");
        assert!(weak.to_string().starts_with("the password is too easy to guess"), "{weak}");
        // The user's own details count as known words, also the parts of an address.
        let details = ["marjolein.dekker@example.com"];
        assert!(matches!(check_policy("Marjolein2024", &details), Err(PolicyError::Weak { .. })));
        assert_eq!(check_policy("Marjolein2024", &[]), Ok(()));
        let message = PolicyError::TooShort { chars: 5 }.to_string();
        assert!(message.contains("at least 12"), "{message}");
    }

    #[test]
    fn long_and_unusual_passwords_pass_untruncated() {
        assert_eq!(check_policy("vlinder kapstok zonnebril 7", &[]), Ok(()));
        assert_eq!(check_policy("Ŝtormo ĉe la maro, ĝis revido!", &[]), Ok(()));
        assert_eq!(check_policy("緑の象が月曜日に自転車で踊る", &[]), Ok(()));
        let passphrase: String = "river quartz lantern mosaic ".repeat(5).chars().take(128).collect();
        assert_eq!(check_policy(&passphrase, &[]), Ok(()));
        // A thousand characters of no pattern.
        let mut state = 0x2545_f491_u32;
        let noise: String = (0..1000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from(b'!' + ((state >> 16) % 94) as u8)
            })
            .collect();
        assert_eq!(check_policy(&noise, &[]).map_err(|e| e.to_string()), Ok(()));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_with_the_configured_costs() {
        let hasher = PasswordHasher::new(HashCost::default(), 2).unwrap();
        let phc = hasher.hash(&secret("vlinder kapstok zonnebril 7")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("vlinder"));
        let again = hasher.hash(&secret("vlinder kapstok zonnebril 7")).await.unwrap();
        assert_ne!(phc, again, "every hash has its own salt");
        assert_eq!(
            hasher.verify(&secret("vlinder kapstok zonnebril 7"), Some(&phc)).await.unwrap(),
            Verified::Valid { rehash: false }
        );
        assert_eq!(
            hasher.verify(&secret("vlinder kapstok zonnebril 8"), Some(&phc)).await.unwrap(),
            Verified::Invalid
        );
    }

    #[tokio::test]
    async fn raised_costs_ask_for_a_rehash() {
        let old = PasswordHasher::new(HashCost::default(), 1).unwrap();
        let phc = old.hash(&secret("river quartz lantern mosaic")).await.unwrap();
        let raised = PasswordHasher::new(
            HashCost {
                iterations: 3,
                ..HashCost::default()
            },
            1,
        )
        .unwrap();
        assert_eq!(
            raised.verify(&secret("river quartz lantern mosaic"), Some(&phc)).await.unwrap(),
            Verified::Valid { rehash: true }
        );
        let rehashed = raised.hash(&secret("river quartz lantern mosaic")).await.unwrap();
        assert!(rehashed.starts_with("$argon2id$v=19$m=19456,t=3,p=1$"), "{rehashed}");
        assert_eq!(
            raised
                .verify(&secret("river quartz lantern mosaic"), Some(&rehashed))
                .await
                .unwrap(),
            Verified::Valid { rehash: false }
        );
        // Another algorithm (Argon2i) asks for a rehash too.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, HashCost::default().params().unwrap())
            .hash_password(b"river quartz lantern mosaic", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert_eq!(
            old.verify(&secret("river quartz lantern mosaic"), Some(&argon2i)).await.unwrap(),
            Verified::Valid { rehash: true }
        );
    }

    #[tokio::test]
    async fn unknown_accounts_and_malformed_hashes_are_invalid() {
        let hasher = PasswordHasher::new(HashCost::default(), 1).unwrap();
        assert_eq!(hasher.verify(&secret("anything at all"), None).await.unwrap(), Verified::Invalid);
        for stored in ["", "$argon2id$", "not a hash", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$"] {
            assert_eq!(
                hasher.verify(&secret("anything at all"), Some(stored)).await.unwrap(),
                Verified::Invalid,
                "{stored:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_same_passphrase_in_another_unicode_form_matches() {
        let hasher = PasswordHasher::new(HashCost::default(), 1).unwrap();
        // "é" precomposed, and as "e" followed by a combining acute accent.
        let phc = hasher.hash(&secret("caf\u{e9} au lait met suiker")).await.unwrap();
        assert_eq!(
            hasher.verify(&secret("cafe\u{301} au lait met suiker"), Some(&phc)).await.unwrap(),
            Verified::Valid { rehash: false }
        );
    }

    #[test]
    fn the_standard_costs_are_owasps_minimum() {
        let p = Params::DEFAULT;
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (MIN_MEMORY_KIB, MIN_ITERATIONS, 1));
        assert_eq!(PasswordHasher::standard().cost(), HashCost::default());
    }

    #[test]
    fn costs_below_the_minimum_are_refused_with_the_setting_named() {
        let low = HashCost {
            memory_kib: 4096,
            ..HashCost::default()
        };
        let e = low.validate().unwrap_err().to_string();
        assert!(e.contains("argon2_memory_kib is 4096") && e.contains("19456"), "{e}");
        let e = HashCost {
            iterations: 1,
            ..HashCost::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("argon2_iterations is 1"), "{e}");
        assert!(PasswordHasher::new(low, 1).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The policy never panics, whatever it is given, and says how many
        /// characters a refused length has.
        #[test]
        fn the_policy_takes_any_string(s in "\\PC{0,300}") {
            match check_policy(&s, &[]) {
                Err(PolicyError::TooShort { chars }) => prop_assert!(chars < MIN_CHARS),
                Err(PolicyError::TooLong { chars }) => prop_assert!(chars > MAX_CHARS),
                _ => {}
            }
        }
    }
}
