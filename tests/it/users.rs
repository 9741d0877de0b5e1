//! Users through the real binary: invite, accept with a password that meets the
//! policy, disable, enable, remove; what is stored (a sealed address, an
//! Argon2id hash) and what is refused (a weak password, a used invitation, more
//! rights than the inviter has).

use crate::support::{contains, files_under, Cli};
use std::io::Write;
use std::process::{Output, Stdio};

/// `users accept` with the token and the password on standard input.
fn accept(cli: &Cli, token: &str, password: &str) -> Output {
    let mut child = cli
        .command()
        .args(["users", "accept"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{token}\n{password}").unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_colleague_is_invited_accepts_once_and_can_be_disabled_and_removed() {
    let cli = Cli::init();
    let out = cli.ok(&["users", "add", "Marjolein.Planted@Example.com", "--role", "marketer"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "the token alone on a pipe: {out:?}");
    let token = lines[0].to_string();
    assert!(token.starts_with("csi_") && token.len() > 40, "{token}");

    let listed = cli.ok(&["users", "list"]);
    let row: Vec<&str> = listed.trim().split('\t').collect();
    assert_eq!(
        &row[1..],
        ["Marjolein.Planted@example.com", "invited", "marketer", "all lists"],
        "{listed}"
    );
    let id = row[0].to_string();

    // The same address again, in another case: one login per person.
    let again = cli.run(&["users", "add", "marjolein.planted@example.com", "--role", "viewer"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("a user with this email address already exists"),
        "{}",
        stderr(&again)
    );

    // Passwords that break the policy are refused with the reason.
    for (password, reason) in [
        ("kort", "at least 12"),
        ("1qaz2wsx3edc", "most common passwords"),
        ("Marjolein2024", "too easy to guess"),
    ] {
        let out = accept(&cli, &token, password);
        assert_ne!(out.status.code(), Some(0), "{password:?} was accepted");
        assert!(stderr(&out).contains(reason), "{password:?}: {}", stderr(&out));
    }
    let out = accept(&cli, "csi_not-a-real-token", "vlinder kapstok zonnebril 7");
    assert!(stderr(&out).contains("invitation not found"), "{}", stderr(&out));

    let out = accept(&cli, &token, "vlinder kapstok zonnebril 7");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(cli.ok(&["users", "list"]).contains("\tactive\t"));
    let out = accept(&cli, &token, "een ander wachtwoord van formaat");
    assert!(stderr(&out).contains("expired or was already used"), "{}", stderr(&out));

    // Stored: an Argon2id hash with OWASP's costs, the address only sealed.
    let (hash, status): (String, String) = cli
        .db()
        .query_row("SELECT password_hash, status FROM users", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert_eq!(status, "active");
    for file in files_under(&cli.data_dir()) {
        let bytes = std::fs::read(&file).unwrap();
        for planted in ["marjolein.planted", "Marjolein.Planted", "vlinder kapstok", &token[4..]] {
            assert!(!contains(&bytes, planted), "{planted:?} in clear in {}", file.display());
        }
    }

    let disabled = cli.ok(&["users", "disable", &id]);
    assert!(disabled.contains("\tdisabled\t"), "{disabled}");
    assert!(cli.ok(&["users", "enable", &id]).contains("\tactive\t"));
    cli.ok(&["users", "remove", &id]);
    assert_eq!(cli.ok(&["users", "list"]), "");
    let gone = cli.run(&["users", "disable", &id]);
    assert!(stderr(&gone).contains("user not found"), "{}", stderr(&gone));

    let audit = cli.ok(&["audit", "tail", "--lines", "20"]);
    for action in [
        "user.invited",
        "user.invitation_accepted",
        "user.disabled",
        "user.enabled",
        "user.removed",
    ] {
        assert!(audit.contains(action), "{action} missing from the audit log:\n{audit}");
    }
    assert!(!audit.contains("marjolein"), "the audit log names the address:\n{audit}");
    cli.ok(&["audit", "verify"]);
}

#[test]
fn invitations_name_known_roles_and_lists() {
    let cli = Cli::init();
    let out = cli.run(&["users", "add", "someone@example.com", "--role", "superuser"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown scope \"superuser\""), "{}", stderr(&out));
    let out = cli.run(&["users", "add", "not an address", "--role", "viewer"]);
    assert!(stderr(&out).contains("email"), "{}", stderr(&out));
    let out = cli.run(&["users", "add", "someone@example.com", "--role", "viewer", "--lists", "nope"]);
    assert!(stderr(&out).contains("list not found"), "{}", stderr(&out));
    cli.ok(&["lists", "create", "newsletter"]);
    cli.ok(&["users", "add", "someone@example.com", "--role", "viewer", "--lists", "newsletter"]);
    let listed = cli.ok(&["users", "list"]);
    assert!(listed.contains("\tviewer\tlst_"), "{listed}");
}

mod rights {
    use consentry::access::{parse_scopes, Principal};
    use consentry::clock::SystemClock;
    use consentry::crypto::MasterKey;
    use consentry::store::sqlite::SqliteStore;
    use consentry::store::ListScope;
    use consentry::vault::{Vault, VaultError};
    use secrecy::SecretString;
    use std::sync::Arc;

    async fn vault() -> (tempfile::TempDir, Vault, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        let vault = Vault::new(store, MasterKey::generate().unwrap(), Arc::new(SystemClock));
        let ws = vault.create_workspace("t").await.unwrap().id;
        (dir, vault, ws)
    }

    fn principal(ws: &str, actor: &str, role: &str) -> Principal {
        Principal {
            workspace_id: ws.to_string(),
            actor: actor.to_string(),
            permissions: parse_scopes(role).unwrap(),
            lists: ListScope::All,
            ip_hash: None,
            ip: None,
            factor_checked_at: None,
        }
    }

    #[tokio::test]
    async fn nobody_grants_or_manages_more_than_they_have() {
        let (_dir, v, ws) = vault().await;
        let owner = Principal::operator(&ws);
        let admin = principal(&ws, "key:admin", "admin");
        let marketer = principal(&ws, "key:marketer", "marketer");

        let e = v.invite_user(&marketer, "a@example.com", "viewer", &[]).await.unwrap_err();
        assert!(matches!(e, VaultError::Forbidden(_)), "a marketer invited: {e:?}");
        let e = v.invite_user(&admin, "a@example.com", "owner", &[]).await.unwrap_err();
        assert!(e.to_string().contains("you cannot grant security:manage"), "{e}");

        let boss = v.invite_user(&owner, "boss@example.com", "owner", &[]).await.unwrap();
        let e = v.set_user_enabled(&admin, &boss.user.id, false).await.unwrap_err();
        assert!(matches!(e, VaultError::Forbidden(_)), "an admin disabled an owner: {e:?}");
        let e = v.remove_user(&admin, &boss.user.id).await.unwrap_err();
        assert!(matches!(e, VaultError::Forbidden(_)), "an admin removed an owner: {e:?}");

        let colleague = v.invite_user(&admin, "c@example.com", "marketer", &[]).await.unwrap();
        let password = SecretString::from("river quartz lantern mosaic".to_string());
        v.accept_invitation(&colleague.token, &password).await.unwrap();
        let myself = principal(&ws, &format!("user:{}", colleague.user.id), "owner");
        let e = v.set_user_enabled(&myself, &colleague.user.id, false).await.unwrap_err();
        assert!(e.to_string().contains("your own account"), "{e}");
        // An id that is no UUID, and one of nobody.
        assert!(v
            .set_user_enabled(&admin, "usr_1", false)
            .await
            .unwrap_err()
            .to_string()
            .contains("UUID"));
        let nobody = uuid::Uuid::now_v7().to_string();
        assert!(matches!(v.remove_user(&admin, &nobody).await, Err(VaultError::NotFound("user"))));
    }

    #[tokio::test]
    async fn a_list_scoped_inviter_passes_on_their_lists() {
        let (_dir, v, ws) = vault().await;
        let owner = Principal::operator(&ws);
        let list = v.create_list(&owner, "newsletter").await.unwrap();
        let scoped = Principal {
            lists: ListScope::Lists(vec![list.id.clone()]),
            ..principal(&ws, "key:scoped", "admin")
        };
        let invited = v.invite_user(&scoped, "d@example.com", "viewer", &[]).await.unwrap();
        assert_eq!(invited.user.lists, vec![list.id.clone()]);
    }

    #[tokio::test]
    async fn an_expired_invitation_cannot_be_accepted() {
        use consentry::clock::{Clock, FixedClock};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        let clock = Arc::new(FixedClock::new(SystemClock.now_micros()));
        let v = Vault::new(store, MasterKey::generate().unwrap(), clock.clone());
        let ws = v.create_workspace("t").await.unwrap().id;
        let invited = v
            .invite_user(&Principal::operator(&ws), "e@example.com", "viewer", &[])
            .await
            .unwrap();
        clock.advance(consentry::vault::users::INVITATION_VALID_MICROS);
        let password = SecretString::from("river quartz lantern mosaic".to_string());
        let e = v.accept_invitation(&invited.token, &password).await.unwrap_err();
        assert!(e.to_string().contains("expired or was already used"), "{e}");
        assert!(clock.now_micros() > 0);
    }
}

mod sign_in {
    use consentry::access::password::{HashCost, PasswordHasher};
    use consentry::access::Principal;
    use consentry::clock::{Clock, FixedClock, SystemClock};
    use consentry::crypto::MasterKey;
    use consentry::store::sqlite::SqliteStore;
    use consentry::vault::sessions::{SessionError, SESSION_IDLE_MICROS};
    use consentry::vault::Vault;
    use secrecy::{ExposeSecret, SecretString};
    use std::sync::Arc;

    const PASSWORD: &str = "river quartz lantern mosaic";

    struct Setup {
        _dir: tempfile::TempDir,
        vault: Vault,
        clock: Arc<FixedClock>,
        ws: String,
        user_id: String,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        let clock = Arc::new(FixedClock::new(SystemClock.now_micros()));
        let vault = Vault::new(store, MasterKey::generate().unwrap(), clock.clone());
        let ws = vault.create_workspace("t").await.unwrap().id;
        let invited = vault
            .invite_user(&Principal::operator(&ws), "Fenna@example.com", "marketer", &[])
            .await
            .unwrap();
        vault.accept_invitation(&invited.token, &secret(PASSWORD)).await.unwrap();
        Setup {
            _dir: dir,
            vault,
            clock,
            ws,
            user_id: invited.user.id,
        }
    }

    #[tokio::test]
    async fn the_security_overview_names_what_needs_attention() {
        let t = setup().await;
        let owner = Principal::operator(&t.ws);
        let day = 86_400_000_000;
        let (old, _) = t
            .vault
            .create_api_key(&owner, "forgotten", "viewer", &[], Some("200d"))
            .await
            .unwrap();
        t.clock.advance(31 * day);
        let (soon, _) = t.vault.create_api_key(&owner, "short", "viewer", &[], Some("7d")).await.unwrap();
        let (_, used) = t
            .vault
            .create_api_key_from(&owner, "busy", "viewer", &[], Some("90d"), &["203.0.113.0/24".to_string()])
            .await
            .unwrap();
        assert!(t.vault.authenticate(used.expose_secret(), "203.0.113.4".parse().ok()).await.is_ok());
        for _ in 0..3 {
            let _ = t.vault.sign_in(None, "fenna@example.com", &secret("wrong wrong wrong"), None).await;
        }
        let r = t.vault.security_report(&owner).await.unwrap();
        assert_eq!(
            (
                r.second_factor.users,
                r.second_factor.with_second_factor,
                r.second_factor.coverage_percent
            ),
            (1, 0, 0)
        );
        assert_eq!(r.second_factor.without_second_factor[0].email, "Fenna@example.com");
        assert_eq!(r.keys.active, 3);
        assert_eq!(
            r.keys.expiring_soon.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            [soon.id.as_str()]
        );
        assert_eq!(r.keys.unused.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), [old.id.as_str()]);
        assert_eq!((r.keys.without_allowlist, r.allowlists.keys_with_allowlist), (2, 1));
        assert_eq!(r.failed_authentications.count, 3);
        assert_eq!(r.failed_authentications.recent[0].action, "user.sign_in_failed");
        assert_eq!(
            r.failed_authentications.recent[0].target.as_deref(),
            Some(format!("user:{}", t.user_id).as_str())
        );
        let viewer = Principal {
            permissions: consentry::access::parse_scopes("admin").unwrap(),
            ..owner
        };
        assert!(t.vault.security_report(&viewer).await.is_err(), "admin lacks security:manage");
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[tokio::test]
    async fn a_user_signs_in_and_the_session_stands_for_them() {
        let t = setup().await;
        let signed = t.vault.sign_in(None, "fenna@EXAMPLE.com", &secret(PASSWORD), None).await.unwrap();
        let token = signed.token.expose_secret().to_string();
        assert!(token.starts_with("css_") && token.len() > 40);
        assert_eq!(signed.user.id, t.user_id);
        let (p, session) = t.vault.authenticate_session(&token, None).await.unwrap();
        assert_eq!(p.actor, format!("user:{}", t.user_id));
        assert!(p.has(consentry::access::Permission::ContactsImport));
        assert!(!p.has(consentry::access::Permission::UsersManage), "a marketer manages no users");
        assert_eq!(session.id.to_string(), signed.session.id);
        assert!(t.vault.csrf_matches(&t.ws, &token, &signed.csrf_token).await.unwrap());
        assert!(!t.vault.csrf_matches(&t.ws, &token, "0000").await.unwrap());
        let again = t
            .vault
            .sign_in(Some(&t.ws), "fenna@example.com", &secret(PASSWORD), None)
            .await
            .unwrap();
        assert_ne!(again.token.expose_secret(), token, "every sign-in makes a new token");
        assert_eq!(t.vault.list_my_sessions(&p).await.unwrap().len(), 2);
        // Signing out ends this session only.
        t.vault.end_my_session(&p, &signed.session.id).await.unwrap();
        assert!(matches!(
            t.vault.authenticate_session(&token, None).await,
            Err(SessionError::Invalid)
        ));
        assert!(t.vault.authenticate_session(again.token.expose_secret(), None).await.is_ok());
    }

    #[tokio::test]
    async fn every_failed_sign_in_gives_the_same_answer() {
        let t = setup().await;
        let mut messages = Vec::new();
        for (ws, email, password) in [
            (None, "fenna@example.com", "wrong wrong wrong wrong"),
            (None, "nobody@example.com", PASSWORD),
            (None, "not an address", PASSWORD),
            (Some("no-such-workspace"), "fenna@example.com", PASSWORD),
        ] {
            match t.vault.sign_in(ws, email, &secret(password), None).await {
                Err(e @ SessionError::SignInRefused) => messages.push(e.to_string()),
                other => panic!("{email:?} / {password:?}: {other:?}"),
            }
        }
        messages.dedup();
        assert_eq!(messages, vec!["the email address or the password is wrong".to_string()]);
        let events = t.vault.audit_events(&Principal::operator(&t.ws), 0, 100).await.unwrap();
        let failed = events.iter().filter(|e| e.action == "user.sign_in_failed").count();
        assert_eq!(failed, 3, "each failure in this workspace is recorded");
        assert!(events.iter().all(|e| !e.details.contains("fenna") && !e.details.contains("nobody")));
    }

    #[tokio::test]
    async fn sessions_end_when_idle_at_their_limit_and_when_the_user_is_disabled() {
        let t = setup().await;
        let token = |s: &consentry::vault::sessions::SignedIn| s.token.expose_secret().to_string();
        let idle = t.vault.sign_in(None, "fenna@example.com", &secret(PASSWORD), None).await.unwrap();
        t.clock.advance(SESSION_IDLE_MICROS + 1);
        assert!(matches!(
            t.vault.authenticate_session(&token(&idle), None).await,
            Err(SessionError::Invalid)
        ));

        // Active every 20 minutes, it still ends 12 hours after sign-in.
        let busy = t.vault.sign_in(None, "fenna@example.com", &secret(PASSWORD), None).await.unwrap();
        for _ in 0..35 {
            t.clock.advance(20 * 60 * 1_000_000);
            assert!(t.vault.authenticate_session(&token(&busy), None).await.is_ok());
        }
        t.clock.advance(20 * 60 * 1_000_000);
        assert!(matches!(
            t.vault.authenticate_session(&token(&busy), None).await,
            Err(SessionError::Invalid)
        ));

        let current = t.vault.sign_in(None, "fenna@example.com", &secret(PASSWORD), None).await.unwrap();
        let operator = Principal::operator(&t.ws);
        t.vault.set_user_enabled(&operator, &t.user_id, false).await.unwrap();
        assert!(matches!(
            t.vault.authenticate_session(&token(&current), None).await,
            Err(SessionError::Invalid)
        ));
        assert!(matches!(
            t.vault.sign_in(None, "fenna@example.com", &secret(PASSWORD), None).await,
            Err(SessionError::SignInRefused)
        ));
        t.vault.set_user_enabled(&operator, &t.user_id, true).await.unwrap();
        assert!(
            matches!(
                t.vault.authenticate_session(&token(&current), None).await,
                Err(SessionError::Invalid)
            ),
            "enabling again revives no session"
        );
        assert!(t.vault.sign_in(None, "fenna@example.com", &secret(PASSWORD), None).await.is_ok());
    }

    #[tokio::test]
    async fn signing_in_rehashes_a_password_hashed_with_lower_costs() {
        let mut t = setup().await;
        let stored = || async {
            let users = t.vault.store.list_users(&t.ws).await.unwrap();
            users[0].password_hash.clone().unwrap()
        };
        assert!(stored().await.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let raised = HashCost {
            iterations: 3,
            ..HashCost::default()
        };
        t.vault.passwords = Arc::new(PasswordHasher::new(raised, 1).unwrap());
        t.vault.sign_in(None, "fenna@example.com", &secret(PASSWORD), None).await.unwrap();
        let after = {
            let users = t.vault.store.list_users(&t.ws).await.unwrap();
            users[0].password_hash.clone().unwrap()
        };
        assert!(after.starts_with("$argon2id$v=19$m=19456,t=3,p=1$"), "{after}");
        t.vault.sign_in(None, "fenna@example.com", &secret(PASSWORD), None).await.unwrap();
    }

    #[tokio::test]
    async fn failed_sign_ins_slow_down_the_address_typed_and_the_client_whether_or_not_the_account_exists() {
        use consentry::vault::sessions::ADDRESS_MAX_FAILURES;
        let t = setup().await;
        let ip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        let (right, wrong) = (secret(PASSWORD), secret("wrong wrong wrong wrong"));
        let attempt = |email: &'static str, password: &'static str| {
            let password = if password == PASSWORD { &right } else { &wrong };
            t.vault.sign_in(None, email, password, Some(ip))
        };
        for email in ["fenna@example.com", "nobody@example.com"] {
            for _ in 0..5 {
                assert!(matches!(
                    attempt(email, "wrong wrong wrong wrong").await,
                    Err(SessionError::SignInRefused)
                ));
            }
            // The sixth attempt, even with the right password, waits a second.
            match attempt(email, PASSWORD).await {
                Err(SessionError::Throttled { retry_after: 1 }) => {}
                other => panic!("{email}: {other:?}"),
            }
        }
        t.clock.advance(1_000_001);
        assert!(
            attempt("fenna@example.com", PASSWORD).await.is_ok(),
            "after the wait the right password works"
        );
        // Success forgets the address's failures: five more are free again.
        for _ in 0..4 {
            assert!(matches!(
                attempt("fenna@example.com", "wrong wrong wrong wrong").await,
                Err(SessionError::SignInRefused)
            ));
        }
        assert!(attempt("fenna@example.com", PASSWORD).await.is_ok());
        let events = t.vault.audit_events(&Principal::operator(&t.ws), 0, 200).await.unwrap();
        let throttled: Vec<_> = events.iter().filter(|e| e.action == "user.sign_in_throttled").collect();
        assert_eq!(throttled.len(), 2, "one event per address when slowing starts");
        assert_eq!(
            throttled[0].target.as_deref(),
            Some(format!("user:{}", t.user_id).as_str()),
            "the owner can find it"
        );
        assert_eq!(throttled[1].target, None);

        // One client with many failures across addresses waits for the window to pass.
        let mut refused = 0;
        for i in 0..ADDRESS_MAX_FAILURES {
            t.clock.advance(1);
            let email: &'static str = Box::leak(format!("guess{i}@example.com").into_boxed_str());
            if matches!(attempt(email, "wrong wrong wrong wrong").await, Err(SessionError::SignInRefused)) {
                refused += 1;
            }
        }
        // 14 failures from this client came before (5 + 5 + 4; a slowed attempt
        // is not counted), so the limit was reached 16 guesses later.
        assert_eq!(refused, ADDRESS_MAX_FAILURES - 14);
        match attempt("fenna@example.com", PASSWORD).await {
            Err(SessionError::Throttled { retry_after }) => assert!(retry_after > 60, "{retry_after}"),
            other => panic!("the client was not slowed: {other:?}"),
        }
        let elsewhere = t
            .vault
            .sign_in(None, "fenna@example.com", &right, Some("203.0.113.9".parse().unwrap()));
        assert!(elsewhere.await.is_ok(), "another client is not held up");
        t.clock.advance(consentry::vault::sessions::THROTTLE_WINDOW_MICROS);
        assert!(attempt("fenna@example.com", PASSWORD).await.is_ok(), "no lasting lockout");
    }
}

#[test]
fn the_operator_requires_a_second_factor_from_the_command_line() {
    let cli = Cli::init();
    assert_eq!(cli.ok(&["security", "require-2fa"]).trim(), "second factor not required");
    assert_eq!(cli.ok(&["security", "require-2fa", "on"]).trim(), "second factor required");
    assert_eq!(cli.ok(&["security", "require-2fa"]).trim(), "second factor required");
    assert!(cli.run(&["security", "require-2fa", "maybe"]).status.code() != Some(0));
    assert!(cli
        .ok(&["audit", "tail", "--lines", "3"])
        .contains("security.second_factor_requirement_changed"));
}

#[test]
fn allowlists_are_set_shown_and_cleared_from_the_command_line() {
    let cli = Cli::init();
    assert_eq!(cli.ok(&["security", "allowlist", "show"]), "");
    let set = cli.ok(&["security", "allowlist", "set", "203.0.113.0/24,2001:db8::/48", "198.51.100.7"]);
    assert_eq!(set, "203.0.113.0/24\n2001:db8::/48\n198.51.100.7/32\n");
    assert_eq!(cli.ok(&["security", "allowlist", "show"]), set);
    let bad = cli.run(&["security", "allowlist", "set", "10.1.2.3/8"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("entry 1: has host bits set; the block is 10.0.0.0/8"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(cli.ok(&["security", "allowlist", "clear"]), "");
    assert_eq!(cli.ok(&["security", "allowlist", "show"]), "");

    let token = cli.ok(&[
        "keys",
        "create",
        "--name",
        "partner",
        "--scopes",
        "viewer",
        "--allow-ips",
        "198.51.100.0/24",
    ]);
    let id = &token.trim()[4..20];
    assert_eq!(cli.ok(&["keys", "allowlist", id, "show"]), "198.51.100.0/24\n");
    assert_eq!(cli.ok(&["keys", "allowlist", id, "clear"]), "");

    cli.ok(&["users", "add", "joost@example.com", "--role", "viewer"]);
    let user = cli.ok(&["users", "list"]).split('\t').next().unwrap().to_string();
    assert_eq!(cli.ok(&["users", "allowlist", &user, "set", "192.0.2.0/24"]), "192.0.2.0/24\n");
    assert_eq!(cli.ok(&["users", "allowlist", &user, "show"]), "192.0.2.0/24\n");
    let report = cli.ok(&["security", "report"]);
    assert!(report.contains("second factor: 0 of 1 users (0%), not required"), "{report}");
    assert!(report.contains("joost@example.com"), "{report}");
    assert!(report.contains("1 users and 0 keys with their own"), "{report}");
    let json: serde_json::Value = serde_json::from_str(&cli.ok(&["security", "report", "--json"])).unwrap();
    assert_eq!(json["keys"]["active"], 2, "{json}");
    let rotated = cli.ok(&["keys", "rotate-all", "--overlap", "1h"]);
    let lines: Vec<Vec<&str>> = rotated.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "the owner key and the partner key: {rotated}");
    assert!(lines.iter().all(|l| l.len() == 4 && l[3].starts_with("csk_")), "{rotated}");
    assert!(lines.iter().any(|l| l[0] == id && l[2] == "partner"), "{rotated}");
    assert_eq!(
        cli.ok(&["security", "reset-passwords"]).trim(),
        "0 users must choose a new password at their next sign-in; every session ended"
    );
    let tail = cli.ok(&["audit", "tail", "--lines", "10"]);
    for action in [
        "security.allowlist_changed",
        "api_key.allowlist_changed",
        "user.allowlist_changed",
        "api_key.rotated_all",
        "security.passwords_reset",
    ] {
        assert!(tail.contains(action), "{action}: {tail}");
    }
}

#[test]
fn custom_roles_and_role_changes_from_the_command_line() {
    let cli = Cli::init();
    assert_eq!(
        cli.ok(&["roles", "create", "desk", "--permissions", "viewer,audit:read"]).trim(),
        "desk\tcontacts:read_masked,audit:read"
    );
    cli.ok(&["users", "add", "pim@example.com", "--role", "desk"]);
    let listed = cli.ok(&["users", "list"]);
    assert!(listed.contains("\tdesk\t"), "{listed}");
    let id = listed.split('\t').next().unwrap().to_string();
    let refused = cli.run(&["roles", "delete", "desk"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("users hold the role desk"), "{}", stderr(&refused));
    assert!(cli.ok(&["users", "set-role", &id, "viewer"]).contains("\tviewer\t"));
    cli.ok(&["roles", "update", "desk", "--permissions", "contacts:read_masked"]);
    assert_eq!(cli.ok(&["roles", "list"]).trim(), "desk\tcontacts:read_masked");
    cli.ok(&["roles", "delete", "desk"]);
    assert_eq!(cli.ok(&["roles", "list"]), "");
}
