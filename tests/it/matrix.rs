//! The authorization matrix: every operation of the API (the `OPERATIONS` table of
//! `api.rs`; `MATRIX` below is checked against the OpenAPI document so that neither
//! can drift) x every built-in role x the target of the call: in the caller's own
//! workspace and inside its list scope, in its own workspace outside its scope, or
//! in a foreign workspace. Every caller is an API key of one role limited to the list
//! `in` of workspace A. The expected status of every combination comes from `MATRIX`
//! and `ROLES`, which state the policy independently of the crate (nothing here calls
//! `parse_scopes`).
//!
//! Every mismatch is collected, so one run shows all of them; the test fails at the
//! end with the whole list. `KNOWN_DEVIATIONS` names the combinations where the
//! server is known to answer otherwise than the policy says (for review; each is
//! described in the report that came with this test).

// Test code: a failed step should panic with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::helpers::{spawn_app, TestApp};
use consentry::access::Principal;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

// ------------------------------------------------------------------------------------
// The policy
// ------------------------------------------------------------------------------------

const READ_MASKED: &str = "contacts:read_masked";
const READ: &str = "contacts:read";
const WRITE: &str = "contacts:write";
const IMPORT: &str = "contacts:import";
const EXPORT: &str = "contacts:export";
const ERASE: &str = "contacts:erase";
const LISTS: &str = "lists:manage";
const SEGMENTS: &str = "segments:manage";
const MESSAGES: &str = "messages:write";
const SEND: &str = "campaigns:send";
const APPROVE: &str = "campaigns:approve";
const USERS: &str = "users:manage";
const KEYS: &str = "keys:manage";
const SECURITY: &str = "security:manage";
const AUDIT: &str = "audit:read";
const GDPR: &str = "gdpr:manage";

/// The built-in roles and the permissions each one holds, written out (the README
/// and DESIGN.md §5: admin is everything but the security settings).
#[rustfmt::skip]
const ROLES: [(&str, &[&str]); 6] = [
    ("owner",    &[READ_MASKED, READ, WRITE, IMPORT, EXPORT, ERASE, LISTS, SEGMENTS, MESSAGES, SEND, APPROVE, USERS, KEYS, SECURITY, AUDIT, GDPR]),
    ("admin",    &[READ_MASKED, READ, WRITE, IMPORT, EXPORT, ERASE, LISTS, SEGMENTS, MESSAGES, SEND, APPROVE, USERS, KEYS, AUDIT, GDPR]),
    ("marketer", &[READ_MASKED, WRITE, IMPORT, LISTS, SEGMENTS, MESSAGES]),
    ("sender",   &[READ_MASKED, SEND]),
    ("viewer",   &[READ_MASKED]),
    ("auditor",  &[READ_MASKED, AUDIT]),
];

/// What a route asks of its caller.
#[derive(Clone, Copy)]
enum Needs {
    /// Nothing: a public route. The API key sent along changes nothing.
    Public,
    /// Any valid API key or session.
    AnyKey,
    /// A signed-in user's session: an API key gets the fixed answer of the row.
    Session,
    /// This permission.
    Perm(&'static str),
    /// At least one of these permissions.
    AnyOf(&'static [&'static str]),
    /// Every one of these permissions.
    AllOf(&'static [&'static str]),
}

/// Seeing contacts at all: masked or not.
const SEE: Needs = Needs::AnyOf(&[READ, READ_MASKED]);

/// The answer to a caller that holds what the route needs (a caller that lacks it
/// gets 403 whatever the target, since the permission is checked before the target
/// is looked up, and so the 403 says nothing about whether the target exists).
#[derive(Clone, Copy)]
enum Expect {
    /// The route has no target: one answer (the target kinds do not apply).
    Same(u16),
    /// `Kinds(in, out, foreign)`: the target is in the caller's workspace and inside
    /// its scope, in its workspace outside its scope, or in another workspace. The
    /// foreign answer is also the answer for an id that exists nowhere (each foreign
    /// probe is made with both), so it can never confirm that an id exists.
    ///
    /// The scope of a contact, consent event, import or export is its list; of a
    /// list, itself; of an account (API key, user), its lists and its permissions.
    /// An account limited to lists beyond the caller's, or holding permissions the
    /// caller lacks, is refused with 403: a caller can only create accounts within
    /// its own lists and permissions, so it must not take over or shut out others.
    Kinds(u16, u16, u16),
}

/// One operation of the API and what it answers.
struct Row {
    method: &'static str,
    path: &'static str,
    needs: Needs,
    expect: Expect,
}

const fn row(method: &'static str, path: &'static str, needs: Needs, expect: Expect) -> Row {
    Row {
        method,
        path,
        needs,
        expect,
    }
}

use Expect::{Kinds, Same};
use Needs::{AllOf, AnyKey, AnyOf, Perm, Public, Session};

