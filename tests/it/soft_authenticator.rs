//! A software WebAuthn authenticator for the integration tests: a platform
//! authenticator (ES256 on P-256, "none" attestation, discoverable credential)
//! as a browser exposes it, answering `navigator.credentials.create()` and
//! `navigator.credentials.get()` with the JSON a `PublicKeyCredential`
//! serialises to (base64url without padding).
//!
//! What it does, after W3C WebAuthn level 3:
//! - the client steps: the origin must be a secure context (https, or http on
//!   `localhost`), the RP ID defaults to the origin's host and must be that host
//!   or a registrable suffix of it, ES256 (-7) must be among `pubKeyCredParams`,
//!   `clientDataJSON` is `{"type","challenge","origin","crossOrigin":false}` in
//!   that order, as browsers write it;
//! - authenticator data (§6.1): SHA-256 of the RP ID, flags UP|UV (+AT when
//!   registering), the signature counter big-endian, then the attested credential
//!   data (zero AAGUID, as browsers send with "none" attestation, the credential
//!   id, the COSE key `{1:2, 3:-7, -1:1, -2:x, -3:y}` in canonical CBOR);
//! - the attestation object `{"fmt":"none","attStmt":{},"authData":…}`;
//! - the assertion signature: ECDSA P-256 / SHA-256 over
//!   `authenticatorData || SHA-256(clientDataJSON)`, DER encoded.
//!
//! It holds one credential. Registering again (with the credential not in
//! `excludeCredentials`) creates a new credential (new key, new id, counter 0)
//! that replaces the old one, as a platform authenticator replaces a passkey for
//! the same account.
//!
//! The tests at the end drive the real verifier, `webauthn_rs::Webauthn`.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand::RngCore;
use serde_cbor_2::Value as Cbor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use webauthn_rs::prelude::Url;

/// Flag bits of the authenticator data (§6.1).
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

/// COSE: key type EC2, algorithm ES256, curve P-256.
const COSE_KTY_EC2: i128 = 2;
const COSE_ALG_ES256: i128 = -7;
const COSE_CRV_P256: i128 = 1;

/// The length of the credential ids this authenticator makes.
const CREDENTIAL_ID_LEN: usize = 32;

/// A software platform authenticator holding (at most) one discoverable ES256
/// credential.
#[allow(dead_code)]
#[derive(Clone)]
pub struct SoftAuthenticator {
    signing_key: SigningKey,
    credential_id: Vec<u8>,
    /// `user.id` given at registration; `None` before the first registration.
    user_handle: Option<Vec<u8>>,
    /// The RP ID the credential is scoped to; `None` before the first registration.
    rp_id: Option<String>,
    counter: u32,
    counter_step: u32,
}

#[allow(dead_code)]
impl SoftAuthenticator {
    /// A new authenticator with no credential yet; `counter_step` is how much the
    /// signature counter grows per assertion (0 = a synced passkey that always
    /// reports 0, like Apple's).
    pub fn new(counter_step: u32) -> Self {
        let (signing_key, credential_id) = fresh_credential();
        SoftAuthenticator {
            signing_key,
            credential_id,
            user_handle: None,
            rp_id: None,
            counter: 0,
            counter_step,
        }
    }

