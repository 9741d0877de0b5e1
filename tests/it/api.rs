//! The HTTP API against the real server: contacts, masking and purposes, consent,
//! lists, imports and exports, keys, workspace isolation, fail-closed audit, problem
//! bodies, the API description and the operations endpoints.

// Test code: a failed step should panic with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};
use consentry::access::Principal;
use consentry::audit::{AuditDraft, AuditEvent};
use consentry::domain::AttributeClass;
use consentry::startup::{Application, HttpSettings};
use consentry::store::AttributeDef;
use consentry::vault::exports::ExportFormat;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLANTED_EMAIL: &str = "quillonia.zq@brightwater-zq.example";
const PLANTED_PHONE: &str = "+31 6 12345678";
/// Lower-case fragments of every planted value; none may appear where data is masked.
const NEEDLES: [&str; 7] = [
    "quillonia",
    "brightwater",
    "612345678",
    "12345678",
    "lczq77123",
    "203.0.113.77",
    "plantedagent",
];

fn assert_no_planted_value(context: &str, body: &str) {
    let lower = body.to_lowercase();
    for needle in NEEDLES {
        assert!(!lower.contains(needle), "{context} leaked {needle:?}: {body}");
    }
}

/// The planted contact: every identifying field, an identifying attribute and a
/// consent with IP and user agent; in list `vip`.
async fn plant_contact(app: &TestApp) -> Value {
    app.vault
        .store
        .create_attributes(
            &app.workspace_id,
            vec![AttributeDef {
                name: "loyalty_code".into(),
                class: AttributeClass::Identifying,
            }],
            app.vault.now(),
            AuditDraft::new(&app.workspace_id, "cli", "attributes.created"),
        )
        .await
        .unwrap();
    let res = app
        .post("/api/v1/lists", &app.owner_key)
        .json(&json!({"name": "vip"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    app.create_contact(json!({
        "email": PLANTED_EMAIL,
        "phone": PLANTED_PHONE,
        "first_name": "Quillonia",
        "last_name": "Brightwater",
        "attributes": {"loyalty_code": "LCZQ77123"},
        "lists": ["vip"],
        "consents": [{"channel": "email", "source": "signup form", "ip": "203.0.113.77", "user_agent": "PlantedAgent/9.9"}]
    }))
    .await
}

#[tokio::test]
async fn contacts_can_be_created_read_looked_up_changed_and_deleted() {
    let app = spawn_app().await;
    let created = app
        .create_contact(json!({"email": "Jane@Example.com", "first_name": "Jane", "phone": "0612345678", "region": "NL"}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["masked"], true);
    assert_eq!(created["email"], "J•••@e•••.com");

    let res = app
        .get(&format!("/api/v1/contacts/{id}"), &app.owner_key)
        .header("X-Consentry-Purpose", "support")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let got: Value = res.json().await.unwrap();
    assert_eq!(got["email"], "Jane@example.com");
    assert_eq!(got["phone"], "+31612345678");

    let found: Value = app
        .post("/api/v1/contacts/lookup", &app.owner_key)
        .json(&json!({"email": "jane@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["id"], id.as_str());
    let by_phone = app
        .post("/api/v1/contacts/lookup", &app.owner_key)
        .json(&json!({"phone": "+31612345678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_phone.status(), 200);

    let changed: Value = app
        .patch(&format!("/api/v1/contacts/{id}"), &app.owner_key)
        .header("X-Consentry-Purpose", "support")
        .json(&json!({"first_name": "Janet"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(changed["first_name"], "Janet");

    let page: Value = app
        .get("/api/v1/contacts?limit=10", &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next"].is_null());

    let res = app.delete(&format!("/api/v1/contacts/{id}"), &app.owner_key).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = app.get(&format!("/api/v1/contacts/{id}"), &app.owner_key).send().await.unwrap();
    assert_problem(res, 404).await;
    let res = app
        .post("/api/v1/contacts/lookup", &app.owner_key)
        .json(&json!({"email": "jane@example.com"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404).await;
    // Junk ids look like ids of other workspaces: not found.
    let res = app.get("/api/v1/contacts/not-a-uuid", &app.owner_key).send().await.unwrap();
    assert_problem(res, 404).await;
}

#[tokio::test]
async fn viewer_key_sees_masked_email() {
    let app = spawn_app().await;
    let created = app.create_contact(json!({"email": "jane@example.com"})).await;
    let viewer = app.key_with_scopes("viewer").await;
    let got: Value = app
        .get(&format!("/api/v1/contacts/{}", created["id"].as_str().unwrap()), &viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["email"], "j•••@e•••.com");
    assert_eq!(got["masked"], true);
}

#[tokio::test]
async fn purpose_header_without_contacts_read_is_forbidden() {
    let app = spawn_app().await;
    let created = app.create_contact(json!({"email": "jane@example.com"})).await;
    let viewer = app.key_with_scopes("viewer").await;
    let res = app
        .get(&format!("/api/v1/contacts/{}", created["id"].as_str().unwrap()), &viewer)
        .header("X-Consentry-Purpose", "curiosity")
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("contacts:read"));
}

#[tokio::test]
async fn unmasked_read_is_audited_with_its_purpose() {
    let app = spawn_app().await;
    let created = app.create_contact(json!({"email": "jane@example.com"})).await;
    let id = created["id"].as_str().unwrap();
    let res = app
        .get(&format!("/api/v1/contacts/{id}"), &app.owner_key)
        .header("X-Consentry-Purpose", "support ticket 42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page: Value = app
        .get("/api/v1/audit?limit=1000", &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["items"].as_array().unwrap();
    let read = events
        .iter()
        .find(|e| e["action"] == "contact.read_unmasked")
        .expect("an unmasked read event");
    assert_eq!(read["purpose"], "support ticket 42");
    assert_eq!(read["target"], format!("contact:{id}").as_str());
    assert!(read["actor"].as_str().unwrap().starts_with("key:"));

    let viewer = app.key_with_scopes("viewer").await;
    let res = app.get("/api/v1/audit", &viewer).send().await.unwrap();
    assert_problem(res, 403).await;
}

#[tokio::test]
async fn key_in_query_string_is_refused() {
    let app = spawn_app().await;
    for query in [
        format!("api_key={}", app.owner_key),
        "token=abc".to_string(),
        "access_token=abc".to_string(),
        "key=abc".to_string(),
        format!("q={}", app.owner_key),
        "q=csk%5Fabc".to_string(),
    ] {
        let res = app.client.get(app.url(&format!("/api/v1/contacts?{query}"))).send().await.unwrap();
        let body = assert_problem(res, 400).await;
        assert!(body["detail"].as_str().unwrap().contains("never put an API key in a URL"));
        assert!(!body.to_string().contains(&app.owner_key));
    }
    // Even with a valid key in the header.
    let res = app.get("/api/v1/contacts?token=x", &app.owner_key).send().await.unwrap();
    assert_problem(res, 400).await;
    let res = app.get("/api/v1/contacts?list=keys", &app.owner_key).send().await.unwrap();
    assert_eq!(res.status(), 404, "a list named keys is not a secret");
}

#[tokio::test]
async fn missing_or_bad_key_gets_401_problem_json() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/api/v1/contacts")).send().await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"consentry\"");
    assert_problem(res, 401).await;
    for auth in ["Bearer csk_nope_nope", "Bearer garbage", "Basic dXNlcjpwYXNz", "Bearer "] {
        let res = app
            .client
            .get(app.url("/api/v1/contacts"))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert_problem(res, 401).await;
    }
    // A revoked key stops working.
    let key = app.key_with_scopes("viewer").await;
    let id = key.split('_').nth(1).unwrap().to_string();
    let keys: Value = app.get("/api/v1/keys", &app.owner_key).send().await.unwrap().json().await.unwrap();
    assert!(keys["items"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
    let res = app.delete(&format!("/api/v1/keys/{id}"), &app.owner_key).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = app.get("/api/v1/contacts", &key).send().await.unwrap();
    assert_problem(res, 401).await;
}

#[tokio::test]
async fn problem_bodies_carry_a_request_id_and_field_errors() {
    let app = spawn_app().await;
    let res = app
        .post("/api/v1/contacts", &app.owner_key)
        .json(&json!({"email": "not an email", "first_name": "Jane"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422).await;
    assert_eq!(body["type"], "urn:consentry:problem:invalid");
    assert!(body["title"].is_string());
    assert!(body["errors"].as_array().unwrap().iter().any(|e| e["field"] == "email"));
    let request_id = body["request_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(request_id).unwrap().get_version_num(), 7);

    // A wrong type names the path of the value.
    let res = app
        .post("/api/v1/contacts", &app.owner_key)
        .json(&json!({"email": "a@example.com", "consents": [{"channel": "pigeon", "source": "x"}]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422).await;
    assert_eq!(body["errors"][0]["field"], "consents[0].channel");
    // Unreadable JSON is a bad request; no JSON at all is an unsupported media type.
    let res = app
        .post("/api/v1/contacts", &app.owner_key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400).await;
    let res = app.post("/api/v1/contacts", &app.owner_key).body("email=x").send().await.unwrap();
    assert_problem(res, 415).await;
    // Successful answers carry a request id too.
    let res = app.get("/api/v1/lists", &app.owner_key).send().await.unwrap();
    assert!(res.headers().contains_key("x-request-id"));
    let res = app.get("/api/v1/nowhere", &app.owner_key).send().await.unwrap();
    assert_problem(res, 404).await;
}

#[tokio::test]
async fn consent_patch_and_delete_answer_405() {
    let app = spawn_app().await;
    let created = app
        .create_contact(json!({"email": "jane@example.com", "consents": [{"channel": "email", "source": "signup form"}]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let ledger: Value = app
        .get(&format!("/api/v1/contacts/{id}/consents"), &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event_id = ledger["events"][0]["id"].as_str().unwrap().to_string();
    let res = app
        .get(&format!("/api/v1/contacts/{id}/consents/{event_id}"), &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for path in [
        format!("/api/v1/contacts/{id}/consents"),
        format!("/api/v1/contacts/{id}/consents/{event_id}"),
    ] {
        for res in [
            app.patch(&path, &app.owner_key)
                .json(&json!({"action": "withdrawn"}))
                .send()
                .await
                .unwrap(),
            app.delete(&path, &app.owner_key).send().await.unwrap(),
        ] {
            let allow = res.headers()["allow"].to_str().unwrap().to_string();
            assert!(allow.contains("GET"), "{allow}");
            assert!(!allow.contains("PATCH") && !allow.contains("DELETE"), "{allow}");
            let body = assert_problem(res, 405).await;
            assert!(body["detail"].as_str().unwrap().contains("append-only"));
        }
    }
    let after: Value = app
        .get(&format!("/api/v1/contacts/{id}/consents"), &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["events"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn consent_proof_contains_audit_hashes() {
    let app = spawn_app().await;
    let created = app
        .create_contact(json!({"email": "jane@example.com", "consents": [{"channel": "email", "source": "signup form"}]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let res = app
        .post(&format!("/api/v1/contacts/{id}/consents"), &app.owner_key)
        .json(&json!({"channel": "email", "action": "withdrawn", "source": "unsubscribe link", "method": "unsubscribe_link"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().contains_key("location"));
    app.vault.checkpoint(&app.workspace_id).await.unwrap();

    let proof: Value = app
        .get(&format!("/api/v1/contacts/{id}/consents/proof"), &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = proof["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let audit: Vec<AuditEvent> = serde_json::from_value(proof["audit_events"].clone()).unwrap();
    for e in events {
        let seq = e["audit_seq"].as_i64().unwrap();
        let recorded = audit.iter().find(|a| a.seq == seq).expect("the audit event of a consent");
        assert_eq!(recorded.compute_hash(), recorded.hash);
    }
    assert!(proof["checkpoint"]["signature"].is_string());
    assert_eq!(proof["audit_public_key"].as_str().unwrap().len(), 64);

    let ledger: Value = app
        .get(&format!("/api/v1/contacts/{id}/consents"), &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["state"][0]["action"], "withdrawn");
}

#[tokio::test]
async fn lists_crud_and_members() {
    let app = spawn_app().await;
    let res = app
        .post("/api/v1/lists", &app.owner_key)
        .json(&json!({"name": "newsletter"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let list: Value = res.json().await.unwrap();
    let list_id = list["id"].as_str().unwrap().to_string();
    let dup = app
        .post("/api/v1/lists", &app.owner_key)
        .json(&json!({"name": "newsletter"}))
        .send()
        .await
        .unwrap();
    assert_problem(dup, 422).await;

    let a = app.create_contact(json!({"email": "a@example.com"})).await;
    let b = app.create_contact(json!({"email": "b@example.com"})).await;
    let ids = json!({"contacts": [a["id"], b["id"]]});
    let added: Value = app
        .post(&format!("/api/v1/lists/{list_id}/members"), &app.owner_key)
        .json(&ids)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(added["added"], 2);
    let page: Value = app
        .get("/api/v1/contacts?list=newsletter", &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);

    let removed: Value = app
        .delete(&format!("/api/v1/lists/{list_id}/members"), &app.owner_key)
        .json(&json!({"contacts": [a["id"]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["removed"], 1);

    let renamed: Value = app
        .patch(&format!("/api/v1/lists/{list_id}"), &app.owner_key)
        .json(&json!({"name": "weekly"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "weekly");
    assert_eq!(renamed["member_count"], 1);
    let got: Value = app
        .get("/api/v1/lists/weekly", &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], list_id.as_str());
    let all: Value = app.get("/api/v1/lists", &app.owner_key).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);

    let res = app
        .delete(&format!("/api/v1/lists/{list_id}"), &app.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app.get(&format!("/api/v1/lists/{list_id}"), &app.owner_key).send().await.unwrap();
    assert_problem(res, 404).await;
    let res = app
        .post(&format!("/api/v1/lists/{list_id}/members"), &app.owner_key)
        .json(&ids)
        .send()
        .await
        .unwrap();
    assert_problem(res, 404).await;
}

#[tokio::test]
async fn key_of_workspace_a_gets_404_for_ids_of_workspace_b() {
    let app = spawn_app().await;
    let (ws_b, key_b) = app.other_workspace().await;
    let contact_b = app.create_contact_with(&key_b, json!({"email": "b@example.com"})).await;
    let contact_b = contact_b["id"].as_str().unwrap().to_string();
    let list_b: Value = app
        .post("/api/v1/lists", &key_b)
        .json(&json!({"name": "b-list"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list_b = list_b["id"].as_str().unwrap().to_string();
    let res = app
        .post("/api/v1/imports?list=b-list&source=fair%20booth", &key_b)
        .header("content-type", "text/csv")
        .body("email\nc@example.com\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let import_b: Value = res.json().await.unwrap();
    let import_b = import_b["import_id"].as_str().unwrap().to_string();
    let mut sink = Vec::new();
    let export_b = app
        .vault
        .export_list(&Principal::operator(&ws_b), &list_b, "backup", ExportFormat::Csv, &mut sink)
        .await
        .unwrap()
        .id;
    // Workspace B itself sees its ids.
    let res = app.get(&format!("/api/v1/exports/{export_b}"), &key_b).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let a = &app.owner_key;
    let c = format!("/api/v1/contacts/{contact_b}");
    let l = format!("/api/v1/lists/{list_b}");
    let i = format!("/api/v1/imports/{import_b}");
    let e = format!("/api/v1/exports/{export_b}");
    let change = json!({"first_name": "Mallory"});
    let members = json!({"contacts": [contact_b]});
    let consent = json!({"channel": "email", "source": "x"});
    let requests = vec![
        app.get(&c, a),
        app.patch(&c, a).json(&change),
        app.delete(&c, a),
        app.get(&format!("{c}/consents"), a),
        app.post(&format!("{c}/consents"), a).json(&consent),
        app.get(&format!("{c}/consents/proof"), a),
        app.get(&l, a),
        app.patch(&l, a).json(&json!({"name": "mine"})),
        app.delete(&l, a),
        app.post(&format!("{l}/members"), a).json(&members),
        app.delete(&format!("{l}/members"), a).json(&members),
        app.get(&format!("/api/v1/contacts?list={list_b}"), a),
        app.get(&i, a),
        app.get(&format!("{i}/rejections"), a),
        app.get(&e, a),
        app.post("/api/v1/exports", a).json(&json!({"list": list_b, "purpose": "theft"})),
    ];
    for r in requests {
        let req = r.build().unwrap();
        let what = format!("{} {}", req.method(), req.url().path());
        let res = app.client.execute(req).await.unwrap();
        assert_eq!(res.status(), 404, "{what}");
    }
    // A's own list of B's contact: adding B's contact to A's list is not found either.
    app.post("/api/v1/lists", a).json(&json!({"name": "a-list"})).send().await.unwrap();
    let res = app.post("/api/v1/lists/a-list/members", a).json(&members).send().await.unwrap();
    assert_problem(res, 404).await;
    // And B's contact is untouched.
    let res = app.get(&c, &key_b).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn key_without_contacts_read_never_receives_an_unmasked_field() {
    let app = spawn_app().await;
    let planted = plant_contact(&app).await;
    let id = planted["id"].as_str().unwrap().to_string();
    let ledger: Value = app
        .get(&format!("/api/v1/contacts/{id}/consents"), &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event_id = ledger["events"][0]["id"].as_str().unwrap().to_string();
    let mut sink = Vec::new();
    let export_id = app
        .vault
        .export_list(
            &Principal::operator(&app.workspace_id),
            "vip",
            "backup",
            ExportFormat::Csv,
            &mut sink,
        )
        .await
        .unwrap()
        .id;
    // Every permission except contacts:read.
    let key = app
        .key_with_scopes(
            "contacts:read_masked,contacts:write,contacts:import,contacts:export,contacts:erase,lists:manage,segments:manage,\
             messages:write,campaigns:send,campaigns:approve,users:manage,keys:manage,security:manage,audit:read,gdpr:manage",
        )
        .await;

    let csv = "email,first_name\nquillonia.csv@brightwater-zq.example,Quillonia\nnot-an-email-quillonia,Quillonia\n";
    let mut statuses = Vec::new();
    for purpose in [None, Some("support")] {
        let with = |r: reqwest::RequestBuilder| match purpose {
            Some(p) => r.header("X-Consentry-Purpose", p),
            None => r,
        };
        let requests = vec![
            with(app.get("/api/v1/contacts", &key)),
            with(app.get("/api/v1/contacts?list=vip", &key)),
            with(app.get(&format!("/api/v1/contacts/{id}"), &key)),
            with(app.post("/api/v1/contacts/lookup", &key).json(&json!({"email": PLANTED_EMAIL}))),
            with(app.post("/api/v1/contacts/lookup", &key).json(&json!({"phone": PLANTED_PHONE}))),
            with(
                app.patch(&format!("/api/v1/contacts/{id}"), &key)
                    .json(&json!({"last_name": "Brightwater"})),
            ),
            with(
                app.post("/api/v1/contacts", &key)
                    .json(&json!({"email": "quillonia.new@brightwater-zq.example", "first_name": "Quillonia"})),
            ),
            with(app.get(&format!("/api/v1/contacts/{id}/consents"), &key)),
            with(app.get(&format!("/api/v1/contacts/{id}/consents/{event_id}"), &key)),
            with(app.get(&format!("/api/v1/contacts/{id}/consents/proof"), &key)),
            with(app.post(&format!("/api/v1/contacts/{id}/consents"), &key).json(&json!({
                "channel": "sms", "source": "phone call", "ip": "203.0.113.77", "user_agent": "PlantedAgent/9.9"
            }))),
            with(app.get("/api/v1/lists", &key)),
            with(app.get("/api/v1/lists/vip", &key)),
            with(app.post("/api/v1/exports", &key).json(&json!({"list": "vip", "purpose": "backup"}))),
            with(app.get(&format!("/api/v1/exports/{export_id}"), &key)),
            with(app.get("/api/v1/audit?limit=1000", &key)),
            with(app.get("/api/v1/keys", &key)),
            with(
                app.post("/api/v1/imports?list=vip&source=fair", &key)
                    .header("content-type", "text/csv")
                    .body(csv),
            ),
        ];
        for r in requests {
            let req = r.build().unwrap();
            let what = format!("{} {} (purpose {purpose:?})", req.method(), req.url());
            let res = app.client.execute(req).await.unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert_no_planted_value(&what, &body);
            statuses.push((what, status, body));
        }
    }
    // The walk reached the data: without a purpose the reads succeed (masked).
    let ok_reads = statuses.iter().filter(|(w, s, _)| w.contains("None") && *s < 300).count();
    assert!(ok_reads >= 15, "{statuses:#?}");
    assert!(statuses.iter().any(|(_, _, b)| b.contains("q•••@b•••.example")));
    // With a purpose, every read of contact data is refused.
    for (what, status, _) in statuses.iter().filter(|(w, _, _)| w.contains("Some")) {
        if what.contains("/contacts") && !what.starts_with("POST") || what.contains("/lookup") {
            assert_eq!(*status, 403, "{what}");
        }
    }
    // The import's report and rejections never repeat the values.
    let import_id = statuses
        .iter()
        .find(|(w, s, _)| w.contains("/imports") && *s == 201)
        .map(|(_, _, b)| serde_json::from_str::<Value>(b).unwrap()["import_id"].as_str().unwrap().to_string())
        .expect("the import ran");
    for path in [
        format!("/api/v1/imports/{import_id}"),
        format!("/api/v1/imports/{import_id}/rejections"),
    ] {
        let body = app.get(&path, &key).send().await.unwrap().text().await.unwrap();
        assert_no_planted_value(&path, &body);
    }
}

#[tokio::test]
async fn fail_closed_audit_returns_503_without_personal_data() {
    let app = spawn_app().await;
    let planted = plant_contact(&app).await;
    let id = planted["id"].as_str().unwrap().to_string();
    app.break_audit_log(true).await;

    let res = app
        .post("/api/v1/contacts", &app.owner_key)
        .header("X-Consentry-Purpose", "support")
        .json(&json!({"email": "quillonia.late@brightwater-zq.example", "first_name": "Quillonia"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 503).await;
    assert_no_planted_value("create during audit failure", &body.to_string());
    let res = app
        .get(&format!("/api/v1/contacts/{id}"), &app.owner_key)
        .header("X-Consentry-Purpose", "support")
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 503).await;
    assert_eq!(body["type"], "urn:consentry:problem:audit-unavailable");
    assert_no_planted_value("unmasked read during audit failure", &body.to_string());

    app.break_audit_log(false).await;
    let res = app
        .post("/api/v1/contacts/lookup", &app.owner_key)
        .json(&json!({"email": "quillonia.late@brightwater-zq.example"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404).await;
    let res = app.get(&format!("/api/v1/contacts/{id}"), &app.owner_key).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // A change whose audit event cannot be written keeps nothing of what it did
    // before the event (the deletion here), on either backend.
    app.break_audit_log(true).await;
    let res = app.delete(&format!("/api/v1/contacts/{id}"), &app.owner_key).send().await.unwrap();
    assert_problem(res, 503).await;
    app.break_audit_log(false).await;
    let res = app.get(&format!("/api/v1/contacts/{id}"), &app.owner_key).send().await.unwrap();
    assert_eq!(res.status(), 200, "a deletion that was not audited did not happen");
}

/// Every operation the API has, as `(method, path)`.
const OPERATIONS: [(&str, &str); 71] = [
    ("get", "/api/v1/contacts"),
    ("post", "/api/v1/contacts"),
    ("post", "/api/v1/contacts/lookup"),
    ("get", "/api/v1/contacts/{id}"),
    ("patch", "/api/v1/contacts/{id}"),
    ("delete", "/api/v1/contacts/{id}"),
    ("get", "/api/v1/contacts/{id}/consents"),
    ("post", "/api/v1/contacts/{id}/consents"),
    ("get", "/api/v1/contacts/{id}/consents/proof"),
    ("get", "/api/v1/contacts/{id}/consents/{event_id}"),
    ("get", "/api/v1/lists"),
    ("post", "/api/v1/lists"),
    ("get", "/api/v1/lists/{id}"),
    ("patch", "/api/v1/lists/{id}"),
    ("delete", "/api/v1/lists/{id}"),
    ("post", "/api/v1/lists/{id}/members"),
    ("delete", "/api/v1/lists/{id}/members"),
    ("post", "/api/v1/imports"),
    ("get", "/api/v1/imports/{id}"),
    ("get", "/api/v1/imports/{id}/rejections"),
    ("post", "/api/v1/exports"),
    ("get", "/api/v1/exports/{id}"),
    ("get", "/api/v1/keys"),
    ("post", "/api/v1/keys"),
    ("delete", "/api/v1/keys/{id}"),
    ("post", "/api/v1/keys/{id}/rotate"),
    ("post", "/api/v1/keys/rotate-all"),
    ("put", "/api/v1/keys/{id}/allowlist"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/users/{id}"),
    ("delete", "/api/v1/users/{id}"),
    ("post", "/api/v1/users/{id}/disable"),
    ("post", "/api/v1/users/{id}/enable"),
    ("post", "/api/v1/users/{id}/reset-2fa"),
    ("put", "/api/v1/users/{id}/allowlist"),
    ("put", "/api/v1/users/{id}/role"),
    ("get", "/api/v1/roles"),
    ("post", "/api/v1/roles"),
    ("put", "/api/v1/roles/{name}"),
    ("delete", "/api/v1/roles/{name}"),
    ("post", "/api/v1/auth/factor"),
    ("post", "/api/v1/auth/password"),
    ("post", "/api/v1/auth/factors/totp"),
    ("post", "/api/v1/auth/factors/totp/confirm"),
    ("get", "/api/v1/auth/factors/passkeys"),
    ("post", "/api/v1/auth/factors/passkeys"),
    ("post", "/api/v1/auth/factors/passkeys/confirm"),
    ("delete", "/api/v1/auth/factors/passkeys/{id}"),
    ("post", "/api/v1/auth/factor/passkey/options"),
    ("post", "/api/v1/auth/factor/passkey"),
    ("post", "/api/v1/auth/passkey/options"),
    ("post", "/api/v1/auth/passkey/login"),
    ("get", "/api/v1/auth/me"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/auth/sessions"),
    ("delete", "/api/v1/auth/sessions/{id}"),
    ("post", "/api/v1/invitations/accept"),
    ("get", "/api/v1/security"),
    ("post", "/api/v1/security/reset-passwords"),
    ("get", "/api/v1/security/second-factor"),
    ("put", "/api/v1/security/second-factor"),
    ("get", "/api/v1/security/allowlist"),
    ("put", "/api/v1/security/allowlist"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/docs"),
];

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(doc["components"]["securitySchemes"]["session"]["in"], "cookie");
    assert!(doc["components"]["schemas"]["Problem"]["properties"]["request_id"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(documented, OPERATIONS.len(), "documented operations differ from the list");
    for (method, path) in OPERATIONS {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(op["summary"].is_string(), "{method} {path} has no summary");
        let public = !path.starts_with("/api/v1/")
            || path.ends_with("openapi.json")
            || path.ends_with("/auth/login")
            || path.starts_with("/api/v1/auth/passkey/")
            || path.ends_with("/invitations/accept");
        if public && path.starts_with("/api/v1/") && !path.ends_with("openapi.json") {
            assert_eq!(op["security"], json!([{}]), "{method} {path} is open to anyone");
        }
        if !public {
            let schemes: Vec<&str> = op["security"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
                .collect();
            let expected: &[&str] = if path.starts_with("/api/v1/auth/") && !path.ends_with("/auth/me") {
                &["session"]
            } else {
                &["bearer", "session"]
            };
            assert_eq!(schemes, expected, "{method} {path} does not name its security");
            for status in ["401", "403", "404", "422", "503"] {
                assert!(op["responses"][status].is_object(), "{method} {path} lacks {status}");
            }
        }
        for (status, response) in op["responses"].as_object().unwrap() {
            if !status.starts_with('2') {
                assert!(
                    response["content"]["application/problem+json"]["schema"]["$ref"] == "#/components/schemas/Problem",
                    "{method} {path} {status} is not a problem"
                );
            }
        }
        // The route exists: no "no route" 404 and no 405.
        let concrete = path
            .replace("{id}", "0190a8e2-0000-7000-8000-000000000000")
            .replace("{event_id}", "0190a8e2-0000-7000-8000-000000000001");
        let req = app
            .client
            .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
            .bearer_auth(&app.owner_key)
            .build()
            .unwrap();
        let res = app.client.execute(req).await.unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path}");
        assert!(!body.contains("no route matches"), "{method} {path} has no route");
        assert!(status < 500, "{method} {path} answered {status}: {body}");
    }
}

#[tokio::test]
async fn docs_page_loads_no_external_resources() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = res.text().await.unwrap();
    for forbidden in [
        "<script", "<link", "<img", "<iframe", "src=", "@import", "url(", "http://", "https://", "//cdn",
    ] {
        assert!(!html.contains(forbidden), "the docs page contains {forbidden:?}");
    }
    for (method, path) in OPERATIONS {
        assert!(html.contains(&format!("<code>{path}</code>")), "{method} {path} missing");
    }
    for needle in [
        "ContactView",
        "ContactInput",
        "Problem",
        "X-Consentry-Purpose",
        "ImportReport",
        "ConsentProof",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
}

#[tokio::test]
async fn import_body_over_the_limit_gets_413() {
    let app = spawn_app_with(HttpSettings {
        import_body_limit: 1024,
        ..HttpSettings::default()
    })
    .await;
    let big = format!("email\n{}", "someone@example.com\n".repeat(200));
    let res = app
        .post("/api/v1/imports?list=x&source=y", &app.owner_key)
        .header("content-type", "text/csv")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 413).await;
    assert!(body["detail"].as_str().unwrap().contains("1024"));

    // Without a Content-Length the limit holds while reading.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/imports?list=x&source=y HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: text/csv\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        app.addr,
        app.owner_key,
        big.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"));

    // A body within the limit is imported; a dry run answers 200.
    let small = "email\na@example.com\nb@example.com\n";
    let res = app
        .post("/api/v1/imports?list=x&source=y&dry_run=true", &app.owner_key)
        .header("content-type", "text/csv")
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .post("/api/v1/imports?list=x&source=y", &app.owner_key)
        .header("content-type", "text/csv")
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["counts"]["created"], 2);
}

#[tokio::test]
async fn imports_accept_multipart_and_report_rejections_without_values() {
    let app = spawn_app().await;
    let csv = "email,phone\nok@example.com,\nbroken-address-zq,\n";
    let boundary = "consentry-test-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"contacts.csv\"\r\nContent-Type: text/csv\r\n\r\n\
         {csv}\r\n--{boundary}--\r\n"
    );
    let res = app
        .post(
            "/api/v1/imports?list=fair&source=trade%20fair%202024&channels=email",
            &app.owner_key,
        )
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["counts"]["created"], 1);
    assert_eq!(report["counts"]["rejected"], 1);
    let again: Value = app.get(&location, &app.owner_key).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["import_id"], report["import_id"]);
    let rejections = app
        .get(&format!("{location}/rejections"), &app.owner_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rejections.contains("\"row\":3"), "{rejections}");
    assert!(!rejections.contains("broken-address-zq"));

    let res = app
        .post("/api/v1/imports?list=fair&source=x&channels=pigeon&region=XX", &app.owner_key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["channels", "region"]);
    let res = app
        .post("/api/v1/imports?list=fair&source=x", &app.owner_key)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(res, 415).await;
}

#[tokio::test]
async fn exports_need_a_purpose_and_neutralise_formulas() {
    let app = spawn_app().await;
    app.post("/api/v1/lists", &app.owner_key)
        .json(&json!({"name": "all"}))
        .send()
        .await
        .unwrap();
    app.create_contact(json!({"email": "a@example.com", "first_name": "=HYPERLINK(\"http://x\",\"y\")", "lists": ["all"]}))
        .await;
    let res = app
        .post("/api/v1/exports", &app.owner_key)
        .json(&json!({"list": "all"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422).await;
    assert_eq!(body["errors"][0]["field"], "purpose");

    let res = app
        .post("/api/v1/exports", &app.owner_key)
        .json(&json!({"list": "all", "purpose": "newsletter tool sync"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let export_id = res.headers()["x-consentry-export-id"].to_str().unwrap().to_string();
    let csv = res.text().await.unwrap();
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""), "{csv}");

    let record: Value = app
        .get(&format!("/api/v1/exports/{export_id}"), &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["purpose"], "newsletter tool sync");
    assert_eq!(record["row_count"], 1);
    assert_eq!(record["format"], "csv");

    let res = app
        .post("/api/v1/exports", &app.owner_key)
        .json(&json!({"list": "all", "purpose": "sync", "format": "jsonl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let line: Value = serde_json::from_str(res.text().await.unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(line["email"], "a@example.com");
}

#[tokio::test]
async fn keys_are_created_with_scopes_and_shown_once() {
    let app = spawn_app().await;
    let res = app
        .post("/api/v1/keys", &app.owner_key)
        .json(&json!({"name": "reporting", "scopes": ["viewer", "audit:read"], "expires": "90d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("csk_"));
    assert!(created["key"]["expires_at"].is_string());
    let res = app.get("/api/v1/audit", &token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let listed = app.get("/api/v1/keys", &app.owner_key).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains(&token));
    // A key cannot grant what it does not have.
    let res = app
        .post("/api/v1/keys", &token)
        .json(&json!({"name": "x", "scopes": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403).await;
    let res = app
        .post("/api/v1/keys", &app.owner_key)
        .json(&json!({"name": "x", "scopes": "contacts:fly"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422).await;
    assert_eq!(body["errors"][0]["field"], "scopes");
    // A key cannot lock its caller out by revoking itself; another key can revoke it.
    let own_id = app.owner_key.split('_').nth(1).unwrap().to_string();
    let res = app.delete(&format!("/api/v1/keys/{own_id}"), &app.owner_key).send().await.unwrap();
    assert_problem(res, 409).await;
    let id = created["key"]["id"].as_str().unwrap();
    let res = app.delete(&format!("/api/v1/keys/{id}"), &app.owner_key).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = app.get("/api/v1/audit", &token).send().await.unwrap();
    assert_problem(res, 401).await;
}

#[tokio::test]
async fn healthz_readyz_and_metrics_answer() {
    let app = spawn_app().await;
    let planted = plant_contact(&app).await;
    let id = planted["id"].as_str().unwrap();
    let res = app
        .get(&format!("/api/v1/contacts/{id}"), &app.owner_key)
        .header("X-Consentry-Purpose", "support")
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("quillonia"));
    app.post("/api/v1/imports?list=vip&source=fair", &app.owner_key)
        .header("content-type", "text/csv")
        .body("email\nquillonia.import@brightwater-zq.example\n")
        .send()
        .await
        .unwrap();

    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    assert_eq!(res.text().await.unwrap(), "ok");
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("http_requests_total{method=\"GET\",route=\"/api/v1/contacts/{id}\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    assert!(metrics.contains("import_rows_total{outcome=\"created\"} 1"));
    assert!(metrics.contains("audit_events_total"));
    assert!(!metrics.contains(id), "contact ids are not labels");
    assert_no_planted_value("/metrics", &metrics);
}

#[tokio::test]
async fn server_stops_serving_when_shutdown_fires() {
    let app = spawn_app().await;
    let other = Application::build(
        app.vault.clone(),
        HttpSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..HttpSettings::default()
        },
    )
    .await
    .unwrap();
    let addr = other.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(other.run_until(async move {
        let _ = rx.await;
    }));
    let res = app.client.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server stopped")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Users, invitations and sessions over HTTP, on both backends.
mod sessions {
    use crate::helpers::{spawn_app, TestApp};
    use reqwest::header::{COOKIE, SET_COOKIE};
    use serde_json::{json, Value};

    use crate::helpers::{active_user, USER_PASSWORD as PASSWORD};

    /// Signs in; returns the raw `Set-Cookie` header, the cookie pair and the CSRF token.
    async fn sign_in(app: &TestApp, email: &str) -> (String, String, String) {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let set_cookie = response.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        let pair = set_cookie.split(';').next().unwrap().to_string();
        assert!(
            !body.to_string().contains(pair.split('=').nth(1).unwrap()),
            "the token is in the body"
        );
        (set_cookie, pair, body["csrf_token"].as_str().unwrap().to_string())
    }

    /// The new cookie pair and CSRF token a second-factor check answers.
    async fn renewed_session(response: reqwest::Response) -> (String, String) {
        let set_cookie = response.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
        for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
        }
        let pair = set_cookie.split(';').next().unwrap().to_string();
        let body: Value = response.json().await.unwrap();
        (pair, body["csrf_token"].as_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn custom_roles_grant_what_they_name_and_a_change_ends_sessions() {
        let app = &spawn_app().await;
        let owner = &app.owner_key;
        let made = app
            .post("/api/v1/roles", owner)
            .json(&json!({ "name": "support", "permissions": ["contacts:read_masked", "contacts:read"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        assert_eq!(made.headers()["location"], "/api/v1/roles/support");
        for (body, status) in [
            (json!({ "name": "support", "permissions": ["audit:read"] }), 409),
            (json!({ "name": "viewer", "permissions": ["audit:read"] }), 422),
            (json!({ "name": "Bad Name", "permissions": ["audit:read"] }), 422),
            (json!({ "name": "empty", "permissions": [] }), 422),
            (json!({ "name": "flying", "permissions": ["contacts:fly"] }), 422),
        ] {
            let r = app.post("/api/v1/roles", owner).json(&body).send().await.unwrap();
            assert_eq!(r.status(), status, "{body}");
        }
        // Only what one holds can go in a role; defining roles needs security:manage.
        let admin = app.key_with_scopes("admin").await;
        let r = app
            .post("/api/v1/roles", &admin)
            .json(&json!({ "name": "x", "permissions": ["contacts:read"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let roles: Value = app.get("/api/v1/roles", &admin).send().await.unwrap().json().await.unwrap();
        assert_eq!(roles["items"][0]["name"], "support", "user managers see the roles");

        let id = active_user(app, "sanne@example.com", "support").await;
        let (_, cookie, _) = sign_in(app, "sanne@example.com").await;
        let me = |cookie: String| async move {
            let r = app
                .client
                .get(app.url("/api/v1/auth/me"))
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        };
        let (status, body) = me(cookie.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(body["permissions"], json!(["contacts:read_masked", "contacts:read"]));
        // A role change ends its holders' sessions; the next one has the new permissions.
        let changed = app
            .client
            .put(app.url("/api/v1/roles/support"))
            .bearer_auth(owner)
            .json(&json!({ "permissions": ["contacts:read_masked", "lists:manage"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200);
        assert_eq!(me(cookie.clone()).await.0, 401);
        let (_, cookie, _) = sign_in(app, "sanne@example.com").await;
        assert_eq!(
            me(cookie.clone()).await.1["permissions"],
            json!(["contacts:read_masked", "lists:manage"])
        );
        let in_use = app.delete("/api/v1/roles/support", owner).send().await.unwrap();
        assert_eq!(in_use.status(), 409);
        // A user's role change ends their sessions too.
        let set = app
            .client
            .put(app.url(&format!("/api/v1/users/{id}/role")))
            .bearer_auth(owner)
            .json(&json!({ "role": "viewer" }))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 200);
        assert_eq!(set.json::<Value>().await.unwrap()["role"], "viewer");
        assert_eq!(me(cookie).await.0, 401);
        let above = app
            .client
            .put(app.url(&format!("/api/v1/users/{id}/role")))
            .bearer_auth(&admin)
            .json(&json!({ "role": "owner" }))
            .send()
            .await
            .unwrap();
        assert_eq!(above.status(), 422, "an admin cannot make an owner");
        assert_eq!(app.delete("/api/v1/roles/support", owner).send().await.unwrap().status(), 204);
        assert_eq!(app.delete("/api/v1/roles/support", owner).send().await.unwrap().status(), 404);
        for action in ["role.created", "role.changed", "role.deleted", "user.role_changed"] {
            assert_eq!(events(app, action).await.len(), 1, "{action}");
        }
    }

    #[tokio::test]
    async fn a_list_scoped_user_finds_no_contact_outside_their_lists() {
        let app = &spawn_app().await;
        let owner = &app.owner_key;
        for name in ["north", "south"] {
            let r = app
                .post("/api/v1/lists", owner)
                .json(&json!({ "name": name }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let mut ids = Vec::new();
        for (email, list) in [("noord@example.com", "north"), ("zuid@example.com", "south")] {
            let c = app.create_contact(json!({ "email": email, "lists": [list] })).await;
            ids.push(c["id"].as_str().unwrap().to_string());
        }
        let invited = app
            .post("/api/v1/users", owner)
            .json(&json!({ "email": "ruud@example.com", "role": "marketer", "lists": ["north"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(invited.status(), 201);
        let body: Value = invited.json().await.unwrap();
        let accepted = app
            .client
            .post(app.url("/api/v1/invitations/accept"))
            .json(&json!({ "token": body["token"], "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 200);
        let (_, cookie, csrf) = sign_in(app, "ruud@example.com").await;
        let get = |path: String| app.client.get(app.url(&path)).header(COOKIE, cookie.clone()).send();
        assert_eq!(get(format!("/api/v1/contacts/{}", ids[0])).await.unwrap().status(), 200);
        assert_eq!(get(format!("/api/v1/contacts/{}", ids[1])).await.unwrap().status(), 404);
        let page: Value = get("/api/v1/contacts".into()).await.unwrap().json().await.unwrap();
        let seen: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(seen, [ids[0].as_str()]);
        let lookup = |email: &str| {
            app.client
                .post(app.url("/api/v1/contacts/lookup"))
                .header(COOKIE, cookie.clone())
                .header("X-Consentry-CSRF", csrf.clone())
                .json(&json!({ "email": email }))
                .send()
        };
        assert_eq!(lookup("noord@example.com").await.unwrap().status(), 200);
        assert_eq!(lookup("zuid@example.com").await.unwrap().status(), 404);
        assert_eq!(get("/api/v1/contacts?list=south".into()).await.unwrap().status(), 404);
        let lists: Value = get("/api/v1/lists".into()).await.unwrap().json().await.unwrap();
        assert_eq!(lists["items"].as_array().unwrap().len(), 1, "{lists}");
    }

    #[tokio::test]
    async fn an_invitee_is_removed_not_disabled() {
        let app = &spawn_app().await;
        let invited: Value = app
            .post("/api/v1/users", &app.owner_key)
            .json(&json!({ "email": "later@example.com", "role": "viewer" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = invited["user"]["id"].as_str().unwrap();
        let refused = app
            .post(&format!("/api/v1/users/{id}/disable"), &app.owner_key)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 409);
        assert!(refused.text().await.unwrap().contains("remove them instead"));
        let user: Value = app
            .get(&format!("/api/v1/users/{id}"), &app.owner_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(user["status"], "invited");
        assert_eq!(
            app.delete(&format!("/api/v1/users/{id}"), &app.owner_key)
                .send()
                .await
                .unwrap()
                .status(),
            204
        );
        let accepted = app
            .client
            .post(app.url("/api/v1/invitations/accept"))
            .json(&json!({ "token": invited["token"], "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 404, "the invitation went with the user");
    }

    #[tokio::test]
    async fn whoami_names_the_caller_its_permissions_and_lists() {
        let app = spawn_app().await;
        let me: Value = app
            .get("/api/v1/auth/me", &app.owner_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(me["actor"].as_str().unwrap().starts_with("key:"), "{me}");
        assert_eq!(me["workspace_id"], app.workspace_id.as_str());
        assert_eq!(me["permissions"].as_array().unwrap().len(), 16);
        assert_eq!(me["lists"], json!([]));
        let id = active_user(&app, "lotte@example.com", "viewer").await;
        let (_, cookie, _) = sign_in(&app, "lotte@example.com").await;
        let me: Value = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["actor"], format!("user:{id}"));
        assert_eq!(me["permissions"], json!(["contacts:read_masked"]));
        assert_eq!(app.client.get(app.url("/api/v1/auth/me")).send().await.unwrap().status(), 401);
    }

    #[tokio::test]
    async fn security_settings_need_a_recent_second_factor_from_a_session() {
        let app = spawn_app().await;
        active_user(&app, "bram@example.com", "owner").await;
        let (_, cookie, csrf) = sign_in(&app, "bram@example.com").await;
        let with = |method: reqwest::Method, path: &str| {
            app.client
                .request(method, app.url(path))
                .header(COOKIE, cookie.clone())
                .header("X-Consentry-CSRF", csrf.clone())
        };
        for (method, path, body) in [
            (reqwest::Method::PUT, "/api/v1/security/second-factor", json!({ "required": true })),
            (
                reqwest::Method::PUT,
                "/api/v1/security/allowlist",
                json!({ "allowlist": ["127.0.0.1"] }),
            ),
            (reqwest::Method::POST, "/api/v1/security/reset-passwords", json!({})),
            (reqwest::Method::POST, "/api/v1/keys/rotate-all", json!({})),
        ] {
            let refused = with(method, path).json(&body).send().await.unwrap();
            assert_eq!(refused.status(), 403, "{path}");
            assert!(
                refused
                    .text()
                    .await
                    .unwrap()
                    .contains("second-factor check within the last 10 minutes"),
                "{path}"
            );
        }
        // Without a second factor there is nothing to step up with.
        let step_up = with(reqwest::Method::POST, "/api/v1/auth/factor")
            .json(&json!({ "code": "123456" }))
            .send()
            .await
            .unwrap();
        assert_eq!(step_up.status(), 403);
        assert!(step_up.text().await.unwrap().contains("no second factor to confirm with"));
        // Reading settings needs no step-up, and API keys are not sessions.
        assert_eq!(with(reqwest::Method::GET, "/api/v1/security").send().await.unwrap().status(), 200);
        let put = app
            .client
            .put(app.url("/api/v1/security/second-factor"))
            .bearer_auth(&app.owner_key)
            .json(&json!({ "required": false }))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 200);
    }

    /// A problem body without what differs per request.
    async fn problem_without_ids(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let mut body: Value = response.json().await.unwrap();
        body.as_object_mut().unwrap().remove("request_id");
        body.as_object_mut().unwrap().remove("instance");
        (status, body)
    }

    #[tokio::test]
    async fn an_invited_user_signs_in_with_a_session_cookie_and_signs_out() {
        let app = spawn_app().await;
        let weak = app
            .post("/api/v1/users", &app.owner_key)
            .json(&json!({ "email": "weak@example.com", "role": "viewer" }))
            .send()
            .await
            .unwrap();
        let token = weak.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        let refused = app
            .client
            .post(app.url("/api/v1/invitations/accept"))
            .json(&json!({ "token": token, "password": "kort" }))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422);
        assert!(refused.text().await.unwrap().contains("at least 12"));

        let id = active_user(&app, "Tess@example.com", "admin").await;
        let (set_cookie, cookie, csrf) = sign_in(&app, "tess@example.com").await;
        for flag in [
            "__Host-consentry_session=css_",
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=43200",
        ] {
            assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
        }
        let with_cookie = |method: reqwest::Method, path: &str| app.client.request(method, app.url(path)).header(COOKIE, &cookie);

        let sessions = with_cookie(reqwest::Method::GET, "/api/v1/auth/sessions").send().await.unwrap();
        assert_eq!(sessions.status(), 200);
        assert_eq!(sessions.json::<Value>().await.unwrap()["items"].as_array().unwrap().len(), 1);
        // A change made with the cookie needs the CSRF token.
        let list = json!({ "name": "made by tess" });
        let forged = with_cookie(reqwest::Method::POST, "/api/v1/lists")
            .json(&list)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403);
        let wrong = with_cookie(reqwest::Method::POST, "/api/v1/lists")
            .header("X-Consentry-CSRF", "0".repeat(64))
            .json(&list)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403);
        let made = with_cookie(reqwest::Method::POST, "/api/v1/lists")
            .header("X-Consentry-CSRF", &csrf)
            .json(&list)
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        let audit = app
            .get("/api/v1/audit?limit=100", &app.owner_key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            audit.contains(&format!("\"actor\":\"user:{id}\"")),
            "the list was made by the user: {audit}"
        );

        // Signing out ends the session and clears the cookie.
        let out = with_cookie(reqwest::Method::POST, "/api/v1/auth/logout")
            .header("X-Consentry-CSRF", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 204);
        assert!(out.headers().get(SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
        let after = with_cookie(reqwest::Method::GET, "/api/v1/auth/sessions").send().await.unwrap();
        assert_eq!(after.status(), 401);
        // An API key has no session to sign out.
        let keyed = app.post("/api/v1/auth/logout", &app.owner_key).send().await.unwrap();
        assert_eq!(keyed.status(), 400);
    }

    #[tokio::test]
    async fn failed_sign_ins_answer_alike_and_a_disabled_user_is_refused_at_once() {
        let app = spawn_app().await;
        let id = active_user(&app, "noor@example.com", "viewer").await;
        let mut answers = Vec::new();
        for (email, password) in [
            ("noor@example.com", "not the password at all"),
            ("nobody@example.com", PASSWORD),
            ("not an address", PASSWORD),
        ] {
            let response = app
                .client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({ "email": email, "password": password }))
                .send()
                .await
                .unwrap();
            assert!(response.headers().get(SET_COOKIE).is_none());
            answers.push(problem_without_ids(response).await);
        }
        assert_eq!(answers[0].0, 401);
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");

        let (_, cookie, _) = sign_in(&app, "noor@example.com").await;
        let read = || app.client.get(app.url("/api/v1/auth/sessions")).header(COOKIE, &cookie).send();
        assert_eq!(read().await.unwrap().status(), 200);
        let disabled = app
            .post(&format!("/api/v1/users/{id}/disable"), &app.owner_key)
            .send()
            .await
            .unwrap();
        assert_eq!(disabled.status(), 200);
        assert_eq!(disabled.json::<Value>().await.unwrap()["status"], "disabled");
        assert_eq!(read().await.unwrap().status(), 401, "the session outlived the disable");

        // Users are listed, shown and removed through the API.
        let listed: Value = app.get("/api/v1/users", &app.owner_key).send().await.unwrap().json().await.unwrap();
        assert_eq!(listed["items"][0]["email"], "noor@example.com");
        let viewer = app.key_with_scopes("viewer").await;
        assert_eq!(app.get("/api/v1/users", &viewer).send().await.unwrap().status(), 403);
        let removed = app.delete(&format!("/api/v1/users/{id}"), &app.owner_key).send().await.unwrap();
        assert_eq!(removed.status(), 204);
        assert_eq!(
            app.get(&format!("/api/v1/users/{id}"), &app.owner_key)
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }

    /// `oathtool --totp -b SECRET` at `offset` seconds from now; `None` when the
    /// tool is not installed (which fails in CI, where `.ci/run` installs it).
    fn oathtool(secret: &str, offset: i64) -> Option<String> {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + offset;
        match std::process::Command::new("oathtool")
            .args(["--totp", "-b", secret, "--now"])
            .arg(format!("@{at}"))
            .output()
        {
            Ok(out) => {
                assert!(out.status.success(), "oathtool: {}", String::from_utf8_lossy(&out.stderr));
                Some(String::from_utf8(out.stdout).unwrap().trim().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "oathtool is required in CI (Debian package oathtool)"
                );
                eprintln!("oathtool is not installed: skipping the authenticator test");
                None
            }
            Err(e) => panic!("oathtool: {e}"),
        }
    }

    #[tokio::test]
    async fn a_real_authenticator_guards_the_sign_in_and_every_code_works_once() {
        let app = spawn_app().await;
        let id = active_user(&app, "iris@example.com", "admin").await;
        let (_, cookie, csrf) = sign_in(&app, "iris@example.com").await;
        let post = |cookie: &str, csrf: &str, path: &str| {
            app.client
                .post(app.url(path))
                .header(COOKIE, cookie.to_string())
                .header("X-Consentry-CSRF", csrf.to_string())
        };
        let enrolment: Value = post(&cookie, &csrf, "/api/v1/auth/factors/totp")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = enrolment["secret"].as_str().unwrap().to_string();
        let uri = enrolment["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/consentry:iris%40example.com?secret="), "{uri}");
        assert!(uri.contains("issuer=consentry"), "{uri}");
        assert!(enrolment["qr_svg"].as_str().unwrap().contains("<svg"));
        let Some(code) = oathtool(&secret, 0) else { return };
        let wrong = post(&cookie, &csrf, "/api/v1/auth/factors/totp/confirm")
            .json(&json!({ "code": "000000" }))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 422);
        let confirmed = post(&cookie, &csrf, "/api/v1/auth/factors/totp/confirm")
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status(), 200);
        assert!(confirmed.headers().get(SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
        let recovery: Vec<String> = serde_json::from_value(confirmed.json::<Value>().await.unwrap()["recovery_codes"].clone()).unwrap();
        assert_eq!(recovery.len(), 10);
        let sessions = |cookie: String| app.client.get(app.url("/api/v1/auth/sessions")).header(COOKIE, cookie).send();
        assert_eq!(
            sessions(cookie.clone()).await.unwrap().status(),
            401,
            "a factor change ends the sessions"
        );

        // Signing in now needs the second factor.
        let signed = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "iris@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        let pair = signed
            .headers()
            .get(SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = signed.json().await.unwrap();
        assert_eq!(body["second_factor_required"], true);
        let csrf2 = body["csrf_token"].as_str().unwrap().to_string();
        let waiting = sessions(pair.clone()).await.unwrap();
        assert_eq!(waiting.status(), 401);
        assert!(waiting.text().await.unwrap().contains("authenticator"));
        let factor = |code: String| post(&pair, &csrf2, "/api/v1/auth/factor").json(&json!({ "code": code })).send();
        assert_eq!(
            factor(code.clone()).await.unwrap().status(),
            401,
            "the code used to confirm works no more"
        );
        let old = oathtool(&secret, -60).unwrap();
        if old != code {
            assert_eq!(factor(old).await.unwrap().status(), 401, "a code two steps old");
        }
        let verified = factor(oathtool(&secret, 30).unwrap()).await.unwrap();
        assert_eq!(verified.status(), 200);
        let (renewed, csrf3) = renewed_session(verified).await;
        assert_ne!(renewed, pair);
        assert_eq!(
            sessions(pair.clone()).await.unwrap().status(),
            401,
            "a new token at the privilege change"
        );
        assert_eq!(sessions(renewed.clone()).await.unwrap().status(), 200);

        // Exports need a second-factor check within 10 minutes: just done.
        let list = app
            .post("/api/v1/lists", &app.owner_key)
            .json(&json!({ "name": "vip" }))
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 201);
        let export = post(&renewed, &csrf3, "/api/v1/exports")
            .json(&json!({ "list": "vip", "purpose": "backup" }))
            .send()
            .await
            .unwrap();
        assert_eq!(export.status(), 200, "{}", export.text().await.unwrap());
        // A step-up with a recovery code renews the token again.
        let stepped = post(&renewed, &csrf3, "/api/v1/auth/factor")
            .json(&json!({ "code": recovery[2] }))
            .send()
            .await
            .unwrap();
        assert_eq!(stepped.status(), 200);
        let (again, _) = renewed_session(stepped).await;
        assert_eq!(sessions(renewed.clone()).await.unwrap().status(), 401);
        assert_eq!(sessions(again).await.unwrap().status(), 200);

        // A recovery code works once.
        let sign_in_pending = || async {
            let r = app
                .client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({ "email": "iris@example.com", "password": PASSWORD }))
                .send()
                .await
                .unwrap();
            let pair = r
                .headers()
                .get(SET_COOKIE)
                .unwrap()
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let csrf = r.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_string();
            (pair, csrf)
        };
        for expected in [200, 401] {
            let (pair, csrf) = sign_in_pending().await;
            let r = post(&pair, &csrf, "/api/v1/auth/factor")
                .json(&json!({ "code": recovery[0].to_lowercase() }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), expected);
        }
        // The fifth wrong code ends the session.
        let (pair, csrf) = sign_in_pending().await;
        for _ in 0..5 {
            let r = post(&pair, &csrf, "/api/v1/auth/factor")
                .json(&json!({ "code": "123456" }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let late = post(&pair, &csrf, "/api/v1/auth/factor")
            .json(&json!({ "code": recovery[1] }))
            .send()
            .await
            .unwrap();
        assert_eq!(late.status(), 401);
        assert!(late.text().await.unwrap().contains("ended or expired"));

        // Nothing of the factor is stored in clear.
        if !crate::pg::http_suite_on_postgres() {
            for file in crate::support::files_under(app.data_dir.path()) {
                let bytes = std::fs::read(&file).unwrap();
                for planted in std::iter::once(&secret).chain(&recovery) {
                    assert!(
                        !crate::support::contains(&bytes, planted),
                        "{planted} in clear in {}",
                        file.display()
                    );
                }
            }
        }
        // A user manager resets the factor: the password alone signs in again.
        let reset = app
            .post(&format!("/api/v1/users/{id}/reset-2fa"), &app.owner_key)
            .send()
            .await
            .unwrap();
        assert_eq!(reset.status(), 204);
        assert_eq!(sessions(pair_of_new_sign_in(&app).await).await.unwrap().status(), 200);
    }

    /// The audit events of the app's workspace with this action.
    async fn events(app: &TestApp, action: &str) -> Vec<consentry::audit::AuditEvent> {
        let operator = consentry::access::Principal::operator(&app.workspace_id);
        app.vault
            .audit_events(&operator, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == action)
            .collect()
    }

    fn put(app: &TestApp, path: &str, key: &str, body: Value) -> reqwest::RequestBuilder {
        app.client.put(app.url(path)).bearer_auth(key).json(&body)
    }

    #[tokio::test]
    async fn allowlists_of_workspace_key_and_user_shut_out_other_addresses() {
        let app = spawn_app().await;
        let owner = &app.owner_key;
        let app = &app;
        let me = |status: u16| async move {
            assert_eq!(app.get("/api/v1/lists", owner).send().await.unwrap().status(), status);
        };
        // A list without this request's address (127.0.0.1) needs a confirmation.
        let office = json!({ "allowlist": ["203.0.113.0/24", "2001:db8::/48"] });
        let refused = put(app, "/api/v1/security/allowlist", owner, office.clone()).send().await.unwrap();
        assert_eq!(refused.status(), 409);
        assert!(refused.text().await.unwrap().contains("confirm_lockout"));
        let bad = put(
            app,
            "/api/v1/security/allowlist",
            owner,
            json!({ "allowlist": ["10.0.0.0/8", "10.1.2.3/8"] }),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(bad.status(), 422);
        assert!(bad.text().await.unwrap().contains("entry 2: has host bits set"));
        me(200).await;
        let with_me = json!({ "allowlist": ["127.0.0.1", "203.0.113.0/24"] });
        let set = put(app, "/api/v1/security/allowlist", owner, with_me).send().await.unwrap();
        assert_eq!(
            set.json::<Value>().await.unwrap()["allowlist"],
            json!(["127.0.0.1/32", "203.0.113.0/24"])
        );
        me(200).await;
        let mut confirmed = office.clone();
        confirmed["confirm_lockout"] = json!(true);
        assert_eq!(
            put(app, "/api/v1/security/allowlist", owner, confirmed)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let shut_out = app.get("/api/v1/lists", owner).send().await.unwrap();
        assert_eq!(shut_out.status(), 403);
        assert!(shut_out.text().await.unwrap().contains("not allowed by the workspace's allowlist"));
        // Signing in is refused before any account is looked at.
        active_user_while_shut_out(app).await;
        let sign_in_refused = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "nobody@example.com", "password": "wrong wrong wrong wrong" }))
            .send()
            .await
            .unwrap();
        assert_eq!(sign_in_refused.status(), 403);
        let refusals = events(app, "auth.address_refused").await;
        assert!(refusals.len() >= 2, "{refusals:?}");
        assert!(refusals.iter().all(|e| e.details.contains(r#""allowlist":"workspace""#)));
        // `consentry security allowlist clear` on the server is the way back in.
        let operator = consentry::access::Principal::operator(&app.workspace_id);
        app.vault.set_workspace_allowlist(&operator, &[], false).await.unwrap();
        me(200).await;
        assert_eq!(events(app, "security.allowlist_changed").await.len(), 3);

        // A key of its own: usable only from its list.
        let made = app
            .post("/api/v1/keys", owner)
            .json(&json!({ "name": "partner", "scopes": "viewer,keys:manage", "allowlist": ["198.51.100.0/24"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        let made: Value = made.json().await.unwrap();
        assert_eq!(made["key"]["allowlist"], json!(["198.51.100.0/24"]));
        let (partner, partner_id) = (made["token"].as_str().unwrap(), made["key"]["id"].as_str().unwrap());
        assert_eq!(app.get("/api/v1/lists", partner).send().await.unwrap().status(), 403);
        assert!(events(app, "auth.address_refused")
            .await
            .last()
            .unwrap()
            .details
            .contains(r#""allowlist":"key""#));
        let path = format!("/api/v1/keys/{partner_id}/allowlist");
        put(app, &path, owner, json!({ "allowlist": ["127.0.0.0/8"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(app.get("/api/v1/lists", partner).send().await.unwrap().status(), 200);
        // The key cannot shut itself out without saying so.
        let own = put(app, &path, partner, json!({ "allowlist": ["198.51.100.0/24"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 409);

        // A user of their own: the list is looked at once the password is right.
        let id = active_user(app, "ayla@example.com", "viewer").await;
        let user_path = format!("/api/v1/users/{id}/allowlist");
        put(app, &user_path, owner, json!({ "allowlist": ["198.51.100.7"] }))
            .send()
            .await
            .unwrap();
        let attempt = |password: &'static str| {
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({ "email": "ayla@example.com", "password": password }))
                .send()
        };
        assert_eq!(attempt("wrong wrong wrong wrong").await.unwrap().status(), 401);
        assert_eq!(attempt(PASSWORD).await.unwrap().status(), 403);
        assert_eq!(
            events(app, "auth.address_refused").await.last().unwrap().target.as_deref(),
            Some(format!("user:{id}").as_str())
        );
        put(app, &user_path, owner, json!({ "allowlist": ["127.0.0.1"] }))
            .send()
            .await
            .unwrap();
        let (_, cookie, _) = sign_in(app, "ayla@example.com").await;
        let sessions = || app.client.get(app.url("/api/v1/auth/sessions")).header(COOKIE, &cookie).send();
        assert_eq!(sessions().await.unwrap().status(), 200);
        // A narrower list applies to a running session at once.
        put(app, &user_path, owner, json!({ "allowlist": ["198.51.100.7"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(sessions().await.unwrap().status(), 403);
        let user: Value = app
            .get(&format!("/api/v1/users/{id}"), owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(user["allowlist"], json!(["198.51.100.7/32"]));
        // The security overview counts what was refused and whose lists are set.
        let report: Value = app.get("/api/v1/security", owner).send().await.unwrap().json().await.unwrap();
        assert_eq!(report["allowlists"]["users_with_allowlist"], 1, "{report}");
        assert_eq!(report["allowlists"]["keys_with_allowlist"], 1, "{report}");
        assert!(report["failed_authentications"]["count"].as_u64().unwrap() >= 5, "{report}");
        assert_eq!(report["second_factor"]["without_second_factor"].as_array().unwrap().len(), 2);
        let viewer = app.key_with_scopes("admin").await;
        assert_eq!(app.get("/api/v1/security", &viewer).send().await.unwrap().status(), 403);
        // Keys and users of another workspace are not found.
        let (_, other_key) = app.other_workspace().await;
        for path in [path, user_path] {
            let answer = put(app, &path, &other_key, json!({ "allowlist": [] })).send().await.unwrap();
            assert_eq!(answer.status(), 404, "{path}");
        }
    }

    /// While the workspace's list shuts this address out, an invitation can
    /// still be accepted (it grants nothing by itself) but not used to sign in.
    async fn active_user_while_shut_out(app: &TestApp) {
        let operator = consentry::access::Principal::operator(&app.workspace_id);
        let invitation = app.vault.invite_user(&operator, "kees@example.com", "viewer", &[]).await.unwrap();
        let accepted = app
            .client
            .post(app.url("/api/v1/invitations/accept"))
            .json(&json!({ "token": secrecy::ExposeSecret::expose_secret(&invitation.token), "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(accepted.status(), 200);
        let refused = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "kees@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403);
    }

    #[tokio::test]
    async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
        let settings = |trusted: &[&str]| consentry::startup::HttpSettings {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..Default::default()
        };
        for (trusted, behind_proxy) in [(&[][..], false), (&["127.0.0.0/8"][..], true)] {
            let app = crate::helpers::spawn_app_with(settings(trusted)).await;
            let operator = consentry::access::Principal::operator(&app.workspace_id);
            app.vault
                .set_workspace_allowlist(&operator, &["203.0.113.0/24".to_string()], false)
                .await
                .unwrap();
            let from = |xff: Option<&str>| {
                let mut request = app.get("/api/v1/lists", &app.owner_key);
                if let Some(xff) = xff {
                    request = request.header("X-Forwarded-For", xff);
                }
                async move { request.send().await.unwrap().status().as_u16() }
            };
            let (inside, outside) = if behind_proxy { (200, 403) } else { (403, 403) };
            assert_eq!(from(Some("203.0.113.5")).await, inside, "trusted: {trusted:?}");
            assert_eq!(from(Some("198.51.100.1, 203.0.113.5")).await, inside, "the right-most hop counts");
            assert_eq!(from(Some("203.0.113.5, 198.51.100.1")).await, outside);
            assert_eq!(from(None).await, 403);
            // The RFC 7239 header is not the one configured, so it is not believed.
            let forwarded = app
                .get("/api/v1/lists", &app.owner_key)
                .header("Forwarded", "for=203.0.113.5")
                .send()
                .await
                .unwrap();
            assert_eq!(forwarded.status(), 403);
            app.vault.set_workspace_allowlist(&operator, &[], false).await.unwrap();

            // Failed sign-ins per client address: a forged header from an
            // untrusted peer does not spread them over many addresses.
            let fail = |n: usize, xff: &str| {
                app.client
                    .post(app.url("/api/v1/auth/login"))
                    .header("X-Forwarded-For", xff.to_string())
                    .json(&json!({ "email": format!("stranger{n}@example.com"), "password": "wrong wrong wrong wrong" }))
                    .send()
            };
            for n in 0..30 {
                assert_eq!(fail(n, &format!("198.51.100.{n}")).await.unwrap().status(), 401);
            }
            let next = fail(99, "198.51.100.200").await.unwrap().status().as_u16();
            assert_eq!(next, if behind_proxy { 401 } else { 429 }, "trusted: {trusted:?}");
        }
    }

    #[tokio::test]
    async fn reset_all_passwords_ends_sessions_and_holds_users_to_a_new_password() {
        let app = spawn_app().await;
        active_user(&app, "noor@example.com", "marketer").await;
        let (_, old_cookie, _) = sign_in(&app, "noor@example.com").await;
        let reset = app.post("/api/v1/security/reset-passwords", &app.owner_key).send().await.unwrap();
        assert_eq!(reset.status(), 200);
        assert_eq!(reset.json::<Value>().await.unwrap()["users"], 1);
        let get = |cookie: &str| app.client.get(app.url("/api/v1/lists")).header(COOKIE, cookie.to_string()).send();
        assert_eq!(get(&old_cookie).await.unwrap().status(), 401, "every session ended");

        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "noor@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let cookie = response.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["password_change_required"], true);
        let held = get(&cookie).await.unwrap();
        assert_eq!(held.status(), 403);
        assert!(held.text().await.unwrap().contains("choose a new password first"));
        let changed = app
            .client
            .post(app.url("/api/v1/auth/password"))
            .header(COOKIE, &cookie)
            .header("X-Consentry-CSRF", body["csrf_token"].as_str().unwrap())
            .json(&json!({ "current_password": PASSWORD, "new_password": "zeilboot tulpenveld molenwiek 4" }))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 204);
        let again = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "noor@example.com", "password": "zeilboot tulpenveld molenwiek 4" }))
            .send()
            .await
            .unwrap();
        let cookie = again.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
        assert_eq!(again.json::<Value>().await.unwrap()["password_change_required"], false);
        assert_eq!(get(&cookie).await.unwrap().status(), 200);
        assert_eq!(events(&app, "security.passwords_reset").await.len(), 1);
        let viewer = app.key_with_scopes("admin").await;
        let refused = app.post("/api/v1/security/reset-passwords", &viewer).send().await.unwrap();
        assert_eq!(refused.status(), 403, "admin lacks security:manage");
    }

    #[tokio::test]
    async fn rotate_all_keys_replaces_every_live_key_in_one_event() {
        let app = spawn_app().await;
        let made = app
            .post("/api/v1/keys", &app.owner_key)
            .json(&json!({ "name": "shop", "scopes": "viewer", "allowlist": ["127.0.0.1"] }))
            .send()
            .await
            .unwrap();
        let shop = made.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        let revoked = app.key_with_scopes("viewer").await;
        let revoked_id = &revoked[4..20];
        app.delete(&format!("/api/v1/keys/{revoked_id}"), &app.owner_key)
            .send()
            .await
            .unwrap();

        let rotated = app
            .post("/api/v1/keys/rotate-all", &app.owner_key)
            .json(&json!({ "overlap": "1h" }))
            .send()
            .await
            .unwrap();
        assert_eq!(rotated.status(), 201);
        let items = rotated.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 2, "the owner's key and the shop's, not the revoked one: {items:?}");
        let new_shop = items.iter().find(|i| i["key"]["name"] == "shop").unwrap();
        assert_eq!(new_shop["key"]["allowlist"], json!(["127.0.0.1/32"]));
        for token in [&app.owner_key, &shop, &new_shop["token"].as_str().unwrap().to_string()] {
            assert_eq!(
                app.get("/api/v1/lists", token).send().await.unwrap().status(),
                200,
                "within the overlap"
            );
        }
        assert_eq!(events(&app, "api_key.rotated_all").await.len(), 1);
        assert!(events(&app, "api_key.rotated").await.is_empty(), "one event for all");

        // Without an overlap the old keys stop at once, the caller's too.
        let new_owner = items.iter().find(|i| i["key"]["name"] == "owner").unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let again = app
            .post("/api/v1/keys/rotate-all", &new_owner)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 201);
        let items = again.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 4, "the overlapping old keys are live too");
        assert_eq!(app.get("/api/v1/lists", &new_owner).send().await.unwrap().status(), 401);
        let newest = items.iter().find(|i| i["key"]["name"] == "owner").unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(app.get("/api/v1/lists", &newest).send().await.unwrap().status(), 200);
        let bad = app
            .post("/api/v1/keys/rotate-all", &newest)
            .json(&json!({ "overlap": "90d" }))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 422);
    }

    async fn pair_of_new_sign_in(app: &TestApp) -> String {
        sign_in(app, "iris@example.com").await.1
    }

    #[tokio::test]
    async fn repeated_failures_are_answered_429_with_retry_after_for_any_address() {
        let app = spawn_app().await;
        active_user(&app, "sem@example.com", "viewer").await;
        for email in ["sem@example.com", "nobody@example.com"] {
            let attempt = |password: &str| {
                app.client
                    .post(app.url("/api/v1/auth/login"))
                    .json(&json!({ "email": email, "password": password }))
                    .send()
            };
            for _ in 0..5 {
                assert_eq!(attempt("wrong wrong wrong wrong").await.unwrap().status(), 401);
            }
            let slowed = attempt(PASSWORD).await.unwrap();
            assert_eq!(slowed.status(), 429, "{email}");
            assert_eq!(slowed.headers()["retry-after"], "1");
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (_, cookie, _) = sign_in(&app, "sem@example.com").await;
        assert!(cookie.starts_with("__Host-consentry_session=css_"));
    }

    #[tokio::test]
    async fn a_required_second_factor_is_enrolled_before_anything_else() {
        let app = spawn_app().await;
        active_user(&app, "joost@example.com", "admin").await;
        let required = app
            .client
            .put(app.url("/api/v1/security/second-factor"))
            .bearer_auth(&app.owner_key)
            .json(&json!({ "required": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(required.json::<Value>().await.unwrap()["required"], true);
        let viewer = app.key_with_scopes("viewer").await;
        assert_eq!(
            app.get("/api/v1/security/second-factor", &viewer).send().await.unwrap().status(),
            403
        );

        let signed = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "joost@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        let pair = signed
            .headers()
            .get(SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = signed.json().await.unwrap();
        assert_eq!(
            (
                body["second_factor_enrolment_required"].clone(),
                body["second_factor_required"].clone()
            ),
            (json!(true), json!(false))
        );
        let csrf = body["csrf_token"].as_str().unwrap().to_string();
        let blocked = app.client.get(app.url("/api/v1/lists")).header(COOKIE, &pair).send().await.unwrap();
        assert_eq!(blocked.status(), 403);
        assert!(blocked.text().await.unwrap().contains("requires a second factor"));
        let post = |path: &str| {
            app.client
                .post(app.url(path))
                .header(COOKIE, pair.clone())
                .header("X-Consentry-CSRF", csrf.clone())
        };
        let enrolment: Value = post("/api/v1/auth/factors/totp").send().await.unwrap().json().await.unwrap();
        let secret = enrolment["secret"].as_str().unwrap().to_string();
        let Some(code) = oathtool(&secret, 0) else { return };
        let confirmed = post("/api/v1/auth/factors/totp/confirm")
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status(), 200);

        // Signing in again asks for the factor, and then everything is open.
        let signed = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "joost@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        let pair = signed
            .headers()
            .get(SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = signed.json().await.unwrap();
        assert_eq!(
            (
                body["second_factor_enrolment_required"].clone(),
                body["second_factor_required"].clone()
            ),
            (json!(false), json!(true))
        );
        let verified = app
            .client
            .post(app.url("/api/v1/auth/factor"))
            .header(COOKIE, &pair)
            .header("X-Consentry-CSRF", body["csrf_token"].as_str().unwrap())
            .json(&json!({ "code": oathtool(&secret, 30).unwrap() }))
            .send()
            .await
            .unwrap();
        assert_eq!(verified.status(), 200);
        let (pair, _) = renewed_session(verified).await;
        assert_eq!(
            app.client
                .get(app.url("/api/v1/lists"))
                .header(COOKIE, &pair)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn changing_the_password_ends_every_session() {
        let app = spawn_app().await;
        active_user(&app, "lotte@example.com", "viewer").await;
        let (_, first, _) = sign_in(&app, "lotte@example.com").await;
        let (_, second, csrf) = sign_in(&app, "lotte@example.com").await;
        let change = |current: &str, new: &str| {
            app.client
                .post(app.url("/api/v1/auth/password"))
                .header(COOKIE, second.clone())
                .header("X-Consentry-CSRF", csrf.clone())
                .json(&json!({ "current_password": current, "new_password": new }))
                .send()
        };
        let wrong = change("not my password at all", "een nieuw lang wachtwoord 9").await.unwrap();
        assert_eq!(wrong.status(), 422);
        assert!(wrong.text().await.unwrap().contains("current password is wrong"));
        let weak = change(PASSWORD, "Lotte2024").await.unwrap();
        assert_eq!(weak.status(), 422);
        let same = change(PASSWORD, PASSWORD).await.unwrap();
        assert_eq!(same.status(), 422);
        let changed = change(PASSWORD, "een nieuw lang wachtwoord 9").await.unwrap();
        assert_eq!(changed.status(), 204);
        assert!(changed.headers().get(SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
        for cookie in [&first, &second] {
            let r = app
                .client
                .get(app.url("/api/v1/auth/sessions"))
                .header(COOKIE, cookie.as_str())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "a session outlived the password change");
        }
        let old = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "lotte@example.com", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), 401);
        let new = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "lotte@example.com", "password": "een nieuw lang wachtwoord 9" }))
            .send()
            .await
            .unwrap();
        assert_eq!(new.status(), 200);
        let keyed = app
            .post("/api/v1/auth/password", &app.owner_key)
            .json(&json!({ "current_password": "x", "new_password": "y" }))
            .send()
            .await
            .unwrap();
        assert_eq!(keyed.status(), 400);
    }
}

#[tokio::test]
async fn a_rotated_key_overlaps_its_successor_for_the_window_given() {
    let app = spawn_app().await;
    let created: Value = app
        .post("/api/v1/keys", &app.owner_key)
        .json(&json!({ "name": "sync", "scopes": "viewer", "expires": "90d" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (old_id, old) = (
        created["key"]["id"].as_str().unwrap().to_string(),
        created["token"].as_str().unwrap().to_string(),
    );
    let rotate = |id: &str, body: Value| app.post(&format!("/api/v1/keys/{id}/rotate"), &app.owner_key).json(&body).send();
    let rotated = rotate(&old_id, json!({ "overlap": "1h" })).await.unwrap();
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.unwrap();
    let (new_id, new) = (
        rotated["key"]["id"].as_str().unwrap().to_string(),
        rotated["token"].as_str().unwrap().to_string(),
    );
    assert_ne!(new, old);
    assert_eq!(
        (rotated["key"]["name"].clone(), rotated["key"]["scopes"].clone()),
        (created["key"]["name"].clone(), created["key"]["scopes"].clone())
    );
    assert!(rotated["key"]["expires_at"].is_string(), "the new key expires as the old one did");
    let lists = |key: &str| app.get("/api/v1/lists", key).send();
    assert_eq!(lists(&old).await.unwrap().status(), 200, "the old key works during the overlap");
    assert_eq!(lists(&new).await.unwrap().status(), 200);
    // Without an overlap the rotated key stops at once.
    let again: Value = rotate(&new_id, json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(lists(&new).await.unwrap().status(), 401);
    assert_eq!(lists(again["token"].as_str().unwrap()).await.unwrap().status(), 200);
    assert_eq!(
        rotate(&new_id, json!({})).await.unwrap().status(),
        404,
        "an expired key is not rotated"
    );
    assert_eq!(rotate(&old_id, json!({ "overlap": "90d" })).await.unwrap().status(), 422);
    // The last use is shown with its client address, which is stored only sealed.
    let listed: Value = app.get("/api/v1/keys", &app.owner_key).send().await.unwrap().json().await.unwrap();
    let used = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == old_id.as_str())
        .unwrap();
    assert!(used["last_used_at"].is_string(), "{used}");
    assert_eq!(used["last_used_from"], "127.0.0.1", "{used}");
    if !crate::pg::http_suite_on_postgres() {
        let db = rusqlite::Connection::open(app.data_dir.path().join("consentry.db")).unwrap();
        let sealed: Vec<u8> = db
            .query_row("SELECT last_used_from FROM api_keys WHERE id = ?1", [&old_id], |r| r.get(0))
            .unwrap();
        assert!(sealed.len() > 64 && !crate::support::contains(&sealed, "127.0.0.1"));
        // Copied onto another key, it does not open there.
        db.execute(
            "UPDATE api_keys SET last_used_from = ?1 WHERE id = ?2",
            rusqlite::params![sealed, new_id],
        )
        .unwrap();
        let listed: Value = app.get("/api/v1/keys", &app.owner_key).send().await.unwrap().json().await.unwrap();
        let moved = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == new_id.as_str())
            .unwrap();
        assert!(moved["last_used_from"].is_null(), "{moved}");
    }
    // A key rotating itself must leave itself an overlap to switch in.
    let me: Value = app
        .get("/api/v1/auth/me", &app.owner_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let own_id = me["actor"].as_str().unwrap().trim_start_matches("key:").to_string();
    assert_eq!(rotate(&own_id, json!({})).await.unwrap().status(), 409);
    assert_eq!(lists(&app.owner_key).await.unwrap().status(), 200);
    let audit = app
        .get("/api/v1/audit?limit=100", &app.owner_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("api_key.rotated") && audit.contains(&new_id), "{audit}");
    // A viewer cannot rotate an owner's key.
    let owner_id = &app.owner_key[4..20];
    let viewer = app.key_with_scopes("viewer,keys:manage").await;
    let refused = app
        .post(&format!("/api/v1/keys/{owner_id}/rotate"), &viewer)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
