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