    /// Answers `navigator.credentials.create({publicKey})`: `options` is the JSON
    /// the server sent, either `{"publicKey": {...}}` (webauthn-rs
    /// `CreationChallengeResponse` serialised) or the inner object; `origin` like
    /// "http://localhost:8080". Checks rp.id is a registrable suffix of the
    /// origin's host (rp id defaults to the origin's host when absent), refuses
    /// (Err(String)) when the credential id is in `excludeCredentials`. Sets UP and
    /// UV flags. Returns the credential JSON.
    pub fn register(&mut self, options: &Value, origin: &str) -> Result<Value, String> {
        let options = public_key_options(options)?;
        let host = secure_origin_host(origin)?;
        let rp_id = match options.pointer("/rp/id") {
            None | Some(Value::Null) => host.clone(),
            Some(Value::String(id)) => id.to_ascii_lowercase(),
            Some(other) => return Err(format!("TypeError: rp.id is not a string: {other}")),
        };
        check_rp_id(&rp_id, &host)?;

        let challenge = b64_field(options, "challenge")?;
        let user_id = options
            .pointer("/user/id")
            .and_then(Value::as_str)
            .ok_or("TypeError: user.id is missing")
            .and_then(|id| b64_decode(id).map_err(|_| "TypeError: user.id is not base64url"))?;
        if user_id.is_empty() || user_id.len() > 64 {
            return Err(format!("TypeError: user.id must be 1 to 64 bytes, not {}", user_id.len()));
        }

        // The client offers the authenticator only the algorithms the RP accepts;
        // an empty list means the defaults, which include ES256.
        let params = options
            .get("pubKeyCredParams")
            .and_then(Value::as_array)
            .ok_or("TypeError: pubKeyCredParams is missing")?;
        let es256 = params
            .iter()
            .any(|p| p.get("type").and_then(Value::as_str) == Some("public-key") && p.get("alg").and_then(Value::as_i64) == Some(-7));
        if !params.is_empty() && !es256 {
            return Err("NotSupportedError: the authenticator only supports ES256 (-7)".into());
        }
        if options.pointer("/authenticatorSelection/authenticatorAttachment") == Some(&json!("cross-platform")) {
            return Err("NotAllowedError: a platform authenticator was asked for a cross-platform one".into());
        }

        // authenticatorMakeCredential step 3: a credential of this RP on the
        // exclude list means the user already registered this authenticator.
        if self.rp_id.as_deref() == Some(rp_id.as_str()) && descriptor_ids(options, "excludeCredentials")?.contains(&self.credential_id) {
            return Err("InvalidStateError: the authenticator already holds a credential in excludeCredentials".into());
        }

        if self.rp_id.is_some() {
            let (signing_key, credential_id) = fresh_credential();
            self.signing_key = signing_key;
            self.credential_id = credential_id;
            self.counter = 0;
        }

        let client_data_json = client_data_json("webauthn.create", &challenge, origin);
        let mut auth_data = auth_data_header(&rp_id, FLAG_UP | FLAG_UV | FLAG_AT, self.counter);
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: zeros with "none" attestation
        let id_len = u16::try_from(self.credential_id.len()).map_err(|_| "UnknownError: credential id too long".to_string())?;
        auth_data.extend_from_slice(&id_len.to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_public_key()?);

        let attestation_object = cbor(Cbor::Map(BTreeMap::from([
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new())),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ])))?;

        self.rp_id = Some(rp_id);
        self.user_handle = Some(user_id);

        let id = URL_SAFE_NO_PAD.encode(&self.credential_id);
        Ok(json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(attestation_object),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data_json),
                "transports": ["internal"],
            },
            "extensions": {},
        }))
    }

    /// Answers `navigator.credentials.get({publicKey})`: refuses when
    /// `allowCredentials` is non-empty and does not hold this credential;
    /// otherwise increments the counter by counter_step and signs; includes
    /// `userHandle` (the user.id given at registration, base64url) always (a
    /// discoverable credential).
    pub fn assert(&mut self, options: &Value, origin: &str) -> Result<Value, String> {
        let options = public_key_options(options)?;
        let host = secure_origin_host(origin)?;
        let rp_id = match options.get("rpId") {
            None | Some(Value::Null) => host.clone(),
            Some(Value::String(id)) => id.to_ascii_lowercase(),
            Some(other) => return Err(format!("TypeError: rpId is not a string: {other}")),
        };
        check_rp_id(&rp_id, &host)?;
        let challenge = b64_field(options, "challenge")?;

        let (Some(own_rp_id), Some(user_handle)) = (&self.rp_id, &self.user_handle) else {
            return Err("NotAllowedError: the authenticator holds no credential".into());
        };
        if *own_rp_id != rp_id {
            return Err(format!("NotAllowedError: the authenticator holds no credential for {rp_id}"));
        }
        let allowed = descriptor_ids(options, "allowCredentials")?;
        if !allowed.is_empty() && !allowed.contains(&self.credential_id) {
            return Err("NotAllowedError: the authenticator holds none of the allowCredentials".into());
        }

        self.counter = self.counter.wrapping_add(self.counter_step);
        let client_data_json = client_data_json("webauthn.get", &challenge, origin);
        let auth_data = auth_data_header(&rp_id, FLAG_UP | FLAG_UV, self.counter);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(client_data_json.as_bytes()));
        let signature: Signature = self.signing_key.sign(&signed);

        let id = URL_SAFE_NO_PAD.encode(&self.credential_id);
        Ok(json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data_json),
                "signature": URL_SAFE_NO_PAD.encode(signature.to_der().as_bytes()),
                "userHandle": URL_SAFE_NO_PAD.encode(user_handle),
            },
            "extensions": {},
        }))
    }

    /// Sets the signature counter (to simulate a cloned authenticator whose
    /// counter is behind).
    pub fn set_counter(&mut self, counter: u32) {
        self.counter = counter;
    }

    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The credential id, base64url.
    pub fn credential_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.credential_id)
    }

    /// The public key as a COSE_Key: `{1: 2, 3: -7, -1: 1, -2: x, -3: y}`, in the
    /// canonical CBOR order authenticators use (1, 3, -1, -2, -3).
    fn cose_public_key(&self) -> Result<Vec<u8>, String> {
        let point = self.signing_key.verifying_key().to_sec1_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err("UnknownError: the public key has no affine coordinates".into());
        };
        cbor(Cbor::Map(BTreeMap::from([
            (Cbor::Integer(1), Cbor::Integer(COSE_KTY_EC2)),
            (Cbor::Integer(3), Cbor::Integer(COSE_ALG_ES256)),
            (Cbor::Integer(-1), Cbor::Integer(COSE_CRV_P256)),
            (Cbor::Integer(-2), Cbor::Bytes(x.to_vec())),
            (Cbor::Integer(-3), Cbor::Bytes(y.to_vec())),
        ])))
    }
}