/// THE table: every expectation of the matrix comes from here and `ROLES`.
#[rustfmt::skip]
const MATRIX: [Row; 71] = [
    //   method    path                                           needs                       in   out  foreign
    // A list (id or name) that the caller cannot see answers as one that does not
    // exist: 404, or 422 where it is a field of the body of a new contact (`lists`).
    row("get",    "/api/v1/contacts",                          SEE,             Kinds(200, 404, 404)),
    row("post",   "/api/v1/contacts",                          Perm(WRITE),     Kinds(201, 422, 422)),
    row("post",   "/api/v1/contacts/lookup",                   SEE,             Kinds(200, 404, 404)),
    row("get",    "/api/v1/contacts/{id}",                     SEE,             Kinds(200, 404, 404)),
    row("patch",  "/api/v1/contacts/{id}",                     Perm(WRITE),     Kinds(200, 404, 404)),
    row("delete", "/api/v1/contacts/{id}",                     Perm(WRITE),     Kinds(204, 404, 404)),
    row("get",    "/api/v1/contacts/{id}/consents",            SEE,             Kinds(200, 404, 404)),
    row("post",   "/api/v1/contacts/{id}/consents",            Perm(WRITE),     Kinds(201, 404, 404)),
    row("get",    "/api/v1/contacts/{id}/consents/proof",      SEE,             Kinds(200, 404, 404)),
    row("get",    "/api/v1/contacts/{id}/consents/{event_id}", SEE,             Kinds(200, 404, 404)),
    row("get",    "/api/v1/lists",                             SEE,             Same(200)),
    // Every caller is limited to a list, and a key limited to some lists cannot
    // create lists (README, `POST /api/v1/lists`): 400.
    row("post",   "/api/v1/lists",                             Perm(LISTS),     Same(400)),
    row("get",    "/api/v1/lists/{id}",                        SEE,             Kinds(200, 404, 404)),
    row("patch",  "/api/v1/lists/{id}",                        Perm(LISTS),     Kinds(200, 404, 404)),
    row("delete", "/api/v1/lists/{id}",                        Perm(LISTS),     Kinds(204, 404, 404)),
    // Out of scope: the list, or the contact to add (a contact the caller cannot
    // see cannot be pulled into its list).
    row("post",   "/api/v1/lists/{id}/members",                Perm(LISTS),     Kinds(200, 404, 404)),
    row("delete", "/api/v1/lists/{id}/members",                Perm(LISTS),     Kinds(200, 404, 404)),
    // An import names its list, created when missing; a list the caller cannot see
    // is missing to it, and it cannot create lists: 400, as for `POST /lists`.
    row("post",   "/api/v1/imports",                           Perm(IMPORT),    Kinds(201, 400, 400)),
    row("get",    "/api/v1/imports/{id}",                      Perm(IMPORT),    Kinds(200, 404, 404)),
    row("get",    "/api/v1/imports/{id}/rejections",           Perm(IMPORT),    Kinds(200, 404, 404)),
    row("post",   "/api/v1/exports",                           AllOf(&[EXPORT, READ]), Kinds(200, 404, 404)),
    row("get",    "/api/v1/exports/{id}",                      AnyOf(&[EXPORT, AUDIT]), Kinds(200, 404, 404)),
    row("get",    "/api/v1/keys",                              Perm(KEYS),      Same(200)),
    // In scope: a new key limited to list `in`; out of scope: to list `out`.
    row("post",   "/api/v1/keys",                              Perm(KEYS),      Kinds(201, 404, 404)),
    row("delete", "/api/v1/keys/{id}",                         Perm(KEYS),      Kinds(204, 403, 404)),
    row("post",   "/api/v1/keys/{id}/rotate",                  Perm(KEYS),      Kinds(201, 403, 404)),
    // Hands out the tokens of every key of the workspace, so of keys beyond the
    // list-limited caller's lists (and permissions, for admin): refused.
    row("post",   "/api/v1/keys/rotate-all",                   Perm(KEYS),      Same(403)),
    row("put",    "/api/v1/keys/{id}/allowlist",               Perm(KEYS),      Kinds(200, 403, 404)),
    row("get",    "/api/v1/users",                             Perm(USERS),     Same(200)),
    // In scope: an invitation limited to list `in`; out of scope: to list `out`.
    row("post",   "/api/v1/users",                             Perm(USERS),     Kinds(201, 404, 404)),
    row("get",    "/api/v1/users/{id}",                        Perm(USERS),     Kinds(200, 403, 404)),
    row("delete", "/api/v1/users/{id}",                        Perm(USERS),     Kinds(204, 403, 404)),
    row("post",   "/api/v1/users/{id}/disable",                Perm(USERS),     Kinds(200, 403, 404)),
    row("post",   "/api/v1/users/{id}/enable",                 Perm(USERS),     Kinds(200, 403, 404)),
    row("post",   "/api/v1/users/{id}/reset-2fa",              Perm(USERS),     Kinds(204, 403, 404)),
    row("put",    "/api/v1/users/{id}/allowlist",              Perm(USERS),     Kinds(200, 403, 404)),
    row("put",    "/api/v1/users/{id}/role",                   Perm(USERS),     Kinds(200, 403, 404)),
    row("get",    "/api/v1/roles",                             AnyOf(&[USERS, SECURITY]), Same(200)),
    row("post",   "/api/v1/roles",                             Perm(SECURITY),  Same(201)),
    // Custom roles are settings of the workspace, not limited to lists: in/out of
    // scope does not apply (a role held by a user limited to `out` answers the same).
    row("put",    "/api/v1/roles/{name}",                      Perm(SECURITY),  Kinds(200, 200, 404)),
    row("delete", "/api/v1/roles/{name}",                      Perm(SECURITY),  Kinds(204, 204, 404)),
    // Session-only routes: an API key is no session. `/auth/factor` reads only the
    // cookie (401); the others take the key, then refuse it (400: "an API key has
    // none").
    row("post",   "/api/v1/auth/factor",                       Session,         Same(401)),
    row("post",   "/api/v1/auth/password",                     Session,         Same(400)),
    row("post",   "/api/v1/auth/factors/totp",                 Session,         Same(400)),
    row("post",   "/api/v1/auth/factors/totp/confirm",         Session,         Same(400)),
    row("get",    "/api/v1/auth/factors/passkeys",             Session,         Same(400)),
    row("post",   "/api/v1/auth/factors/passkeys",             Session,         Same(400)),
    row("post",   "/api/v1/auth/factors/passkeys/confirm",     Session,         Same(400)),
    // An API key is refused before the id is looked at: the same answer.
    row("delete", "/api/v1/auth/factors/passkeys/{id}",        Session,         Kinds(400, 400, 400)),
    // Read only the cookie (401).
    row("post",   "/api/v1/auth/factor/passkey/options",       Session,         Same(401)),
    row("post",   "/api/v1/auth/factor/passkey",               Session,         Same(401)),
    // Public: a challenge for anyone; the probe answers a ceremony that exists
    // nowhere with a body that is no credential: 422 whatever key is sent.
    row("post",   "/api/v1/auth/passkey/options",              Public,          Same(200)),
    row("post",   "/api/v1/auth/passkey/login",                Public,          Same(422)),
    row("get",    "/api/v1/auth/me",                           AnyKey,          Same(200)),
    // Public; the probe signs in with a wrong password: 401 whatever key is sent.
    row("post",   "/api/v1/auth/login",                        Public,          Same(401)),
    row("post",   "/api/v1/auth/logout",                       Session,         Same(400)),
    row("get",    "/api/v1/auth/sessions",                     Session,         Same(400)),
    // Takes a session id, yet an API key is refused before the id is looked at:
    // in/out of scope and foreign do not apply (the same answer).
    row("delete", "/api/v1/auth/sessions/{id}",                Session,         Kinds(400, 400, 400)),
    // Public; the probe sends an unknown invitation token: 404.
    row("post",   "/api/v1/invitations/accept",                Public,          Same(404)),
    row("get",    "/api/v1/security",                          Perm(SECURITY),  Same(200)),
    row("post",   "/api/v1/security/reset-passwords",          Perm(SECURITY),  Same(200)),
    row("get",    "/api/v1/security/second-factor",            Perm(SECURITY),  Same(200)),
    row("put",    "/api/v1/security/second-factor",            Perm(SECURITY),  Same(200)),
    row("get",    "/api/v1/security/allowlist",                Perm(SECURITY),  Same(200)),
    row("put",    "/api/v1/security/allowlist",                Perm(SECURITY),  Same(200)),
    row("get",    "/api/v1/audit",                             Perm(AUDIT),     Same(200)),
    row("get",    "/api/v1/openapi.json",                      Public,          Same(200)),
    row("get",    "/healthz",                                  Public,          Same(200)),
    row("get",    "/readyz",                                   Public,          Same(200)),
    row("get",    "/metrics",                                  Public,          Same(200)),
    row("get",    "/api/docs",                                 Public,          Same(200)),
];

/// The kind of target of one call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// The route has no target.
    NoTarget,
    /// In workspace A, inside the caller's list scope.
    In,
    /// In workspace A, outside the caller's list scope.
    Out,
    /// In workspace B (or an id that exists nowhere, which must answer the same).
    Foreign,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::NoTarget => "no target",
            Kind::In => "own workspace, in scope",
            Kind::Out => "own workspace, out of scope",
            Kind::Foreign => "foreign workspace",
        }
    }
}

/// The expected status of `row` called by a key of `role` on a target of `kind`.
fn expected(row: &Row, role: &str, kind: Kind) -> u16 {
    let held = permissions_of(role);
    let allowed = match row.needs {
        Public | AnyKey | Session => true,
        Perm(p) => held.contains(&p),
        AnyOf(ps) => ps.iter().any(|p| held.contains(p)),
        AllOf(ps) => ps.iter().all(|p| held.contains(p)),
    };
    if !allowed {
        return 403;
    }
    match (row.expect, kind) {
        (Same(status), _) => status,
        (Kinds(status, _, _), Kind::In) => status,
        (Kinds(_, status, _), Kind::Out) => status,
        (Kinds(_, _, status), Kind::Foreign) => status,
        (Kinds(..), Kind::NoTarget) => unreachable!("a route with targets is called on each kind"),
    }
}

fn permissions_of(role: &str) -> &'static [&'static str] {
    ROLES.iter().find(|(r, _)| *r == role).map(|(_, p)| *p).unwrap()
}

fn kinds_of(row: &Row) -> &'static [Kind] {
    match row.expect {
        Same(_) => &[Kind::NoTarget],
        Kinds(..) => &[Kind::In, Kind::Out, Kind::Foreign],
    }
}

/// Answers where the server differs from `MATRIX`, tolerated only so that the
/// suite can pass until they are fixed (for review; the report that came with this
/// test gives each request and answer): `(method, path, role, kind, target, status
/// the server gives)`. An entry that no longer happens fails the test, so the list
/// cannot go stale; anything else that differs fails it too.
#[rustfmt::skip]
const KNOWN_DEVIATIONS: &[(&str, &str, &str, Kind, &str, u16)] = &[
];

/// The routes that act on the whole workspace; they run on a throwaway server of
/// their own (see `workspace_wide_operations`).
const WORKSPACE_WIDE: [&str; 2] = ["/api/v1/security/reset-passwords", "/api/v1/keys/rotate-all"];

// ------------------------------------------------------------------------------------
// Mass assignment: fields beyond what a route accepts, or more than the caller has.
// ------------------------------------------------------------------------------------

