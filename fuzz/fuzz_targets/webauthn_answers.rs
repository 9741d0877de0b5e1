//! Arbitrary browser answers to passkey ceremonies, as the server receives them
//! (JSON with base64url fields), through the verifier consentry uses: the
//! registration answer (CBOR attestation object, authenticator data, COSE key)
//! and the identification of a sign-in answer. They may be refused, never panic.
//!
//! The input is either JSON (read as the whole credential) or raw parts
//! separated by 0xFF: client data (empty: the right one for the challenge, so
//! that the rest is parsed), attestation object or authenticator data,
//! signature, user handle.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use consentry::vault::passkeys::RelyingParty;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::LazyLock;
use webauthn_rs::prelude::{PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder};

struct Setup {
    webauthn: Webauthn,
    registration: PasskeyRegistration,
    /// Client data a browser would send for the registration, so that inputs
    /// with an empty first part reach the attestation object's parsing.
    client_data: Vec<u8>,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let origin = Url::parse("http://localhost:8080").expect("a URL");
    // The same checks consentry applies to its origin.
    RelyingParty::new(&origin).expect("a relying party");
    let webauthn = WebauthnBuilder::new("localhost", &origin)
        .and_then(|b| b.build())
        .expect("a verifier");
    let (options, registration) = webauthn
        .start_passkey_registration(Uuid::nil(), "fuzz@example.com", "fuzz@example.com", None)
        .expect("a registration");
    let options = serde_json::to_value(&options).expect("options as JSON");
    let client_data = json!({
        "type": "webauthn.create",
        "challenge": options["publicKey"]["challenge"],
        "origin": "http://localhost:8080",
        "crossOrigin": false,
    })
    .to_string()
    .into_bytes();
    Setup {
        webauthn,
        registration,
        client_data,
    }
});

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    let (registration, assertion) = match serde_json::from_slice::<Value>(data) {
        Ok(v) => (v.clone(), v),
        Err(_) => {
            let mut parts = data.splitn(4, |b| *b == 0xff);
            let client_data = match parts.next().unwrap_or_default() {
                [] => setup.client_data.as_slice(),
                given => given,
            };
            let object = parts.next().unwrap_or_default();
            let signature = parts.next().unwrap_or_default();
            let user = parts.next().unwrap_or_default();
            let id = b64(&signature[..signature.len().min(16)]);
            (
                json!({ "id": id, "rawId": id, "type": "public-key", "extensions": {},
                        "response": { "clientDataJSON": b64(client_data), "attestationObject": b64(object) } }),
                json!({ "id": id, "rawId": id, "type": "public-key", "extensions": {},
                        "response": { "clientDataJSON": b64(client_data), "authenticatorData": b64(object),
                                      "signature": b64(signature), "userHandle": b64(user) } }),
            )
        }
    };
    if let Ok(answer) = serde_json::from_value::<RegisterPublicKeyCredential>(registration) {
        let _ = setup.webauthn.finish_passkey_registration(&answer, &setup.registration);
    }
    if let Ok(answer) = serde_json::from_value::<PublicKeyCredential>(assertion) {
        let _ = setup.webauthn.identify_discoverable_authentication(&answer);
    }
});