/// A new P-256 key and a random credential id.
fn fresh_credential() -> (SigningKey, Vec<u8>) {
    let mut rng = rand::rng();
    let signing_key = loop {
        let mut scalar = [0u8; 32];
        rng.fill_bytes(&mut scalar);
        // Zero or not below the group order: about one draw in 2^32.
        if let Ok(key) = SigningKey::from_slice(&scalar) {
            break key;
        }
    };
    let mut credential_id = vec![0u8; CREDENTIAL_ID_LEN];
    rng.fill_bytes(&mut credential_id);
    (signing_key, credential_id)
}

/// `{"publicKey": {...}}` or the inner object.
fn public_key_options(options: &Value) -> Result<&Value, String> {
    let inner = options.get("publicKey").unwrap_or(options);
    if inner.is_object() {
        Ok(inner)
    } else {
        Err(format!("TypeError: the options are not an object: {options}"))
    }
}

/// The host of a secure-context origin (https, or http on localhost as browsers
/// allow); an IP address is no valid RP ID.
fn secure_origin_host(origin: &str) -> Result<String, String> {
    let url = Url::parse(origin).map_err(|e| format!("SecurityError: bad origin {origin}: {e}"))?;
    let host = url
        .domain()
        .ok_or_else(|| format!("SecurityError: the origin {origin} has no domain"))?
        .to_ascii_lowercase();
    let localhost = host == "localhost" || host.ends_with(".localhost");
    match url.scheme() {
        "https" => Ok(host),
        "http" if localhost => Ok(host),
        _ => Err(format!("SecurityError: {origin} is not a secure context")),
    }
}