/// What must hold after a mass-assignment attempt, besides its status.
#[derive(Clone, Copy)]
enum Then {
    /// Nothing else to check (beyond workspace B being unchanged, checked after all).
    Nothing,
    /// No contact with this address exists in workspace A or B.
    NoContact(&'static str),
    /// The contact `{C_IN}` is still in workspace A, unchanged, and not in B.
    ContactIntact,
    /// No user with this address exists in workspace A or B.
    NoUser(&'static str),
    /// No key of this name exists in workspace A or B.
    NoKey(&'static str),
    /// The new user is limited to the caller's list `in` (its scope is passed on).
    UserLimitedToIn,
    /// The new key is limited to the caller's list `in` (its scope is passed on).
    KeyLimitedToIn,
    /// The user `{U_IN}` is still a viewer limited to list `in`.
    UserInUnchanged,
    /// No custom role of this name exists in workspace A or B.
    NoRole(&'static str),
}

/// `(role, method, path, body, expected status, then)`; `{IN}`, `{C_IN}`, `{KEY_IN}`,
/// `{U_IN}` stand for list `in`, its contact, a viewer key and a viewer user limited
/// to it; `{B_WS}`, `{B_LIST}`, `{C_B}`, `{B_ROLE}` for the id of workspace B, a list,
/// a contact and a custom role of B.
#[rustfmt::skip]
const MASS_ASSIGNMENT: [(&str, &str, &str, &str, u16, Then); 25] = [
    ("marketer", "post",  "/api/v1/contacts", r#"{"email":"ma-ws@example.com","lists":["{IN}"],"workspace_id":"{B_WS}"}"#, 422, Then::NoContact("ma-ws@example.com")),
    ("marketer", "post",  "/api/v1/contacts", r#"{"email":"ma-id@example.com","lists":["{IN}"],"id":"{C_B}"}"#, 422, Then::NoContact("ma-id@example.com")),
    ("owner",    "post",  "/api/v1/contacts", r#"{"email":"ma-role@example.com","lists":["{IN}"],"role":"owner"}"#, 422, Then::NoContact("ma-role@example.com")),
    ("marketer", "patch", "/api/v1/contacts/{C_IN}", r#"{"first_name":"Moved","workspace_id":"{B_WS}"}"#, 422, Then::ContactIntact),
    ("marketer", "patch", "/api/v1/contacts/{C_IN}", r#"{"first_name":"Moved","id":"{C_B}"}"#, 422, Then::ContactIntact),
    ("marketer", "patch", "/api/v1/contacts/{C_IN}", r#"{"lists":["{B_LIST}"]}"#, 422, Then::ContactIntact),
    ("marketer", "post",  "/api/v1/contacts/{C_IN}/consents", r#"{"channel":"email","source":"mass assignment","workspace_id":"{B_WS}"}"#, 422, Then::Nothing),
    ("marketer", "post",  "/api/v1/lists/{IN}/members", r#"{"contacts":["{C_IN}"],"workspace_id":"{B_WS}"}"#, 422, Then::Nothing),
    ("admin",    "post",  "/api/v1/users", r#"{"email":"ma-owner@example.com","role":"owner","lists":["{IN}"]}"#, 422, Then::NoUser("ma-owner@example.com")),
    ("admin",    "post",  "/api/v1/users", r#"{"email":"ma-sec@example.com","role":"viewer,security:manage"}"#, 422, Then::NoUser("ma-sec@example.com")),
    ("admin",    "post",  "/api/v1/users", r#"{"email":"ma-uws@example.com","role":"viewer","workspace_id":"{B_WS}"}"#, 422, Then::NoUser("ma-uws@example.com")),
    ("marketer", "post",  "/api/v1/users", r#"{"email":"ma-mk@example.com","role":"viewer","lists":["{IN}"]}"#, 403, Then::NoUser("ma-mk@example.com")),
    ("admin",    "post",  "/api/v1/users", r#"{"email":"ma-scope@example.com","role":"viewer"}"#, 201, Then::UserLimitedToIn),
    ("admin",    "post",  "/api/v1/keys", r#"{"name":"ma-owner","scopes":"owner"}"#, 422, Then::NoKey("ma-owner")),
    ("admin",    "post",  "/api/v1/keys", r#"{"name":"ma-sec","scopes":["viewer","security:manage"]}"#, 422, Then::NoKey("ma-sec")),
    ("admin",    "post",  "/api/v1/keys", r#"{"name":"ma-ws","scopes":"viewer","workspace_id":"{B_WS}"}"#, 422, Then::NoKey("ma-ws")),
    ("marketer", "post",  "/api/v1/keys", r#"{"name":"ma-mk","scopes":"viewer"}"#, 403, Then::NoKey("ma-mk")),
    ("admin",    "post",  "/api/v1/keys", r#"{"name":"ma-scope","scopes":"viewer","lists":[]}"#, 201, Then::KeyLimitedToIn),
    ("admin",    "post",  "/api/v1/keys/{KEY_IN}/rotate", r#"{"scopes":"owner"}"#, 422, Then::Nothing),
    ("admin",    "post",  "/api/v1/exports", r#"{"list":"{IN}","purpose":"mass assignment","workspace_id":"{B_WS}"}"#, 422, Then::Nothing),
    ("admin",    "put",   "/api/v1/users/{U_IN}/role", r#"{"role":"owner"}"#, 422, Then::UserInUnchanged),
    ("admin",    "put",   "/api/v1/users/{U_IN}/role", r#"{"role":"{B_ROLE}"}"#, 422, Then::UserInUnchanged),
    ("admin",    "put",   "/api/v1/users/{U_IN}/role", r#"{"role":"viewer","lists":["{B_LIST}"]}"#, 404, Then::UserInUnchanged),
    ("admin",    "put",   "/api/v1/users/{U_IN}/role", r#"{"role":"viewer","workspace_id":"{B_WS}"}"#, 422, Then::UserInUnchanged),
    ("owner",    "post",  "/api/v1/roles", r#"{"name":"ma-role","permissions":["contacts:read_masked"],"workspace_id":"{B_WS}"}"#, 422, Then::NoRole("ma-role")),
];

// ------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------

#[tokio::test]
async fn every_route_every_role_every_target() {
    let started = Instant::now();
    let app = spawn_app().await;
    let fx = Fixture::build(&app).await;
    let mut run = Run {
        app: &app,
        fx: &fx,
        mismatches: Vec::new(),
        cells: 0,
        requests: 0,
        foreign_ids: fx.foreign_ids(),
        out_ids: fx.out_ids(),
    };

    run.check_table_covers_the_api().await;
    run.check_roles().await;
    for row in MATRIX.iter().filter(|r| !WORKSPACE_WIDE.contains(&r.path)) {
        for (role, _) in ROLES {
            for &kind in kinds_of(row) {
                run.cell(row, role, kind).await;
            }
        }
    }
    run.mass_assignment().await;
    run.foreign_workspace_untouched().await;
    workspace_wide_operations(&mut run).await;

    println!(
        "authorization matrix: {} combinations (operation x role x target kind), {} requests, {:.1} s",
        run.cells,
        run.requests,
        started.elapsed().as_secs_f64()
    );
    run.finish();
}

/// Password of every user the fixture activates.
const PASSWORD: &str = "vlinder kapstok zonnebril 7";
/// Ids that exist nowhere, for each kind of resource.
const MISSING_UUID: &str = "0190a8e2-0000-7000-8000-00000000dead";
const MISSING_LIST: &str = "lst_0190a8e2000070008000000000000dead";
const MISSING_IMPORT: &str = "imp_0190a8e2000070008000000000000dead";
const MISSING_EXPORT: &str = "exp_0190a8e2000070008000000000000dead";
const MISSING_KEY: &str = "00000000deadbeef";

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", SEQ.fetch_add(1, Ordering::Relaxed))
}

#[derive(Clone)]
struct Contact {
    id: String,
    email: String,
}

/// Resources of one workspace: those in list `in` and those in list `out` (in
/// workspace B only the first set is used, as foreign targets).
struct Side {
    ws: String,
    owner: String,
    list_in: String,
    list_out: String,
    contact_in: Contact,
    contact_out: Contact,
    event_in: String,
    event_out: String,
    import_in: String,
    import_out: String,
    export_in: String,
    export_out: String,
    /// Viewer keys limited to `in` / `out`.
    key_in: String,
    key_out: String,
    /// Viewer users limited to `in` / `out`: active, signed in once, then disabled.
    user_in: String,
    user_out: String,
    session_in: String,
    session_out: String,
    /// Custom roles: one held by nobody, one held by a user limited to `out`.
    role_in: String,
    role_out: String,
}

struct Fixture {
    a: Side,
    b: Side,
    /// One key per role, limited to list `in` of workspace A.
    callers: Vec<(&'static str, String)>,
}

impl Fixture {
    async fn build(app: &TestApp) -> Fixture {
        let a = Side::build(app, app.workspace_id.clone(), app.owner_key.clone(), "a").await;
        let (b_ws, b_owner) = app.other_workspace().await;
        let b = Side::build(app, b_ws, b_owner, "b").await;
        let mut callers = Vec::new();
        for (role, _) in ROLES {
            callers.push((role, caller(app, &a.ws, role, &a.list_in).await));
        }
        Fixture { a, b, callers }
    }

    fn caller(&self, role: &str) -> &str {
        &self.callers.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// Everything of workspace B that no answer to a key of A may contain.
    fn foreign_ids(&self) -> Vec<(String, String)> {
        let b = &self.b;
        let mut ids = vec![("workspace B".to_string(), b.ws.clone())];
        for (name, id) in [
            ("list", &b.list_in),
            ("list", &b.list_out),
            ("contact", &b.contact_in.id),
            ("contact email", &b.contact_in.email),
            ("contact", &b.contact_out.id),
            ("contact email", &b.contact_out.email),
            ("consent event", &b.event_in),
            ("consent event", &b.event_out),
            ("import", &b.import_in),
            ("import", &b.import_out),
            ("export", &b.export_in),
            ("export", &b.export_out),
            ("key", &b.key_in),
            ("key", &b.key_out),
            ("user", &b.user_in),
            ("user", &b.user_out),
            ("session", &b.session_in),
            ("session", &b.session_out),
            ("custom role", &b.role_in),
            ("custom role", &b.role_out),
        ] {
            ids.push((format!("B's {name}"), id.clone()));
        }
        ids
    }

    /// Data of workspace A outside list `in` that no answer to a caller may contain
    /// (but the audit log, which covers the whole workspace).
    fn out_ids(&self) -> Vec<(String, String)> {
        let a = &self.a;
        [
            ("contact of list out", &a.contact_out.id),
            ("email of the contact of list out", &a.contact_out.email),
            ("consent event of list out", &a.event_out),
            ("import into list out", &a.import_out),
            ("export of list out", &a.export_out),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect()
    }
}

impl Side {
    async fn build(app: &TestApp, ws: String, owner: String, tag: &str) -> Side {
        let op = Principal::operator(&ws);
        let list_in = app.vault.create_list(&op, "in").await.unwrap().id;
        let list_out = app.vault.create_list(&op, "out").await.unwrap().id;
        let contact_in = fresh_contact(app, &owner, &list_in, &format!("{tag}-in-contact")).await;
        let contact_out = fresh_contact(app, &owner, &list_out, &format!("{tag}-out-contact")).await;
        let event_in = record_consent(app, &owner, &contact_in.id).await;
        let event_out = record_consent(app, &owner, &contact_out.id).await;
        let import_in = import(app, &owner, &list_in, &format!("{tag}-imported-in")).await;
        let import_out = import(app, &owner, &list_out, &format!("{tag}-imported-out")).await;
        let export_in = export(app, &owner, &list_in).await;
        let export_out = export(app, &owner, &list_out).await;
        let key_in = fresh_key(app, &ws, &list_in, "viewer").await;
        let key_out = fresh_key(app, &ws, &list_out, "viewer").await;
        let (user_in, session_in) = signed_in_user(app, &ws, &list_in).await;
        let (user_out, session_out) = signed_in_user(app, &ws, &list_out).await;
        let role_in = fresh_role(app, &ws, tag).await;
        let role_out = fresh_role(app, &ws, tag).await;
        fresh_user(app, &ws, &list_out, &role_out).await;
        Side {
            ws,
            owner,
            list_in,
            list_out,
            contact_in,
            contact_out,
            event_in,
            event_out,
            import_in,
            import_out,
            export_in,
            export_out,
            key_in,
            key_out,
            user_in,
            user_out,
            session_in,
            session_out,
            role_in,
            role_out,
        }
    }
}

/// A request body.
#[derive(Clone)]
enum Body {
    Empty,
    Json(Value),
    Csv(String),
}

async fn send(app: &TestApp, key: &str, method: &str, path: &str, body: &Body) -> (u16, String) {
    let method: reqwest::Method = method.to_uppercase().parse().unwrap();
    let request = app.client.request(method, app.url(path)).bearer_auth(key);
    let request = match body {
        Body::Empty => request,
        Body::Json(v) => request.json(v),
        Body::Csv(s) => request.header("content-type", "text/csv").body(s.clone()),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A setup call that must succeed; its answer.
async fn setup(app: &TestApp, key: &str, method: &str, path: &str, body: Body) -> (String, Value) {
    let method_name = method.to_string();
    let m: reqwest::Method = method.to_uppercase().parse().unwrap();
    let request = app.client.request(m, app.url(path)).bearer_auth(key);
    let request = match body {
        Body::Empty => request,
        Body::Json(v) => request.json(&v),
        Body::Csv(s) => request.header("content-type", "text/csv").body(s),
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let export_id = response
        .headers()
        .get("x-consentry-export-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "setup {method_name} {path}: {status} {text}");
    (export_id, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn fresh_contact(app: &TestApp, owner: &str, list: &str, name: &str) -> Contact {
    let email = format!("{}@example.com", unique(name));
    let (_, view) = setup(
        app,
        owner,
        "post",
        "/api/v1/contacts",
        Body::Json(json!({ "email": email, "first_name": "Fixture", "lists": [list] })),
    )
    .await;
    Contact {
        id: view["id"].as_str().unwrap().to_string(),
        email,
    }
}

async fn record_consent(app: &TestApp, owner: &str, contact: &str) -> String {
    let (_, event) = setup(
        app,
        owner,
        "post",
        &format!("/api/v1/contacts/{contact}/consents"),
        Body::Json(json!({ "channel": "email", "source": "matrix fixture, web form v1" })),
    )
    .await;
    event["id"].as_str().unwrap().to_string()
}

async fn import(app: &TestApp, owner: &str, list: &str, name: &str) -> String {
    let csv = format!("email\n{}@example.com\nnot an address\n", unique(name));
    let path = format!("/api/v1/imports?list={list}&source=matrix%20fixture");
    let (_, report) = setup(app, owner, "post", &path, Body::Csv(csv)).await;
    report["import_id"].as_str().unwrap().to_string()
}

async fn export(app: &TestApp, owner: &str, list: &str) -> String {
    let body = json!({ "list": list, "purpose": "matrix fixture" });
    let (id, _) = setup(app, owner, "post", "/api/v1/exports", Body::Json(body)).await;
    assert!(id.starts_with("exp_"), "{id}");
    id
}

/// A key of `role` limited to `list`; its token.
async fn caller(app: &TestApp, ws: &str, role: &str, list: &str) -> String {
    let (_, token) = app
        .vault
        .create_api_key(&Principal::operator(ws), &format!("matrix {role}"), role, &[list.to_string()], None)
        .await
        .unwrap();
    secrecy::ExposeSecret::expose_secret(&token).to_string()
}

/// A key of `scopes` limited to `list`; its id.
async fn fresh_key(app: &TestApp, ws: &str, list: &str, scopes: &str) -> String {
    let (view, _) = app
        .vault
        .create_api_key(&Principal::operator(ws), "matrix target", scopes, &[list.to_string()], None)
        .await
        .unwrap();
    view.id
}

/// An invited user of `role` limited to `list`; their id and invitation token.
async fn fresh_user(app: &TestApp, ws: &str, list: &str, role: &str) -> (String, SecretString) {
    let email = format!("{}@example.com", unique("matrix-user"));
    let invitation = app
        .vault
        .invite_user(&Principal::operator(ws), &email, role, &[list.to_string()])
        .await
        .unwrap();
    (invitation.user.id, invitation.token)
}

/// An active user (the invitation accepted) of `role` limited to `list`; their id.
async fn active_user(app: &TestApp, ws: &str, list: &str, role: &str) -> String {
    let (id, token) = fresh_user(app, ws, list, role).await;
    app.vault.accept_invitation(&token, &SecretString::from(PASSWORD)).await.unwrap();
    id
}

/// An active user of `role` limited to `list`, then disabled; their id.
async fn fresh_disabled_user(app: &TestApp, ws: &str, list: &str, role: &str) -> String {
    let id = active_user(app, ws, list, role).await;
    app.vault.set_user_enabled(&Principal::operator(ws), &id, false).await.unwrap();
    id
}

/// An active viewer limited to `list` who signed in once, then was disabled; their
/// id and the id of that session.
async fn signed_in_user(app: &TestApp, ws: &str, list: &str) -> (String, String) {
    let (id, token) = fresh_user(app, ws, list, "viewer").await;
    let user = app.vault.accept_invitation(&token, &SecretString::from(PASSWORD)).await.unwrap();
    let signed = app
        .vault
        .sign_in(
            Some(ws),
            &user.email,
            &SecretString::from(PASSWORD),
            Some("127.0.0.1".parse().unwrap()),
        )
        .await
        .unwrap();
    app.vault.set_user_enabled(&Principal::operator(ws), &id, false).await.unwrap();
    (id, signed.session.id)
}

/// A custom role granting `contacts:read_masked`, named after its workspace's tag
/// so that no name is in both; its name.
async fn fresh_role(app: &TestApp, ws: &str, tag: &str) -> String {
    let name = unique(&format!("only-in-{tag}-role"));
    app.vault
        .create_role(&Principal::operator(ws), &name, READ_MASKED)
        .await
        .unwrap()
        .name
}

async fn fresh_list(app: &TestApp, ws: &str) -> String {
    app.vault
        .create_list(&Principal::operator(ws), &unique("matrix-list"))
        .await
        .unwrap()
        .id
}

/// One concrete request for one combination.
struct Probe {
    /// What the target is, for the report.
    what: String,
    path: String,
    body: Body,
    /// A key to call with instead of the role's key of the fixture.
    caller: Option<String>,
    /// Undone with the owner key after the call: `(list, contact)` to remove.
    undo_membership: Option<(String, String)>,
}

fn probe(what: &str, path: String, body: Body) -> Probe {
    Probe {
        what: what.to_string(),
        path,
        body,
        caller: None,
        undo_membership: None,
    }
}

struct Mismatch {
    method: String,
    path: String,
    role: String,
    kind: Kind,
    what: String,
    expected: String,
    actual: u16,
    detail: String,
}

struct Run<'a> {
    app: &'a TestApp,
    fx: &'a Fixture,
    mismatches: Vec<Mismatch>,
    cells: usize,
    requests: usize,
    foreign_ids: Vec<(String, String)>,
    out_ids: Vec<(String, String)>,
}

impl Run<'_> {
    /// Calls one combination with each of its probes and compares the answers.
    async fn cell(&mut self, row: &Row, role: &str, kind: Kind) {
        self.cells += 1;
        let want = expected(row, role, kind);
        for p in self.probes(row, kind, role).await {
            let key = p.caller.clone().unwrap_or_else(|| self.fx.caller(role).to_string());
            let (status, body) = send(self.app, &key, row.method, &p.path, &p.body).await;
            self.requests += 1;
            if let Some((list, contact)) = &p.undo_membership {
                let undo = Body::Json(json!({ "contacts": [contact] }));
                let path = format!("/api/v1/lists/{list}/members");
                setup(self.app, &self.fx.a.owner, "delete", &path, undo).await;
            }
            if status == want {
                self.check_leaks(row, role, kind, &p.what, status, &body);
            } else {
                self.mismatch((row, role, kind), &p.what, want.to_string(), status, excerpt(&body));
            }
        }
    }

    fn mismatch(&mut self, at: (&Row, &str, Kind), what: &str, expected: String, actual: u16, detail: String) {
        let (row, role, kind) = at;
        self.mismatches.push(Mismatch {
            method: row.method.to_uppercase(),
            path: row.path.to_string(),
            role: role.to_string(),
            kind,
            what: what.to_string(),
            expected,
            actual,
            detail,
        });
    }

    /// No answer to a key of workspace A holds anything of workspace B, and none but
    /// the audit log's holds data of A outside the caller's list.
    fn check_leaks(&mut self, row: &Row, role: &str, kind: Kind, what: &str, status: u16, body: &str) {
        let mut leaked: Vec<String> = self
            .foreign_ids
            .iter()
            .filter(|(_, id)| body.contains(id.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        if row.path != "/api/v1/audit" {
            leaked.extend(
                self.out_ids
                    .iter()
                    .filter(|(_, id)| body.contains(id.as_str()))
                    .map(|(name, _)| name.clone()),
            );
        }
        if !leaked.is_empty() {
            let detail = format!("the answer holds {}", leaked.join(", "));
            self.mismatch(
                (row, role, kind),
                what,
                "an answer without data beyond the caller's reach".into(),
                status,
                detail,
            );
        }
    }

    /// The concrete requests of one combination. Destructive operations get fresh
    /// targets, made with the owner keys, so that no later case depends on them.
    async fn probes(&mut self, row: &Row, kind: Kind, role: &str) -> Vec<Probe> {
        use Kind::{Foreign, In, NoTarget, Out};
        let (app, fx) = (self.app, self.fx);
        let (a, b) = (&fx.a, &fx.b);
        let path = row.path;
        let json = Body::Json;
        // Fixed targets, shared by the non-destructive operations.
        let contacts = || -> Vec<(&'static str, String)> {
            match kind {
                In => vec![("contact of list in", a.contact_in.id.clone())],
                Out => vec![("contact of list out", a.contact_out.id.clone())],
                Foreign => vec![
                    ("B's contact", b.contact_in.id.clone()),
                    ("a contact id that exists nowhere", MISSING_UUID.into()),
                ],
                NoTarget => unreachable!(),
            }
        };
        let lists = || -> Vec<(&'static str, String)> {
            match kind {
                In => vec![("list in", a.list_in.clone())],
                Out => vec![("list out", a.list_out.clone())],
                Foreign => vec![
                    ("B's list", b.list_in.clone()),
                    ("a list id that exists nowhere", MISSING_LIST.into()),
                ],
                NoTarget => unreachable!(),
            }
        };
        let of = |what_in: &'static str,
                  id_in: &str,
                  what_out: &'static str,
                  id_out: &str,
                  what_b: &'static str,
                  id_b: &str,
                  missing: &str|
         -> Vec<(&'static str, String)> {
            match kind {
                In => vec![(what_in, id_in.to_string())],
                Out => vec![(what_out, id_out.to_string())],
                Foreign => vec![(what_b, id_b.to_string()), ("an id that exists nowhere", missing.to_string())],
                NoTarget => unreachable!(),
            }
        };
        let with_id = |targets: Vec<(&'static str, String)>, body: Body| -> Vec<Probe> {
            targets
                .into_iter()
                .map(|(what, id)| probe(what, path.replace("{id}", &id), body.clone()))
                .collect()
        };

        match (row.method, path) {
            ("get", "/api/v1/contacts") => {
                let mut probes: Vec<Probe> = lists()
                    .into_iter()
                    .map(|(what, id)| probe(what, format!("{path}?list={id}"), Body::Empty))
                    .collect();
                if kind == In {
                    probes.push(probe(
                        "every contact the caller can see (no list named)",
                        path.to_string(),
                        Body::Empty,
                    ));
                }
                probes
            }
            ("post", "/api/v1/contacts") => lists()
                .into_iter()
                .map(|(what, id)| {
                    let email = format!("{}@example.com", unique("matrix-new"));
                    probe(
                        &format!("a new contact in {what}"),
                        path.to_string(),
                        json(json!({ "email": email, "lists": [id] })),
                    )
                })
                .collect(),
            ("post", "/api/v1/contacts/lookup") => {
                let emails = match kind {
                    In => vec![("the address of the contact of list in", a.contact_in.email.clone())],
                    Out => vec![("the address of the contact of list out", a.contact_out.email.clone())],
                    _ => vec![
                        ("the address of B's contact", b.contact_in.email.clone()),
                        ("an address that exists nowhere", "nobody-at-all@example.com".to_string()),
                    ],
                };
                emails
                    .into_iter()
                    .map(|(what, email)| probe(what, path.to_string(), json(json!({ "email": email }))))
                    .collect()
            }
            ("get", "/api/v1/contacts/{id}")
            | ("get", "/api/v1/contacts/{id}/consents")
            | ("get", "/api/v1/contacts/{id}/consents/proof") => with_id(contacts(), Body::Empty),
            ("patch", "/api/v1/contacts/{id}") => with_id(contacts(), json(json!({ "first_name": "Patched" }))),
            ("post", "/api/v1/contacts/{id}/consents") => with_id(
                contacts(),
                json(json!({ "channel": "email", "source": "matrix probe, web form v1" })),
            ),
            ("delete", "/api/v1/contacts/{id}") => {
                let fresh = match kind {
                    In => vec![(
                        "a new contact of list in",
                        fresh_contact(app, &a.owner, &a.list_in, "del-in").await.id,
                    )],
                    Out => {
                        let c = fresh_contact(app, &a.owner, &a.list_out, "del-out").await;
                        self.out_ids.push(("contact of list out".into(), c.id.clone()));
                        vec![("a new contact of list out", c.id)]
                    }
                    _ => {
                        let c = fresh_contact(app, &b.owner, &b.list_in, "del-b").await;
                        self.foreign_ids.push(("B's contact".into(), c.id.clone()));
                        vec![
                            ("a new contact of B", c.id),
                            ("a contact id that exists nowhere", MISSING_UUID.into()),
                        ]
                    }
                };
                with_id(fresh, Body::Empty)
            }
            ("get", "/api/v1/contacts/{id}/consents/{event_id}") => {
                let pairs = match kind {
                    In => vec![("event of the contact of list in", &a.contact_in.id, a.event_in.as_str())],
                    Out => vec![
                        ("event of the contact of list out", &a.contact_out.id, a.event_out.as_str()),
                        (
                            "contact of list in, event of the contact of list out",
                            &a.contact_in.id,
                            a.event_out.as_str(),
                        ),
                    ],
                    _ => vec![
                        ("B's contact and event", &b.contact_in.id, b.event_in.as_str()),
                        ("contact of list in, B's event", &a.contact_in.id, b.event_in.as_str()),
                        (
                            "contact of list in, an event id that exists nowhere",
                            &a.contact_in.id,
                            MISSING_UUID,
                        ),
                    ],
                };
                pairs
                    .into_iter()
                    .map(|(what, c, e)| probe(what, format!("/api/v1/contacts/{c}/consents/{e}"), Body::Empty))
                    .collect()
            }
            ("get", "/api/v1/lists/{id}") => with_id(lists(), Body::Empty),
            ("patch", "/api/v1/lists/{id}") => lists()
                .into_iter()
                .map(|(what, id)| probe(what, path.replace("{id}", &id), json(json!({ "name": unique("renamed") }))))
                .collect(),
            ("delete", "/api/v1/lists/{id}") => match kind {
                In => {
                    // The caller's own list goes: a new list and a new key of the
                    // role limited to it, so the fixture's callers keep theirs.
                    let list = fresh_list(app, &a.ws).await;
                    let key = caller(app, &a.ws, role, &list).await;
                    let mut p = probe(
                        "a new list, the only one of a new key of the role",
                        path.replace("{id}", &list),
                        Body::Empty,
                    );
                    p.caller = Some(key);
                    vec![p]
                }
                Out => {
                    let list = fresh_list(app, &a.ws).await;
                    vec![probe("a new list outside the caller's", path.replace("{id}", &list), Body::Empty)]
                }
                _ => {
                    let list = fresh_list(app, &b.ws).await;
                    self.foreign_ids.push(("B's list".into(), list.clone()));
                    with_id(
                        vec![("a new list of B", list), ("a list id that exists nowhere", MISSING_LIST.into())],
                        Body::Empty,
                    )
                }
            },
            ("post", "/api/v1/lists/{id}/members") => {
                let add = |what: &str, list: &str, contact: &str| {
                    probe(
                        what,
                        format!("/api/v1/lists/{list}/members"),
                        json(json!({ "contacts": [contact] })),
                    )
                };
                match kind {
                    In => vec![add("list in, its contact", &a.list_in, &a.contact_in.id)],
                    Out => {
                        let c = fresh_contact(app, &a.owner, &a.list_out, "pull-out").await;
                        self.out_ids.push(("contact of list out".into(), c.id.clone()));
                        let mut pull = add("list in, a contact of list out only", &a.list_in, &c.id);
                        pull.undo_membership = Some((a.list_in.clone(), c.id.clone()));
                        vec![add("list out, its contact", &a.list_out, &a.contact_out.id), pull]
                    }
                    _ => vec![
                        add("B's list, B's contact", &b.list_in, &b.contact_in.id),
                        add("list in, B's contact", &a.list_in, &b.contact_in.id),
                        add("a list id that exists nowhere", MISSING_LIST, &a.contact_in.id),
                        add("list in, a contact id that exists nowhere", &a.list_in, MISSING_UUID),
                    ],
                }
            }
            ("delete", "/api/v1/lists/{id}/members") => {
                let remove = |what: &str, list: &str, contact: &str| {
                    probe(
                        what,
                        format!("/api/v1/lists/{list}/members"),
                        json(json!({ "contacts": [contact] })),
                    )
                };
                match kind {
                    In => {
                        let c = fresh_contact(app, &a.owner, &a.list_in, "remove-in").await;
                        vec![remove("list in, a new contact of it", &a.list_in, &c.id)]
                    }
                    Out => {
                        let c = fresh_contact(app, &a.owner, &a.list_out, "remove-out").await;
                        self.out_ids.push(("contact of list out".into(), c.id.clone()));
                        vec![remove("list out, a new contact of it", &a.list_out, &c.id)]
                    }
                    _ => {
                        let c = fresh_contact(app, &b.owner, &b.list_in, "remove-b").await;
                        self.foreign_ids.push(("B's contact".into(), c.id.clone()));
                        vec![
                            remove("B's list, a new contact of it", &b.list_in, &c.id),
                            remove("a list id that exists nowhere", MISSING_LIST, &a.contact_in.id),
                        ]
                    }
                }
            }
            ("post", "/api/v1/imports") => lists()
                .into_iter()
                .map(|(what, id)| {
                    let csv = format!("email\n{}@example.com\n", unique("matrix-import"));
                    probe(
                        &format!("an import into {what}"),
                        format!("{path}?list={id}&source=matrix%20probe"),
                        Body::Csv(csv),
                    )
                })
                .collect(),
            ("get", "/api/v1/imports/{id}") | ("get", "/api/v1/imports/{id}/rejections") => with_id(
                of(
                    "import into list in",
                    &a.import_in,
                    "import into list out",
                    &a.import_out,
                    "B's import",
                    &b.import_in,
                    MISSING_IMPORT,
                ),
                Body::Empty,
            ),
            ("post", "/api/v1/exports") => lists()
                .into_iter()
                .map(|(what, id)| probe(what, path.to_string(), json(json!({ "list": id, "purpose": "matrix probe" }))))
                .collect(),
            ("get", "/api/v1/exports/{id}") => with_id(
                of(
                    "export of list in",
                    &a.export_in,
                    "export of list out",
                    &a.export_out,
                    "B's export",
                    &b.export_in,
                    MISSING_EXPORT,
                ),
                Body::Empty,
            ),
            ("post", "/api/v1/keys") => lists()
                .into_iter()
                .map(|(what, id)| {
                    let body = json!({ "name": unique("matrix-new-key"), "scopes": "viewer", "lists": [id] });
                    probe(&format!("a new key limited to {what}"), path.to_string(), json(body))
                })
                .collect(),
            // Accounts (keys, users). Out of scope: one limited to list `out`, and one
            // holding permissions the caller lacks (an owner limited to `in`; there is
            // none beyond an owner). Destructive operations get new accounts.
            ("delete", "/api/v1/keys/{id}") | ("post", "/api/v1/keys/{id}/rotate") | ("put", "/api/v1/keys/{id}/allowlist") => {
                let body = match row.method {
                    "post" => json(json!({})),
                    "put" => json(json!({ "allowlist": ["127.0.0.0/8"] })),
                    _ => Body::Empty,
                };
                let targets = match kind {
                    In => vec![(
                        "a new viewer key limited to list in",
                        fresh_key(app, &a.ws, &a.list_in, "viewer").await,
                    )],
                    Out => {
                        let mut t = vec![(
                            "a new viewer key limited to list out",
                            fresh_key(app, &a.ws, &a.list_out, "viewer").await,
                        )];
                        if role != "owner" {
                            let key = fresh_key(app, &a.ws, &a.list_in, "owner").await;
                            t.push(("a new owner key limited to list in (permissions beyond the caller's)", key));
                        }
                        t
                    }
                    _ => {
                        let key = fresh_key(app, &b.ws, &b.list_in, "viewer").await;
                        self.foreign_ids.push(("B's key".into(), key.clone()));
                        vec![("a new key of B", key), ("a key id that exists nowhere", MISSING_KEY.into())]
                    }
                };
                with_id(targets, body)
            }
            ("post", "/api/v1/users") => lists()
                .into_iter()
                .map(|(what, id)| {
                    let email = format!("{}@example.com", unique("matrix-invitee"));
                    let body = json!({ "email": email, "role": "viewer", "lists": [id] });
                    probe(&format!("an invitation limited to {what}"), path.to_string(), json(body))
                })
                .collect(),
            ("get", "/api/v1/users/{id}") | ("post", "/api/v1/users/{id}/reset-2fa") | ("put", "/api/v1/users/{id}/allowlist") => {
                let body = match row.method {
                    "put" => json(json!({ "allowlist": ["127.0.0.0/8"] })),
                    _ => Body::Empty,
                };
                let mut targets = of(
                    "viewer limited to list in",
                    &a.user_in,
                    "viewer limited to list out",
                    &a.user_out,
                    "B's user",
                    &b.user_in,
                    MISSING_UUID,
                );
                if kind == Out && role != "owner" {
                    let user = fresh_user(app, &a.ws, &a.list_in, "owner").await.0;
                    targets.push(("a new owner limited to list in (permissions beyond the caller's)", user));
                }
                with_id(targets, body)
            }
            ("delete", "/api/v1/users/{id}")
            | ("post", "/api/v1/users/{id}/disable")
            | ("post", "/api/v1/users/{id}/enable")
            | ("put", "/api/v1/users/{id}/role") => {
                // Disable: active users (disabling an invitee is a conflict of
                // state, not of access: 409, see tests/it/api.rs); enable:
                // disabled users; delete and role: invitees.
                let verb = path.rsplit('/').next().unwrap();
                let target = |list: String, role: &'static str| async move {
                    match verb {
                        "enable" => fresh_disabled_user(app, &a.ws, &list, role).await,
                        "disable" => active_user(app, &a.ws, &list, role).await,
                        _ => fresh_user(app, &a.ws, &list, role).await.0,
                    }
                };
                let mut targets = match kind {
                    In => vec![("a new viewer limited to list in", target(a.list_in.clone(), "viewer").await)],
                    Out => vec![("a new viewer limited to list out", target(a.list_out.clone(), "viewer").await)],
                    _ => {
                        let user = if verb == "enable" {
                            b.user_in.clone()
                        } else {
                            let user = fresh_user(app, &b.ws, &b.list_in, "viewer").await.0;
                            self.foreign_ids.push(("B's user".into(), user.clone()));
                            user
                        };
                        vec![("a user of B", user), ("a user id that exists nowhere", MISSING_UUID.into())]
                    }
                };
                if kind == Out && role != "owner" {
                    let user = target(a.list_in.clone(), "owner").await;
                    targets.push(("a new owner limited to list in (permissions beyond the caller's)", user));
                }
                let body = if verb == "role" {
                    json(json!({ "role": "viewer" }))
                } else {
                    Body::Empty
                };
                with_id(targets, body)
            }
            ("put", "/api/v1/roles/{name}") => {
                let targets = of(
                    "a custom role",
                    &a.role_in,
                    "a custom role held by a user limited to list out",
                    &a.role_out,
                    "B's custom role",
                    &b.role_in,
                    "no-such-role",
                );
                targets
                    .into_iter()
                    .map(|(what, name)| probe(what, path.replace("{name}", &name), json(json!({ "permissions": [READ_MASKED] }))))
                    .collect()
            }
            ("delete", "/api/v1/roles/{name}") => {
                let targets = match kind {
                    In => vec![("a new custom role", fresh_role(app, &a.ws, "a").await)],
                    Out => vec![(
                        "another new custom role (roles are not limited to lists)",
                        fresh_role(app, &a.ws, "a").await,
                    )],
                    _ => {
                        let name = fresh_role(app, &b.ws, "b").await;
                        self.foreign_ids.push(("B's custom role".into(), name.clone()));
                        vec![
                            ("a new custom role of B", name),
                            ("a role name that exists nowhere", "no-such-role".into()),
                        ]
                    }
                };
                targets
                    .into_iter()
                    .map(|(what, name)| probe(what, path.replace("{name}", &name), Body::Empty))
                    .collect()
            }
            ("delete", "/api/v1/auth/factors/passkeys/{id}") => {
                vec![probe(
                    "a passkey id (API keys have none)",
                    path.replace("{id}", MISSING_UUID),
                    Body::Empty,
                )]
            }
            ("delete", "/api/v1/auth/sessions/{id}") => with_id(
                of(
                    "a session of the viewer limited to list in",
                    &a.session_in,
                    "a session of the viewer limited to list out",
                    &a.session_out,
                    "a session of B's user",
                    &b.session_in,
                    MISSING_UUID,
                ),
                Body::Empty,
            ),
            (method, _) => {
                assert_eq!(kind, NoTarget, "{method} {path} has targets but no probes");
                let body = match (method, path) {
                    ("post", "/api/v1/lists") => json(json!({ "name": unique("matrix-new-list") })),
                    ("post", "/api/v1/roles") => json(json!({ "name": unique("matrix-new-role"), "permissions": [READ_MASKED] })),
                    ("post", "/api/v1/keys/rotate-all") => json(json!({})),
                    ("post", "/api/v1/auth/factor") | ("post", "/api/v1/auth/factors/totp/confirm") => json(json!({ "code": "123456" })),
                    ("post", "/api/v1/auth/factors/passkeys/confirm")
                    | ("post", "/api/v1/auth/factor/passkey")
                    | ("post", "/api/v1/auth/passkey/login") => json(json!({ "ceremony_id": MISSING_UUID, "credential": {} })),
                    ("post", "/api/v1/auth/passkey/options") => json(json!({ "workspace": a.ws })),
                    ("post", "/api/v1/auth/password") => {
                        json(json!({ "current_password": PASSWORD, "new_password": "vlinder kapstok zonnebril 8" }))
                    }
                    ("post", "/api/v1/auth/login") => json(json!({
                        "workspace": a.ws,
                        "email": format!("{}@example.com", unique("nobody")),
                        "password": "not the password at all",
                    })),
                    ("post", "/api/v1/invitations/accept") => {
                        json(json!({ "token": "csi_matrix-unknown-invitation", "password": PASSWORD }))
                    }
                    ("put", "/api/v1/security/second-factor") => json(json!({ "required": false })),
                    // Never an allowlist that shuts out 127.0.0.1.
                    ("put", "/api/v1/security/allowlist") => json(json!({ "allowlist": ["127.0.0.0/8"] })),
                    _ => Body::Empty,
                };
                vec![probe("(no target)", path.to_string(), body)]
            }
        }
    }

    /// `MATRIX` names every operation the API documents, and nothing else.
    async fn check_table_covers_the_api(&mut self) {
        let (status, text) = send(self.app, "", "get", "/api/v1/openapi.json", &Body::Empty).await;
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_str(&text).unwrap();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
            .collect();
        let table: BTreeSet<(String, String)> = MATRIX.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
        assert_eq!(table.len(), MATRIX.len(), "an operation is in MATRIX twice");
        assert_eq!(
            documented,
            table,
            "MATRIX and the API description differ: only documented {:?}, only in MATRIX {:?}",
            documented.difference(&table).collect::<Vec<_>>(),
            table.difference(&documented).collect::<Vec<_>>()
        );
    }

    /// The keys of the fixture hold exactly the permissions `ROLES` says, and the
    /// list `in` only: otherwise the matrix would test something else.
    async fn check_roles(&mut self) {
        for (role, permissions) in ROLES {
            let (status, text) = send(self.app, self.fx.caller(role), "get", "/api/v1/auth/me", &Body::Empty).await;
            assert_eq!(status, 200, "{role}: {text}");
            let me: Value = serde_json::from_str(&text).unwrap();
            let held: BTreeSet<&str> = me["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
            let stated: BTreeSet<&str> = permissions.iter().copied().collect();
            assert_eq!(held, stated, "the server's {role} differs from ROLES");
            assert_eq!(me["lists"], json!([self.fx.a.list_in]), "{role}");
        }
    }

    /// Bodies with fields a route does not accept, or asking for more than the
    /// caller holds: refused (422, or 403 without the permission) or, where a field
    /// is optional, given its safe value; and workspace B unchanged.
    async fn mass_assignment(&mut self) {
        let fx = self.fx;
        let (a, b) = (&fx.a, &fx.b);
        let before = census(self.app, &b.owner).await;
        let fill = |s: &str| {
            s.replace("{IN}", &a.list_in)
                .replace("{C_IN}", &a.contact_in.id)
                .replace("{KEY_IN}", &a.key_in)
                .replace("{B_WS}", &b.ws)
                .replace("{B_LIST}", &b.list_in)
                .replace("{C_B}", &b.contact_in.id)
                .replace("{U_IN}", &a.user_in)
                .replace("{B_ROLE}", &b.role_in)
        };
        for (role, method, path, body, want, then) in MASS_ASSIGNMENT {
            let concrete = fill(path);
            let body: Value = serde_json::from_str(&fill(body)).unwrap();
            let (status, text) = send(self.app, self.fx.caller(role), method, &concrete, &Body::Json(body.clone())).await;
            self.requests += 1;
            let what = format!("mass assignment {body}");
            let r = row(method, path, Public, Same(want));
            if status != want {
                self.mismatch((&r, role, Kind::NoTarget), &what, want.to_string(), status, excerpt(&text));
            }
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let problem = match then {
                Then::Nothing => None,
                Then::NoContact(email) => {
                    let mut found = Vec::new();
                    for (ws, key) in [("A", &a.owner), ("B", &b.owner)] {
                        let (s, _) = send(
                            self.app,
                            key,
                            "post",
                            "/api/v1/contacts/lookup",
                            &Body::Json(json!({ "email": email })),
                        )
                        .await;
                        if s != 404 {
                            found.push(format!("a contact {email} exists in {ws} ({s})"));
                        }
                    }
                    (!found.is_empty()).then(|| found.join("; "))
                }
                Then::ContactIntact => {
                    let (s, text) = send(
                        self.app,
                        &a.owner,
                        "get",
                        &format!("/api/v1/contacts/{}", a.contact_in.id),
                        &Body::Empty,
                    )
                    .await;
                    let view: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let (in_b, _) = send(
                        self.app,
                        &b.owner,
                        "get",
                        &format!("/api/v1/contacts/{}", a.contact_in.id),
                        &Body::Empty,
                    )
                    .await;
                    let lists = self.member_lists(&a.contact_in.id).await;
                    (s != 200
                        || view["id"] != json!(a.contact_in.id)
                        || view["first_name"] == "M•••"
                        || in_b != 404
                        || lists != [a.list_in.clone()])
                    .then(|| format!("the contact changed: in A {s} {view}, in B {in_b}, lists {lists:?}"))
                }
                Then::NoUser(email) => {
                    let mut found = Vec::new();
                    for (ws, key) in [("A", &a.owner), ("B", &b.owner)] {
                        let (_, text) = send(self.app, key, "get", "/api/v1/users", &Body::Empty).await;
                        if text.contains(email) {
                            found.push(format!("a user {email} exists in {ws}"));
                        }
                    }
                    (!found.is_empty()).then(|| found.join("; "))
                }
                Then::NoKey(name) => {
                    let mut found = Vec::new();
                    for (ws, key) in [("A", &a.owner), ("B", &b.owner)] {
                        let (_, text) = send(self.app, key, "get", "/api/v1/keys", &Body::Empty).await;
                        let keys: Value = serde_json::from_str(&text).unwrap();
                        if keys["items"].as_array().unwrap().iter().any(|k| k["name"] == name) {
                            found.push(format!("a key {name} exists in {ws}"));
                        }
                    }
                    (!found.is_empty()).then(|| found.join("; "))
                }
                Then::UserInUnchanged => {
                    let (s, text) = send(self.app, &a.owner, "get", &format!("/api/v1/users/{}", a.user_in), &Body::Empty).await;
                    let user: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    (s != 200 || user["role"] != "viewer" || user["lists"] != json!([a.list_in]))
                        .then(|| format!("the user changed: {s} {user}"))
                }
                Then::NoRole(name) => {
                    let mut found = Vec::new();
                    for (ws, key) in [("A", &a.owner), ("B", &b.owner)] {
                        let (_, text) = send(self.app, key, "get", "/api/v1/roles", &Body::Empty).await;
                        let roles: Value = serde_json::from_str(&text).unwrap();
                        if roles["items"].as_array().unwrap().iter().any(|r| r["name"] == name) {
                            found.push(format!("a role {name} exists in {ws}"));
                        }
                    }
                    (!found.is_empty()).then(|| found.join("; "))
                }
                Then::UserLimitedToIn => (answer["user"]["lists"] != json!([a.list_in]))
                    .then(|| format!("the new user is limited to {}, not to the caller's list", answer["user"]["lists"])),
                Then::KeyLimitedToIn => (answer["key"]["lists"] != json!([a.list_in]))
                    .then(|| format!("the new key is limited to {}, not to the caller's list", answer["key"]["lists"])),
            };
            if let Some(detail) = problem {
                self.mismatch(
                    (&r, role, Kind::NoTarget),
                    &what,
                    "nothing created, moved or widened".into(),
                    status,
                    detail,
                );
            }
        }
        let after = census(self.app, &b.owner).await;
        if before != after {
            let r = row("*", "(mass assignment)", Public, Same(0));
            let detail = format!("workspace B had {before:?} (contacts, lists, keys, users), now {after:?}");
            self.mismatch((&r, "*", Kind::Foreign), "workspace B", "unchanged".into(), 0, detail);
        }
    }

    /// The lists (ids) a contact of A is a member of, as the owner sees them.
    async fn member_lists(&self, contact: &str) -> Vec<String> {
        let (_, text) = send(self.app, &self.fx.a.owner, "get", "/api/v1/lists", &Body::Empty).await;
        let lists: Value = serde_json::from_str(&text).unwrap();
        let mut member = Vec::new();
        for l in lists["items"].as_array().unwrap() {
            let id = l["id"].as_str().unwrap();
            let (_, page) = send(
                self.app,
                &self.fx.a.owner,
                "get",
                &format!("/api/v1/contacts?list={id}&limit=1000"),
                &Body::Empty,
            )
            .await;
            if page.contains(contact) {
                member.push(id.to_string());
            }
        }
        member
    }

    /// The shared targets of workspace B are as the fixture left them.
    async fn foreign_workspace_untouched(&mut self) {
        let (app, b) = (self.app, &self.fx.b);
        let get = |path: String| async move {
            let (s, text) = send(app, &b.owner, "get", &path, &Body::Empty).await;
            (s, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
        };
        let mut problems = Vec::new();
        let (s, contact) = get(format!("/api/v1/contacts/{}", b.contact_in.id)).await;
        if s != 200 || contact["first_name"] != "F•••" {
            problems.push(format!("B's contact: {s} {contact}"));
        }
        let (_, ledger) = get(format!("/api/v1/contacts/{}/consents", b.contact_in.id)).await;
        if ledger["events"].as_array().map(Vec::len) != Some(1) {
            problems.push(format!("B's consent ledger: {ledger}"));
        }
        let (s, list) = get(format!("/api/v1/lists/{}", b.list_in)).await;
        if s != 200 || list["name"] != "in" {
            problems.push(format!("B's list: {s} {list}"));
        }
        let (_, keys) = get("/api/v1/keys".into()).await;
        let key = keys["items"].as_array().unwrap().iter().find(|k| k["id"] == json!(b.key_in));
        if key.is_none_or(|k| !k["revoked_at"].is_null() || k["allowlist"] != json!([])) {
            problems.push(format!("B's key: {key:?}"));
        }
        let (_, roles) = get("/api/v1/roles".into()).await;
        let role = roles["items"].as_array().unwrap().iter().find(|r| r["name"] == json!(b.role_in));
        if role.is_none_or(|r| r["permissions"] != json!([READ_MASKED]) || r["updated_at"] != r["created_at"]) {
            problems.push(format!("B's custom role: {role:?}"));
        }
        let (s, user) = get(format!("/api/v1/users/{}", b.user_in)).await;
        if s != 200 || user["status"] != "disabled" || user["allowlist"] != json!([]) {
            problems.push(format!("B's user: {s} {user}"));
        }
        if !problems.is_empty() {
            let r = row("*", "(workspace B after the matrix)", Public, Same(0));
            self.mismatch(
                (&r, "*", Kind::Foreign),
                "B's shared targets",
                "unchanged".into(),
                0,
                problems.join("; "),
            );
        }
    }

    /// Fails with every mismatch not in `KNOWN_DEVIATIONS`, and with every known
    /// deviation that no longer happens.
    fn finish(self) {
        let same = |d: &(&str, &str, &str, Kind, &str, u16), m: &Mismatch| {
            let (method, path, role, kind, target, actual) = *d;
            method.eq_ignore_ascii_case(&m.method)
                && path == m.path
                && role == m.role
                && kind == m.kind
                && target == m.what
                && actual == m.actual
                && m.expected.parse::<u16>().is_ok()
        };
        let line = |m: &Mismatch| {
            format!(
                "{} {} | role {} | {} ({}) | expected {} | got {} | {}",
                m.method,
                m.path,
                m.role,
                m.kind.label(),
                m.what,
                m.expected,
                m.actual,
                m.detail
            )
        };
        let (tolerated, failures): (Vec<&Mismatch>, Vec<&Mismatch>) =
            self.mismatches.iter().partition(|m| KNOWN_DEVIATIONS.iter().any(|d| same(d, m)));
        if !tolerated.is_empty() {
            println!("{} answers differ as KNOWN_DEVIATIONS says:", tolerated.len());
            for m in &tolerated {
                println!("  {}", line(m));
            }
        }
        let mut report = String::new();
        for m in &failures {
            writeln!(report, "  {}", line(m)).unwrap();
        }
        let stale: Vec<_> = KNOWN_DEVIATIONS
            .iter()
            .filter(|d| !self.mismatches.iter().any(|m| same(d, m)))
            .collect();
        for (method, path, role, kind, target, actual) in &stale {
            writeln!(
                report,
                "  KNOWN_DEVIATIONS: {method} {path} | role {role} | {} ({target}) | {actual} no longer happens: remove it",
                kind.label()
            )
            .unwrap();
        }
        assert!(
            failures.is_empty() && stale.is_empty(),
            "{} answers differ from the authorization matrix, {} known deviations are stale:\n{report}",
            failures.len(),
            stale.len()
        );
    }
}

/// How many contacts, lists, keys and users a workspace has (seen by its owner key).
async fn census(app: &TestApp, owner: &str) -> [usize; 4] {
    let mut counts = [0; 4];
    for (i, path) in ["/api/v1/contacts?limit=1000", "/api/v1/lists", "/api/v1/keys", "/api/v1/users"]
        .into_iter()
        .enumerate()
    {
        let (status, text) = send(app, owner, "get", path, &Body::Empty).await;
        assert_eq!(status, 200, "{path}: {text}");
        let page: Value = serde_json::from_str(&text).unwrap();
        counts[i] = page["items"].as_array().unwrap().len();
    }
    counts
}

/// The start of an answer, for the report.
fn excerpt(body: &str) -> String {
    let one_line: String = body.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match one_line.char_indices().nth(240) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

/// `POST /keys/rotate-all` and `POST /security/reset-passwords` act on the whole
/// workspace, so they run on a server of their own with the same callers (a key per
/// role limited to a list `in`) and a user with a password: the least privileged
/// first, so that a call that goes through (whether the table allows it or not)
/// comes after every other; and each refused call must change nothing.
async fn workspace_wide_operations(run: &mut Run<'_>) {
    let app = spawn_app().await;
    let op = Principal::operator(&app.workspace_id);
    let list = app.vault.create_list(&op, "in").await.unwrap().id;
    let mut callers = Vec::new();
    for (role, _) in ROLES {
        callers.push((role, caller(&app, &app.workspace_id, role, &list).await));
    }
    let (user, token) = fresh_user(&app, &app.workspace_id, &list, "viewer").await;
    app.vault.accept_invitation(&token, &SecretString::from(PASSWORD)).await.unwrap();
    let user: uuid::Uuid = user.parse().unwrap();

    for path in ["/api/v1/security/reset-passwords", "/api/v1/keys/rotate-all"] {
        let row = MATRIX.iter().find(|r| r.path == path).unwrap();
        for (role, key) in callers.iter().rev() {
            run.cells += 1;
            let want = expected(row, role, Kind::NoTarget);
            let before = workspace_state(&app, user).await;
            let body = if path.ends_with("rotate-all") {
                Body::Json(json!({}))
            } else {
                Body::Empty
            };
            let (status, text) = send(&app, key, row.method, path, &body).await;
            run.requests += 1;
            if status != want {
                run.mismatch(
                    (row, role, Kind::NoTarget),
                    "the whole workspace (own server)",
                    want.to_string(),
                    status,
                    excerpt(&text),
                );
            }
            if !(200..300).contains(&status) {
                let after = workspace_state(&app, user).await;
                if after != before {
                    let detail = format!("before {before}, after {after}");
                    run.mismatch(
                        (row, role, Kind::NoTarget),
                        "refused, yet the workspace changed",
                        "no change".into(),
                        status,
                        detail,
                    );
                }
            }
        }
    }
}

/// What the workspace-wide operations change: the keys (ids, revocation, expiry),
/// whether the user must choose a new password, and their audit events.
async fn workspace_state(app: &TestApp, user: uuid::Uuid) -> String {
    let (_, keys) = send(app, &app.owner_key, "get", "/api/v1/keys", &Body::Empty).await;
    let keys: Value = serde_json::from_str(&keys).unwrap();
    let keys: Vec<String> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{}:{}:{}", k["id"], k["revoked_at"], k["expires_at"]))
        .collect();
    let must_change = app
        .vault
        .store
        .find_user(&app.workspace_id, user)
        .await
        .unwrap()
        .unwrap()
        .password_change_required;
    let (_, audit) = send(app, &app.owner_key, "get", "/api/v1/audit?limit=1000", &Body::Empty).await;
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let events = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "api_key.rotated_all" || e["action"] == "security.passwords_reset")
        .count();
    format!("keys {keys:?}, password change required {must_change}, workspace-wide audit events {events}")
}
