//! Passkeys over HTTP, on both backends (`CONSENTRY_TEST_BACKEND=postgres`),
//! answered by the software authenticator: registration, the second factor of
//! a password sign-in, the step-up, sign-in with a passkey alone, a lowered
//! signature counter, replays, a passkey added only after a recent second
//! factor, and bodies that are not credentials.

use crate::helpers::{active_user, spawn_app, spawn_app_with_clock, TestApp, USER_PASSWORD as PASSWORD};
use crate::soft_authenticator::SoftAuthenticator;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{json, Value};

/// A session: its cookie pair and CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

/// Reads the cookie pair (checking its flags on the raw header) and the CSRF token.
async fn session_of(response: reqwest::Response) -> (Session, Value) {
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("__Host-consentry_session=css_"), "{set_cookie}");
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();
    (Session { cookie, csrf }, body)
}

async fn password_sign_in(app: &TestApp, email: &str) -> (Session, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    session_of(response).await
}

fn post(app: &TestApp, s: &Session, path: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(path))
        .header(COOKIE, s.cookie.clone())
        .header("X-Consentry-CSRF", s.csrf.clone())
}

fn origin(app: &TestApp) -> String {
    app.vault
        .relying_party()
        .unwrap()
        .origin()
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

async fn status_of_sessions(app: &TestApp, s: &Session) -> u16 {
    app.client
        .get(app.url("/api/v1/auth/sessions"))
        .header(COOKIE, s.cookie.clone())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Starts a ceremony from the session `s` (a registration or a factor check);
/// answers its body (`ceremony_id`, `options`).
async fn start_ceremony(app: &TestApp, s: &Session, path: &str) -> Value {
    let started = post(app, s, path).send().await.unwrap();
    assert_eq!(started.status(), 200, "{path}");
    started.json().await.unwrap()
}

/// Registers `authenticator` for the user of `s`; answers the response body.
async fn register(app: &TestApp, s: &Session, authenticator: &mut SoftAuthenticator, name: &str) -> Value {
    let challenge = start_ceremony(app, s, "/api/v1/auth/factors/passkeys").await;
    let credential = authenticator.register(&challenge["options"], &origin(app)).unwrap();
    let confirmed = post(app, s, "/api/v1/auth/factors/passkeys/confirm")
        .json(&json!({ "ceremony_id": challenge["ceremony_id"], "name": name, "credential": credential }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let cleared = confirmed.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    confirmed.json().await.unwrap()
}

/// Answers a passkey second-factor check of `s` with `authenticator`.
async fn passkey_factor(app: &TestApp, s: &Session, authenticator: &mut SoftAuthenticator) -> reqwest::Response {
    let challenge = start_ceremony(app, s, "/api/v1/auth/factor/passkey/options").await;
    let assertion = authenticator.assert(&challenge["options"], &origin(app)).unwrap();
    post(app, s, "/api/v1/auth/factor/passkey")
        .json(&json!({ "ceremony_id": challenge["ceremony_id"], "credential": assertion }))
        .send()
        .await
        .unwrap()
}

/// The challenge and the assertion of a sign-in with a passkey alone.
async fn passkey_assertion(app: &TestApp, authenticator: &mut SoftAuthenticator) -> (String, Value) {
    let challenge = app
        .client
        .post(app.url("/api/v1/auth/passkey/options"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 200);
    let challenge: Value = challenge.json().await.unwrap();
    assert!(
        challenge["options"]["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "a sign-in names no credentials: {challenge}"
    );
    let assertion = authenticator.assert(&challenge["options"], &origin(app)).unwrap();
    (challenge["ceremony_id"].as_str().unwrap().to_string(), assertion)
}

async fn passkey_login(app: &TestApp, ceremony_id: &str, assertion: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/passkey/login"))
        .json(&json!({ "ceremony_id": ceremony_id, "credential": assertion }))
        .send()
        .await
        .unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<Value> {
    let page: Value = app
        .get("/api/v1/audit?limit=1000", &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().clone()
}

/// The `method` an audit event's details (JSON text, as hashed) name.
fn method_of(event: &Value) -> String {
    let details: Value = serde_json::from_str(event["details"].as_str().unwrap_or("{}")).unwrap_or_default();
    details["method"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_passkey_is_registered_and_then_guards_every_password_sign_in() {
    let app = spawn_app().await;
    let user_id = active_user(&app, "noor@example.com", "admin").await;
    let (first, signed) = password_sign_in(&app, "noor@example.com").await;
    assert_eq!(signed["second_factor_required"], false);

    let mut laptop = SoftAuthenticator::new(1);
    let enrolled = register(&app, &first, &mut laptop, "laptop of noor").await;
    assert_eq!(enrolled["passkey"]["name"], "laptop of noor");
    let codes = enrolled["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10, "the first second factor comes with recovery codes");
    assert_eq!(status_of_sessions(&app, &first).await, 401, "a factor change ends the sessions");
    let report: Value = app
        .get("/api/v1/security", &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["second_factor"]["with_second_factor"], 1, "{report}");
    assert!(
        !report.to_string().contains("noor@"),
        "a passkey counts as a second factor: {report}"
    );

    // The password alone no longer opens anything.
    let (waiting, signed) = password_sign_in(&app, "noor@example.com").await;
    assert_eq!(signed["second_factor_required"], true);
    assert_eq!(status_of_sessions(&app, &waiting).await, 401);
    let verified = passkey_factor(&app, &waiting, &mut laptop).await;
    let (full, _) = session_of(verified).await;
    assert_ne!(full.cookie, waiting.cookie, "a new token at the privilege change");
    assert_eq!(status_of_sessions(&app, &waiting).await, 401);
    assert_eq!(status_of_sessions(&app, &full).await, 200);

    // A replayed answer finds no ceremony.
    let challenge = start_ceremony(&app, &full, "/api/v1/auth/factor/passkey/options").await;
    let assertion = laptop.assert(&challenge["options"], &origin(&app)).unwrap();
    let answer = json!({ "ceremony_id": challenge["ceremony_id"], "credential": assertion });
    let step_up = post(&app, &full, "/api/v1/auth/factor/passkey").json(&answer).send().await.unwrap();
    let (full, _) = session_of(step_up).await;
    let replayed = post(&app, &full, "/api/v1/auth/factor/passkey").json(&answer).send().await.unwrap();
    assert_eq!(replayed.status(), 409);
    assert!(replayed.text().await.unwrap().contains("ask for a new one"));

    // A second passkey: no new recovery codes; both listed, names decrypted.
    let mut key = SoftAuthenticator::new(7);
    let second = register(&app, &full, &mut key, "YubiKey").await;
    assert_eq!(second["recovery_codes"], json!([]));
    let (waiting, _) = password_sign_in(&app, "noor@example.com").await;
    let (full, _) = session_of(passkey_factor(&app, &waiting, &mut key).await).await;
    let listed: Value = app
        .client
        .get(app.url("/api/v1/auth/factors/passkeys"))
        .header(COOKIE, full.cookie.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["laptop of noor", "YubiKey"]);
    assert!(listed["items"][1]["last_used_at"].is_string());

    // A recovery code still completes a sign-in.
    let (waiting, _) = password_sign_in(&app, "noor@example.com").await;
    let recovered = post(&app, &waiting, "/api/v1/auth/factor")
        .json(&json!({ "code": codes[0] }))
        .send()
        .await
        .unwrap();
    assert_eq!(recovered.status(), 200);

    // Removing a passkey needs a recent check (just done) and ends the sessions.
    let laptop_id = listed["items"][0]["id"].as_str().unwrap().to_string();
    let removed = app
        .client
        .delete(app.url(&format!("/api/v1/auth/factors/passkeys/{laptop_id}")))
        .header(COOKIE, full.cookie.clone())
        .header("X-Consentry-CSRF", full.csrf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(status_of_sessions(&app, &full).await, 401);
    let (waiting, _) = password_sign_in(&app, "noor@example.com").await;
    let challenge = start_ceremony(&app, &waiting, "/api/v1/auth/factor/passkey/options").await;
    assert!(
        laptop.assert(&challenge["options"], &origin(&app)).is_err(),
        "a removed passkey is not asked for"
    );
    let (ceremony, assertion) = passkey_assertion(&app, &mut laptop).await;
    assert_eq!(
        passkey_login(&app, &ceremony, &assertion).await.status(),
        401,
        "a removed passkey opens nothing"
    );

    let actions = audit_actions(&app).await;
    for action in ["user.passkey_enrolled", "user.second_factor_verified", "user.passkey_removed"] {
        assert!(actions.iter().any(|e| e["action"] == action), "{action} missing");
    }
    let verified = actions
        .iter()
        .find(|e| e["action"] == "user.second_factor_verified" && method_of(e) == "passkey")
        .expect("a passkey check is recorded with its method");
    assert_eq!(verified["actor"], format!("user:{user_id}").as_str());

    // The owner's reset takes the passkeys too.
    let reset = app
        .post(&format!("/api/v1/users/{user_id}/reset-2fa"), &app.owner_key)
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success(), "{}", reset.status());
    let (_, signed) = password_sign_in(&app, "noor@example.com").await;
    assert_eq!(signed["second_factor_required"], false);

    // Nothing of the passkeys is on disk in clear (SQLite: the data directory).
    if !crate::pg::http_suite_on_postgres() {
        for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for planted in ["laptop of noor", "YubiKey", &laptop.credential_id()] {
                assert!(!crate::support::contains(&bytes, planted), "{planted} in clear on disk");
            }
        }
    }
}

#[tokio::test]
async fn a_passkey_alone_signs_in_and_a_lowered_counter_is_refused() {
    let app = spawn_app().await;
    let ada = active_user(&app, "ada@example.com", "owner").await;
    let (first, _) = password_sign_in(&app, "ada@example.com").await;
    let mut phone = SoftAuthenticator::new(1);
    register(&app, &first, &mut phone, "phone").await;

    let (ceremony, assertion) = passkey_assertion(&app, &mut phone).await;
    let (session, body) = session_of(passkey_login(&app, &ceremony, &assertion).await).await;
    assert_eq!(body["second_factor_required"], false);
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(status_of_sessions(&app, &session).await, 200);
    // The passkey was the second factor: a security setting is allowed at once.
    let required = app
        .client
        .put(app.url("/api/v1/security/second-factor"))
        .header(COOKIE, session.cookie.clone())
        .header("X-Consentry-CSRF", session.csrf.clone())
        .json(&json!({ "required": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(required.status(), 200);

    // The same answer twice: the ceremony is gone.
    let replayed = passkey_login(&app, &ceremony, &assertion).await;
    assert_eq!(replayed.status(), 409);

    // A cloned authenticator: its counter is behind the stored one.
    let counter = phone.counter();
    phone.set_counter(counter - 1);
    let (ceremony, assertion) = passkey_assertion(&app, &mut phone).await;
    let cloned = passkey_login(&app, &ceremony, &assertion).await;
    assert_eq!(cloned.status(), 401);
    let refused = cloned.text().await.unwrap();
    // The same answer as a wrong password.
    let wrong_password = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": "ada@example.com", "password": "not the password at all" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_password.status(), 401);
    let same = |body: &str| {
        let v: Value = serde_json::from_str(body).unwrap();
        (v["type"].clone(), v["title"].clone(), v["detail"].clone(), v["errors"].clone())
    };
    assert_eq!(same(&refused), same(&wrong_password.text().await.unwrap()));
    let actions = audit_actions(&app).await;
    assert!(
        actions.iter().any(|e| e["action"] == "user.passkey_counter_regressed"),
        "{actions:?}"
    );
    assert!(actions
        .iter()
        .any(|e| e["action"] == "user.sign_in_failed" && method_of(e) == "passkey"));
    // The real authenticator, ahead again, still works.
    phone.set_counter(counter + 5);
    let (ceremony, assertion) = passkey_assertion(&app, &mut phone).await;
    assert_eq!(passkey_login(&app, &ceremony, &assertion).await.status(), 200);

    // A second-factor ceremony begun before the passkey was used again: a clone
    // answering it with the counter now stored is refused all the same.
    let (waiting, signed) = password_sign_in(&app, "ada@example.com").await;
    assert_eq!(signed["second_factor_required"], true);
    let challenge = start_ceremony(&app, &waiting, "/api/v1/auth/factor/passkey/options").await;
    let (ceremony, assertion) = passkey_assertion(&app, &mut phone).await;
    assert_eq!(passkey_login(&app, &ceremony, &assertion).await.status(), 200);
    let stored = phone.counter();
    let mut clone = phone.clone();
    clone.set_counter(stored - 1);
    let answer = clone.assert(&challenge["options"], &origin(&app)).unwrap();
    let refused = post(&app, &waiting, "/api/v1/auth/factor/passkey")
        .json(&json!({ "ceremony_id": challenge["ceremony_id"], "credential": answer }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "{}", refused.text().await.unwrap());
    let regressions = audit_actions(&app)
        .await
        .iter()
        .filter(|e| e["action"] == "user.passkey_counter_regressed")
        .count();
    assert_eq!(regressions, 2, "the stale ceremony's clone is recorded too");

    // A tampered signature, a passkey of nobody here.
    let (ceremony, mut assertion) = passkey_assertion(&app, &mut phone).await;
    assertion["response"]["signature"] = json!("MEUCIQ");
    assert_eq!(passkey_login(&app, &ceremony, &assertion).await.status(), 401);
    let mut stranger = SoftAuthenticator::new(1);
    let other_app = spawn_app().await;
    active_user(&other_app, "eve@example.com", "viewer").await;
    let (eve, _) = password_sign_in(&other_app, "eve@example.com").await;
    register(&other_app, &eve, &mut stranger, "elsewhere").await;
    let challenge: Value = app
        .client
        .post(app.url("/api/v1/auth/passkey/options"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let foreign = stranger.assert(&challenge["options"], &origin(&app)).unwrap();
    assert_eq!(
        passkey_login(&app, challenge["ceremony_id"].as_str().unwrap(), &foreign)
            .await
            .status(),
        401
    );

    // A disabled user's passkey opens nothing.
    let disabled = app
        .post(&format!("/api/v1/users/{ada}/disable"), &app.owner_key)
        .send()
        .await
        .unwrap();
    assert!(disabled.status().is_success(), "{}", disabled.status());
    assert_eq!(status_of_sessions(&app, &session).await, 401);
    let (ceremony, assertion) = passkey_assertion(&app, &mut phone).await;
    assert_eq!(passkey_login(&app, &ceremony, &assertion).await.status(), 401);
}

#[tokio::test]
async fn passkey_requests_that_are_not_credentials_get_clear_errors() {
    let app = spawn_app().await;
    active_user(&app, "bo@example.com", "viewer").await;
    let (s, _) = password_sign_in(&app, "bo@example.com").await;
    let challenge = start_ceremony(&app, &s, "/api/v1/auth/factors/passkeys").await;
    assert_eq!(challenge["options"]["publicKey"]["rp"]["id"], "localhost");
    let selection = &challenge["options"]["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["userVerification"], "required");
    assert_eq!(
        selection["residentKey"], "preferred",
        "discoverable where possible, for sign-in without a password"
    );
    let confirm = |body: Value| post(&app, &s, "/api/v1/auth/factors/passkeys/confirm").json(&body).send();
    let garbage = confirm(json!({ "ceremony_id": challenge["ceremony_id"], "credential": { "id": 5 } }))
        .await
        .unwrap();
    assert_eq!(garbage.status(), 422);
    let problem: Value = garbage.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "credential", "{problem}");
    let bad_id = confirm(json!({ "ceremony_id": "nope", "credential": {} })).await.unwrap();
    assert_eq!(bad_id.status(), 422);
    let unknown = confirm(
        json!({ "ceremony_id": uuid::Uuid::now_v7().to_string(), "credential": SoftAuthenticator::new(1)
        .register(&challenge["options"], &origin(&app))
        .unwrap() }),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 409);

    // A ceremony belongs to the session that started it.
    let (other, _) = password_sign_in(&app, "bo@example.com").await;
    let mut authenticator = SoftAuthenticator::new(1);
    let credential = authenticator.register(&challenge["options"], &origin(&app)).unwrap();
    let foreign = post(&app, &other, "/api/v1/auth/factors/passkeys/confirm")
        .json(&json!({ "ceremony_id": challenge["ceremony_id"], "credential": credential }))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 409);

    // An answer for another origin is refused and names the field.
    let challenge = start_ceremony(&app, &s, "/api/v1/auth/factors/passkeys").await;
    let phished = SoftAuthenticator::new(1).register(&challenge["options"], "http://evil.localhost:8080");
    if let Ok(credential) = phished {
        let refused = post(&app, &s, "/api/v1/auth/factors/passkeys/confirm")
            .json(&json!({ "ceremony_id": challenge["ceremony_id"], "credential": credential }))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422);
    }

    // A user without a passkey is told to use a code; an API key has no passkeys.
    let no_passkey = post(&app, &s, "/api/v1/auth/factor/passkey/options").send().await.unwrap();
    assert!(no_passkey.status() == 403 || no_passkey.status() == 409, "{}", no_passkey.status());
    let by_key = app.get("/api/v1/auth/factors/passkeys", &app.owner_key).send().await.unwrap();
    assert_eq!(by_key.status(), 400);
    let not_json = app
        .client
        .post(app.url("/api/v1/auth/passkey/login"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    // Sign-in challenges cost a row each: at most 100 per client address
    // within 15 minutes.
    for _ in 0..100 {
        let asked = app
            .client
            .post(app.url("/api/v1/auth/passkey/options"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(asked.status(), 200);
    }
    let refused = app
        .client
        .post(app.url("/api/v1/auth/passkey/options"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn a_user_with_a_second_factor_adds_a_passkey_only_after_a_recent_check() {
    use consentry::clock::{Clock, FixedClock, SystemClock};
    let clock = std::sync::Arc::new(FixedClock::new(SystemClock.now_micros()));
    let app = spawn_app_with_clock(clock.clone()).await;
    active_user(&app, "ada@example.com", "owner").await;
    let (first, _) = password_sign_in(&app, "ada@example.com").await;
    let mut phone = SoftAuthenticator::new(1);
    register(&app, &first, &mut phone, "phone").await;
    let (waiting, _) = password_sign_in(&app, "ada@example.com").await;
    let (full, _) = session_of(passkey_factor(&app, &waiting, &mut phone).await).await;

    // Eleven minutes later the session still works, but a new passkey (a way
    // back in that outlives a password change) needs the factor again.
    clock.advance(11 * 60 * 1_000_000);
    assert_eq!(status_of_sessions(&app, &full).await, 200);
    let refused = post(&app, &full, "/api/v1/auth/factors/passkeys").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("second-factor check within the last 10 minutes"));
    // A registration begun in time is not finished late either.
    let (waiting, _) = password_sign_in(&app, "ada@example.com").await;
    let (fresh, _) = session_of(passkey_factor(&app, &waiting, &mut phone).await).await;
    let challenge = start_ceremony(&app, &fresh, "/api/v1/auth/factors/passkeys").await;
    clock.advance(11 * 60 * 1_000_000);
    let mut key = SoftAuthenticator::new(1);
    let credential = key.register(&challenge["options"], &origin(&app)).unwrap();
    let late = post(&app, &fresh, "/api/v1/auth/factors/passkeys/confirm")
        .json(&json!({ "ceremony_id": challenge["ceremony_id"], "name": "key", "credential": credential }))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 403);

    // After the check, it is added.
    let (again, _) = session_of(passkey_factor(&app, &fresh, &mut phone).await).await;
    register(&app, &again, &mut key, "key").await;
}