/// The RP ID must be the origin's host or a registrable suffix of it. Without the
/// public-suffix list, a single label other than `localhost` counts as a public
/// suffix.
fn check_rp_id(rp_id: &str, host: &str) -> Result<(), String> {
    let suffix = host == rp_id || host.ends_with(&format!(".{rp_id}"));
    let registrable = rp_id == "localhost" || (rp_id.contains('.') && !rp_id.starts_with('.'));
    if suffix && registrable {
        Ok(())
    } else {
        Err(format!(
            "SecurityError: the RP ID {rp_id:?} is not a registrable suffix of {host:?}"
        ))
    }
}

/// base64url, with or without padding (as the server's JSON may carry it).
fn b64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text)
}

fn b64_field(options: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = options
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("TypeError: {name} is missing"))?;
    b64_decode(text).map_err(|e| format!("TypeError: {name} is not base64url: {e}"))
}

/// The ids of `excludeCredentials` / `allowCredentials` (public-key ones only).
fn descriptor_ids(options: &Value, name: &str) -> Result<Vec<Vec<u8>>, String> {
    let Some(list) = options.get(name).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or_else(|| format!("TypeError: {name} is not a list"))?;
    list.iter()
        .filter(|d| d.get("type").and_then(Value::as_str) == Some("public-key"))
        .map(|d| b64_field(d, "id"))
        .collect()
}

/// clientDataJSON in the member order browsers serialise it.
fn client_data_json(kind: &str, challenge: &[u8], origin: &str) -> String {
    format!(
        r#"{{"type":{},"challenge":{},"origin":{},"crossOrigin":false}}"#,
        Value::from(kind),
        Value::from(URL_SAFE_NO_PAD.encode(challenge)),
        Value::from(origin),
    )
}

/// rpIdHash (32) || flags (1) || signCount (4, big-endian).
fn auth_data_header(rp_id: &str, flags: u8, counter: u32) -> Vec<u8> {
    let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
    data.push(flags);
    data.extend_from_slice(&counter.to_be_bytes());
    data
}

fn cbor(value: Cbor) -> Result<Vec<u8>, String> {
    serde_cbor_2::to_vec(&value).map_err(|e| format!("UnknownError: CBOR: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;
    use webauthn_rs::prelude::{
        Passkey, PasskeyAuthentication, PublicKeyCredential, RegisterPublicKeyCredential, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
    };

    type TestResult = Result<(), Box<dyn Error>>;

    const ORIGIN: &str = "http://localhost:8080";

    fn webauthn() -> Result<Webauthn, Box<dyn Error>> {
        Ok(WebauthnBuilder::new("localhost", &Url::parse(ORIGIN)?)?
            .rp_name("consentry")
            .build()?)
    }

    /// The whole registration ceremony, as the server sees it over HTTP.
    fn register(wa: &Webauthn, authenticator: &mut SoftAuthenticator, user: Uuid) -> Result<Passkey, Box<dyn Error>> {
        let (options, state) = wa.start_passkey_registration(user, "jo", "Jo", None)?;
        let body = authenticator.register(&serde_json::to_value(&options)?, ORIGIN)?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(body)?;
        Ok(wa.finish_passkey_registration(&credential, &state)?)
    }

    /// One assertion for `passkey`, as the server would receive it.
    fn sign_in(
        wa: &Webauthn,
        authenticator: &mut SoftAuthenticator,
        passkey: &Passkey,
    ) -> Result<(PublicKeyCredential, PasskeyAuthentication), Box<dyn Error>> {
        let (options, state) = wa.start_passkey_authentication(std::slice::from_ref(passkey))?;
        let body = authenticator.assert(&serde_json::to_value(&options)?, ORIGIN)?;
        Ok((serde_json::from_value(body)?, state))
    }

    fn b64(value: &Value) -> Result<Vec<u8>, Box<dyn Error>> {
        let text = value.as_str().ok_or("not a string")?;
        assert!(!text.contains('='), "padded base64: {text}");
        Ok(URL_SAFE_NO_PAD.decode(text)?)
    }

    #[test]
    fn registration_is_a_none_attested_es256_credential_webauthn_rs_accepts() -> TestResult {
        let wa = webauthn()?;
        let mut authenticator = SoftAuthenticator::new(1);
        let user = Uuid::now_v7();
        let (options, state) = wa.start_passkey_registration(user, "jo", "Jo", None)?;
        let body = authenticator.register(&serde_json::to_value(&options)?, ORIGIN)?;

        // The browser's shape.
        assert_eq!(body["type"], "public-key");
        assert_eq!(body["id"], body["rawId"]);
        assert_eq!(body["id"].as_str(), Some(authenticator.credential_id().as_str()));
        assert_eq!(body["extensions"], json!({}));
        let client_data: Value = serde_json::from_slice(&b64(&body["response"]["clientDataJSON"])?)?;
        assert_eq!(client_data["type"], "webauthn.create");
        assert_eq!(client_data["origin"], ORIGIN);
        assert_eq!(client_data["crossOrigin"], false);
        assert_eq!(
            b64(&client_data["challenge"])?,
            b64(&serde_json::to_value(&options)?["publicKey"]["challenge"])?
        );

        // The attestation object and the authenticator data, byte by byte.
        let attestation: Cbor = serde_cbor_2::from_slice(&b64(&body["response"]["attestationObject"])?)?;
        let Cbor::Map(attestation) = attestation else {
            return Err("the attestation object is not a map".into());
        };
        assert_eq!(attestation.get(&Cbor::Text("fmt".into())), Some(&Cbor::Text("none".into())));
        assert_eq!(attestation.get(&Cbor::Text("attStmt".into())), Some(&Cbor::Map(BTreeMap::new())));
        let Some(Cbor::Bytes(auth_data)) = attestation.get(&Cbor::Text("authData".into())) else {
            return Err("no authData".into());
        };
        assert_eq!(&auth_data[..32], Sha256::digest(b"localhost").as_slice());
        assert_eq!(auth_data[32], FLAG_UP | FLAG_UV | FLAG_AT);
        assert_eq!(&auth_data[33..37], &[0, 0, 0, 0]);
        assert_eq!(&auth_data[37..53], &[0u8; 16]);
        assert_eq!(&auth_data[53..55], &[0, 32]);
        let credential_id = &auth_data[55..87];
        let Cbor::Map(cose) = serde_cbor_2::from_slice::<Cbor>(&auth_data[87..])? else {
            return Err("the COSE key is not a map".into());
        };
        assert_eq!(cose.get(&Cbor::Integer(1)), Some(&Cbor::Integer(2)));
        assert_eq!(cose.get(&Cbor::Integer(3)), Some(&Cbor::Integer(-7)));
        assert_eq!(cose.get(&Cbor::Integer(-1)), Some(&Cbor::Integer(1)));
        assert_eq!(cose.len(), 5);

        // What the server decodes and accepts.
        let credential: RegisterPublicKeyCredential = serde_json::from_value(body)?;
        let passkey = wa.finish_passkey_registration(&credential, &state)?;
        assert_eq!(passkey.cred_id().as_slice(), credential_id);
        assert_eq!(URL_SAFE_NO_PAD.encode(passkey.cred_id()), authenticator.credential_id());
        Ok(())
    }

    #[test]
    fn assertions_advance_the_counter_and_a_cloned_counter_is_refused() -> TestResult {
        let wa = webauthn()?;
        let mut authenticator = SoftAuthenticator::new(1);
        let user = Uuid::now_v7();
        let mut passkey = register(&wa, &mut authenticator, user)?;

        for expected in 1..=2 {
            let (credential, state) = sign_in(&wa, &mut authenticator, &passkey)?;
            assert_eq!(credential.get_user_unique_id(), Some(user.as_bytes().as_slice()));
            let result = wa.finish_passkey_authentication(&credential, &state)?;
            assert!(result.user_verified());
            assert_eq!(result.counter(), expected);
            assert_eq!(authenticator.counter(), expected);
            assert_eq!(passkey.update_credential(&result), Some(true));
        }

        // A clone of the authenticator, its counter behind the stored 2.
        authenticator.set_counter(0);
        let (credential, state) = sign_in(&wa, &mut authenticator, &passkey)?;
        assert_eq!(authenticator.counter(), 1);
        let refused = wa.finish_passkey_authentication(&credential, &state);
        assert!(
            matches!(refused, Err(WebauthnError::CredentialPossibleCompromise)),
            "a counter behind the stored one: {refused:?}"
        );

        // Equal to the stored counter is refused as well.
        authenticator.set_counter(1);
        let (credential, state) = sign_in(&wa, &mut authenticator, &passkey)?;
        let refused = wa.finish_passkey_authentication(&credential, &state);
        assert!(matches!(refused, Err(WebauthnError::CredentialPossibleCompromise)), "{refused:?}");

        // Ahead again, it is accepted.
        let (credential, state) = sign_in(&wa, &mut authenticator, &passkey)?;
        assert_eq!(wa.finish_passkey_authentication(&credential, &state)?.counter(), 3);
        Ok(())
    }

    #[test]
    fn a_synced_passkey_always_reporting_zero_signs_in_again_and_again() -> TestResult {
        let wa = webauthn()?;
        let mut authenticator = SoftAuthenticator::new(0);
        let mut passkey = register(&wa, &mut authenticator, Uuid::now_v7())?;
        for _ in 0..3 {
            let (credential, state) = sign_in(&wa, &mut authenticator, &passkey)?;
            let result = wa.finish_passkey_authentication(&credential, &state)?;
            assert_eq!(result.counter(), 0);
            passkey.update_credential(&result);
        }
        assert_eq!(authenticator.counter(), 0);
        Ok(())
    }

    #[test]
    fn discoverable_sign_in_identifies_the_user_by_the_user_handle() -> TestResult {
        let wa = webauthn()?;
        let mut authenticator = SoftAuthenticator::new(1);
        let user = Uuid::now_v7();
        let passkey = register(&wa, &mut authenticator, user)?;

        let (options, state) = wa.start_discoverable_authentication()?;
        let options = serde_json::to_value(&options)?;
        assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
        let body = authenticator.assert(&options, ORIGIN)?;
        assert_eq!(b64(&body["response"]["userHandle"])?, user.as_bytes());
        let credential: PublicKeyCredential = serde_json::from_value(body)?;

        let (found, credential_id) = wa.identify_discoverable_authentication(&credential)?;
        assert_eq!(found, user);
        assert_eq!(credential_id, passkey.cred_id().as_slice());
        let result = wa.finish_discoverable_authentication_v2(&credential, state, &passkey)?;
        assert_eq!(result.counter(), 1);
        assert!(result.user_verified());
        Ok(())
    }

    #[test]
    fn another_origin_is_refused() -> TestResult {
        let wa = webauthn()?;
        let mut authenticator = SoftAuthenticator::new(1);

        // Another port of localhost: the authenticator answers (same RP ID), the
        // server refuses the origin in clientDataJSON.
        let (options, state) = wa.start_passkey_registration(Uuid::now_v7(), "jo", "Jo", None)?;
        let options = serde_json::to_value(&options)?;
        let body = authenticator.register(&options, "http://localhost:9090")?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(body)?;
        let refused = wa.finish_passkey_registration(&credential, &state);
        assert!(matches!(refused, Err(WebauthnError::InvalidRPOrigin)), "{refused:?}");

        // A site that is not localhost: the authenticator itself refuses the RP ID.
        let err = authenticator
            .register(&options, "https://consentry.example")
            .err()
            .ok_or("registered for a foreign RP ID")?;
        assert!(err.starts_with("SecurityError"), "{err}");
        // Not a secure context.
        assert!(authenticator.register(&options, "http://consentry.example").is_err());

        let passkey = register(&wa, &mut authenticator, Uuid::now_v7())?;
        let (options, state) = wa.start_passkey_authentication(std::slice::from_ref(&passkey))?;
        let options = serde_json::to_value(&options)?;
        let body = authenticator.assert(&options, "http://app.localhost:8080")?;
        let credential: PublicKeyCredential = serde_json::from_value(body)?;
        let refused = wa.finish_passkey_authentication(&credential, &state);
        assert!(matches!(refused, Err(WebauthnError::InvalidRPOrigin)), "{refused:?}");
        assert!(authenticator.assert(&options, "https://evil.example").is_err());
        Ok(())
    }

    #[test]
    fn a_tampered_signature_is_refused() -> TestResult {
        let wa = webauthn()?;
        let mut authenticator = SoftAuthenticator::new(1);
        let passkey = register(&wa, &mut authenticator, Uuid::now_v7())?;

        let (options, state) = wa.start_passkey_authentication(std::slice::from_ref(&passkey))?;
        let mut body = authenticator.assert(&serde_json::to_value(&options)?, ORIGIN)?;
        let mut signature = b64(&body["response"]["signature"])?;
        let last = signature.last_mut().ok_or("empty signature")?;
        *last ^= 0x01;
        body["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(&signature));
        let credential: PublicKeyCredential = serde_json::from_value(body)?;
        let refused = wa.finish_passkey_authentication(&credential, &state);
        assert!(matches!(refused, Err(WebauthnError::AuthenticationFailure)), "{refused:?}");

        // The untouched answer to a fresh challenge passes.
        let (credential, state) = sign_in(&wa, &mut authenticator, &passkey)?;
        wa.finish_passkey_authentication(&credential, &state)?;
        Ok(())
    }

    #[test]
    fn exclude_and_allow_lists_are_honoured() -> TestResult {
        let wa = webauthn()?;
        let mut authenticator = SoftAuthenticator::new(1);
        let user = Uuid::now_v7();
        let passkey = register(&wa, &mut authenticator, user)?;

        // Registering the same authenticator again for the user is refused.
        let (options, _) = wa.start_passkey_registration(user, "jo", "Jo", Some(vec![passkey.cred_id().clone()]))?;
        let err = authenticator
            .register(&serde_json::to_value(&options)?, ORIGIN)
            .err()
            .ok_or("registered despite excludeCredentials")?;
        assert!(err.starts_with("InvalidStateError"), "{err}");
        assert_eq!(authenticator.credential_id(), URL_SAFE_NO_PAD.encode(passkey.cred_id()));

        // Another user's passkey in allowCredentials: this authenticator has none.
        let mut other = SoftAuthenticator::new(1);
        let other_passkey = register(&wa, &mut other, Uuid::now_v7())?;
        let (options, _) = wa.start_passkey_authentication(std::slice::from_ref(&other_passkey))?;
        let err = authenticator
            .assert(&serde_json::to_value(&options)?, ORIGIN)
            .err()
            .ok_or("signed for a credential it does not hold")?;
        assert!(err.starts_with("NotAllowedError"), "{err}");
        assert_eq!(authenticator.counter(), 0, "a refusal does not count");

        // A new registration without the exclusion makes a new credential.
        let old_id = authenticator.credential_id();
        let replacement = register(&wa, &mut authenticator, user)?;
        assert_ne!(authenticator.credential_id(), old_id);
        let (credential, state) = sign_in(&wa, &mut authenticator, &replacement)?;
        wa.finish_passkey_authentication(&credential, &state)?;
        Ok(())
    }
}
