//! Every [`AuthFailure`] from a token built here, and its exact CONNACK code.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aerie_proto::ReasonCode;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use super::verifier::verify_with;
use super::*;
use crate::config::GatewayConfig;

const ISSUER: &str = "http://control.test";
const NOW: i64 = 1_800_000_000;

struct Key {
    kid: String,
    pair: Ed25519KeyPair,
}

impl Key {
    fn new(kid: &str) -> Key {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Key {
            kid: kid.to_owned(),
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }

    fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    fn jwks(&self) -> JwkSet {
        serde_json::from_value(json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": self.x(), "kid": self.kid,
            "alg": "EdDSA", "use": "sig"
        }]}))
        .unwrap()
    }

    /// An EdDSA JWT with `header` (alg and kid added unless present).
    fn sign_with_header(&self, mut header: Value, claims: &Value) -> String {
        header
            .as_object_mut()
            .unwrap()
            .entry("kid")
            .or_insert(json!(self.kid));
        header
            .as_object_mut()
            .unwrap()
            .entry("alg")
            .or_insert(json!("EdDSA"));
        let input = signing_input(&header, claims);
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(json!({"typ": "JWT"}), claims)
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": "mqtt", "sub": "sensor-1", "tnt": "t-green",
        "iat": NOW - 10, "exp": NOW + 3600, "jti": "jti-1",
        "client_id": "sensor-1", "acl": {"pub": ["a/#"], "sub": ["b/+"]}
    })
}

fn with(change: &[(&str, Value)]) -> Value {
    let mut c = claims();
    for (k, v) in change {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(*k);
        } else {
            c[*k] = v.clone();
        }
    }
    c
}

const GREEN_LIMITS: TenantLimits = TenantLimits {
    connections: 3,
    ..TenantLimits::UNLIMITED
};

fn directory(key: &Key) -> Directory {
    let mut d = Directory::default();
    d.add_jwks(&key.jwks());
    d.tenants.insert(
        "t-green".into(),
        TenantFacts {
            status: TenantStatus::Active,
            limits: GREEN_LIMITS,
        },
    );
    d.tenants.insert(
        "t-paused".into(),
        TenantFacts {
            status: TenantStatus::Suspended,
            limits: TenantLimits::UNLIMITED,
        },
    );
    d.revoke("t-green", "jti-revoked");
    d.revoke("t-blue", "jti-of-blue");
    d
}

fn check(d: &Directory, token: &str, client_id: &str) -> Result<Grant, AuthFailure> {
    verify_with(d, ISSUER, token.as_bytes(), client_id, NOW)
}

#[test]
fn a_valid_token_grants_its_tenant_subject_acl_and_limits() {
    let key = Key::new("k1");
    let grant = check(&directory(&key), &key.sign(&claims()), "sensor-1").unwrap();
    assert_eq!(
        grant,
        Grant {
            tenant_id: "t-green".into(),
            sub: "sensor-1".into(),
            jti: "jti-1".into(),
            exp: NOW + 3600,
            client_id: Some("sensor-1".into()),
            acl: Some(Acl {
                publish: vec!["a/#".into()],
                subscribe: vec!["b/+".into()],
            }),
            tenant_issuer: None,
            limits: GREEN_LIMITS,
        }
    );
    // An empty CONNECT client id is fine: the handshake assigns the bound one.
    assert!(check(&directory(&key), &key.sign(&claims()), "").is_ok());
    // Without a binding, any client id; `aud` may be a list that has "mqtt".
    let free = with(&[("client_id", Value::Null), ("aud", json!(["x", "mqtt"]))]);
    assert!(check(&directory(&key), &key.sign(&free), "anything").is_ok());
}

#[test]
fn malformed_tokens() {
    let key = Key::new("k1");
    let d = directory(&key);
    for token in ["", "not a jwt", "a.b.c", "....", "eyJhbGciOiJFZERTQSJ9"] {
        assert_eq!(
            check(&d, token, "c"),
            Err(AuthFailure::Malformed),
            "{token:?}"
        );
    }
    assert_eq!(
        verify_with(&d, ISSUER, &[0xff, 0xfe, b'.'], "c", NOW),
        Err(AuthFailure::Malformed)
    );
    // A required claim missing, or of the wrong type (exp as a string).
    for c in [
        with(&[("tnt", Value::Null)]),
        with(&[("exp", Value::Null)]),
        with(&[("jti", Value::Null)]),
        with(&[("exp", json!((NOW + 60).to_string()))]),
    ] {
        assert_eq!(
            check(&d, &key.sign(&c), "sensor-1"),
            Err(AuthFailure::Malformed),
            "{c}"
        );
    }
    // No kid.
    let input = signing_input(&json!({"alg": "EdDSA"}), &claims());
    let sig = URL_SAFE_NO_PAD.encode(key.pair.sign(input.as_bytes()).as_ref());
    assert_eq!(
        check(&d, &format!("{input}.{sig}"), "sensor-1"),
        Err(AuthFailure::Malformed)
    );
}

/// Found by the `connect_token` fuzz target: a validly signed token whose
/// header lists critical extensions was accepted, their meaning ignored.
#[test]
fn a_crit_header_makes_a_validly_signed_token_malformed() {
    let key = Key::new("k1");
    let idp = Key::new("idp-1");
    let d = with_tenant_issuers(&idp, &Key::new("blue-1"));
    let mut d_key = directory(&key);
    d_key.issuers = d.issuers.clone();
    let green_claims = with(&[("iss", json!(GREEN_IDP))]);
    for crit in [json!(["exp"]), json!([]), json!(null)] {
        let header = json!({ "crit": crit, "exp": NOW + 60 });
        assert_eq!(
            check(
                &d_key,
                &key.sign_with_header(header.clone(), &claims()),
                "sensor-1"
            ),
            Err(AuthFailure::Malformed),
            "control plane, crit {crit}"
        );
        assert_eq!(
            check(&d, &idp.sign_with_header(header, &green_claims), "sensor-1"),
            Err(AuthFailure::Malformed),
            "tenant issuer, crit {crit}"
        );
    }
    // The same tokens without `crit` pass.
    assert!(check(&d_key, &key.sign(&claims()), "sensor-1").is_ok());
    assert!(check(&d, &idp.sign(&green_claims), "sensor-1").is_ok());
}

#[test]
fn a_signature_by_another_key_under_a_known_kid_is_bad_signature() {
    let key = Key::new("k1");
    let impostor = Key::new("k1");
    assert_eq!(
        check(&directory(&key), &impostor.sign(&claims()), "sensor-1"),
        Err(AuthFailure::BadSignature)
    );
    // A changed payload under the original signature, too.
    let token = key.sign(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(with(&[("tnt", json!("t-paused"))]).to_string());
    parts[1] = &other;
    assert_eq!(
        check(&directory(&key), &parts.join("."), "sensor-1"),
        Err(AuthFailure::BadSignature)
    );
}

#[test]
fn an_unknown_kid() {
    let key = Key::new("k1");
    let other = Key::new("k2");
    assert_eq!(
        check(&directory(&key), &other.sign(&claims()), "sensor-1"),
        Err(AuthFailure::UnknownKid)
    );
}

#[test]
fn none_hmac_and_rsa_algorithms_are_refused_before_any_key_is_used() {
    let key = Key::new("k1");
    let d = directory(&key);
    let none = format!(
        "{}.",
        signing_input(&json!({"alg": "none", "kid": "k1"}), &claims())
    );
    assert_eq!(
        check(&d, &none, "sensor-1"),
        Err(AuthFailure::AlgNotAllowed)
    );
    // HS256 keyed with the public key (raw bytes and its base64url text).
    for secret in [
        key.pair.public_key().as_ref().to_vec(),
        key.x().into_bytes(),
    ] {
        let input = signing_input(&json!({"alg": "HS256", "kid": "k1"}), &claims());
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(
            check(&d, &token, "sensor-1"),
            Err(AuthFailure::AlgNotAllowed)
        );
    }
    for alg in ["RS256", "ES256", "eddsa", "HS512"] {
        let token = key.sign_with_header(json!({"alg": alg}), &claims());
        assert_eq!(
            check(&d, &token, "sensor-1"),
            Err(AuthFailure::AlgNotAllowed),
            "{alg}"
        );
    }
    // A non-OKP key in the JWKS is never loaded (so never an HMAC secret).
    let mut d = Directory::default();
    d.add_jwks(
        &serde_json::from_value(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h1"}]}))
            .unwrap(),
    );
    assert!(d.keys.is_empty());
}

#[test]
fn expiry_and_not_before_with_leeway() {
    let key = Key::new("k1");
    let d = directory(&key);
    let at = |c: Value| check(&d, &key.sign(&c), "sensor-1");
    assert_eq!(at(with(&[("exp", json!(NOW))])), Err(AuthFailure::Expired));
    assert_eq!(
        at(with(&[("exp", json!(NOW - 1))])),
        Err(AuthFailure::Expired)
    );
    assert!(at(with(&[("exp", json!(NOW + 1))])).is_ok());
    let late = NOW + LEEWAY_SECONDS;
    assert!(at(with(&[("nbf", json!(late))])).is_ok());
    assert_eq!(
        at(with(&[("nbf", json!(late + 1))])),
        Err(AuthFailure::NotYetValid)
    );
    assert!(at(with(&[("iat", json!(late))])).is_ok());
    assert_eq!(
        at(with(&[("iat", json!(late + 1))])),
        Err(AuthFailure::NotYetValid)
    );
}

#[test]
fn audience_and_issuer() {
    let key = Key::new("k1");
    let d = directory(&key);
    let at = |c: Value| check(&d, &key.sign(&c), "sensor-1");
    assert_eq!(
        at(with(&[("aud", json!("http"))])),
        Err(AuthFailure::WrongAudience)
    );
    assert_eq!(
        at(with(&[("aud", json!(["a", "b"]))])),
        Err(AuthFailure::WrongAudience)
    );
    assert_eq!(
        at(with(&[("iss", json!("http://elsewhere"))])),
        Err(AuthFailure::UnknownIssuer)
    );
}

#[test]
fn revoked_inactive_tenant_and_client_id_binding() {
    let key = Key::new("k1");
    let d = directory(&key);
    let at = |c: Value, id: &str| check(&d, &key.sign(&c), id);
    assert_eq!(
        at(with(&[("jti", json!("jti-revoked"))]), "sensor-1"),
        Err(AuthFailure::Revoked)
    );
    // A jti another tenant revoked is not revoked here.
    assert!(at(with(&[("jti", json!("jti-of-blue"))]), "sensor-1").is_ok());
    assert_eq!(
        at(with(&[("tnt", json!("t-paused"))]), "sensor-1"),
        Err(AuthFailure::TenantInactive)
    );
    assert_eq!(
        at(with(&[("tnt", json!("t-gone"))]), "sensor-1"),
        Err(AuthFailure::UnknownTenant)
    );
    assert_eq!(at(claims(), "sensor-2"), Err(AuthFailure::ClientIdMismatch));
}

#[test]
fn each_failure_has_its_label_and_connack_code() {
    use AuthFailure::*;
    let table = [
        (Malformed, "malformed", 0x86, 4),
        (BadSignature, "bad_signature", 0x86, 4),
        (UnknownKid, "unknown_kid", 0x86, 4),
        (AlgNotAllowed, "alg_not_allowed", 0x86, 4),
        (Expired, "expired", 0x86, 4),
        (NotYetValid, "not_yet_valid", 0x86, 4),
        (WrongAudience, "wrong_audience", 0x86, 4),
        (UnknownIssuer, "unknown_issuer", 0x86, 4),
        (Revoked, "revoked", 0x87, 5),
        (TenantInactive, "tenant_inactive", 0x87, 5),
        (UnknownTenant, "unknown_tenant", 0x87, 5),
        (ClientIdMismatch, "client_id_mismatch", 0x87, 5),
        (NoCredentials, "no_credentials", 0x87, 5),
    ];
    for (failure, label, v5, v311) in table {
        assert_eq!(failure.label(), label);
        assert_eq!(failure.reason_code(), ReasonCode(v5), "{label}");
        assert_eq!(failure.reason_code().to_v3_connack(), v311, "{label}");
    }
}

struct Counting {
    directory: Directory,
    loads: AtomicUsize,
}

#[async_trait::async_trait]
impl DirectorySource for Counting {
    async fn load(&self) -> anyhow::Result<Directory> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.directory.clone())
    }
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_directory_once_per_interval() {
    let old = Key::new("k-old");
    let new = Key::new("k-new");
    let source = Arc::new(Counting {
        directory: directory(&new),
        loads: AtomicUsize::new(0),
    });
    let cache = Arc::new(DirectoryCache::new(source.clone(), directory(&old)));
    let verifier = Verifier::new(ISSUER, cache);
    // Not in the snapshot: refreshed, then verified.
    let token = new.sign(&claims());
    assert!(
        verifier
            .authenticate(token.as_bytes(), "sensor-1", NOW)
            .await
            .is_ok()
    );
    assert_eq!(source.loads.load(Ordering::SeqCst), 1);
    // A kid nobody has: no second refresh within the interval.
    let stranger = Key::new("k-stranger").sign(&claims());
    assert_eq!(
        verifier
            .authenticate(stranger.as_bytes(), "sensor-1", NOW)
            .await,
        Err(AuthFailure::UnknownKid)
    );
    assert_eq!(source.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_tenant_newer_than_the_directory_waits_for_the_next_refresh() {
    let key = Key::new("k1");
    let mut newer = directory(&key);
    newer.tenants.insert("t-new".into(), TenantFacts::active());
    let source = Arc::new(Counting {
        directory: newer,
        loads: AtomicUsize::new(0),
    });
    let cache = Arc::new(DirectoryCache::new(source.clone(), directory(&key)));
    let _refresh = cache.spawn_refresh(std::time::Duration::from_millis(50));
    let verifier = Verifier::new(ISSUER, cache);
    let token = key.sign(&with(&[("tnt", json!("t-new"))]));
    assert_eq!(
        verifier.verify(token.as_bytes(), "sensor-1", NOW),
        Err(AuthFailure::UnknownTenant)
    );
    let grant = verifier
        .authenticate(token.as_bytes(), "sensor-1", NOW)
        .await;
    assert_eq!(grant.unwrap().tenant_id, "t-new");
    // A tenant that never appears is refused after one period and a half.
    let token = key.sign(&with(&[("tnt", json!("t-never"))]));
    assert_eq!(
        verifier
            .authenticate(token.as_bytes(), "sensor-1", NOW)
            .await,
        Err(AuthFailure::UnknownTenant)
    );
}

#[tokio::test]
async fn admission_without_a_token_depends_on_anonymous_access() {
    let closed = GatewayConfig::default();
    assert_eq!(
        admit(None, "sensor-1", &closed).await.unwrap_err(),
        AuthFailure::NoCredentials
    );
    assert_eq!(
        admit(Some(&b""[..]), "sensor-1", &closed)
            .await
            .unwrap_err(),
        AuthFailure::NoCredentials
    );
    let open = GatewayConfig {
        allow_anonymous: true,
        ..GatewayConfig::default()
    };
    assert!(matches!(
        admit(None, "sensor-1", &open).await,
        Ok(Admission::Anonymous)
    ));
    // A password but no verifier: anonymous, as before tokens.
    assert!(matches!(
        admit(Some(&b"x"[..]), "sensor-1", &open).await,
        Ok(Admission::Anonymous)
    ));
    // With a verifier a bad token is refused even when anonymous is on.
    let key = Key::new("k1");
    let cache = Arc::new(DirectoryCache::new(
        Arc::new(Counting {
            directory: directory(&key),
            loads: AtomicUsize::new(0),
        }),
        directory(&key),
    ));
    let verifying = GatewayConfig {
        verifier: Some(Arc::new(Verifier::new(ISSUER, cache))),
        ..open
    };
    assert_eq!(
        admit(Some(&b"junk"[..]), "sensor-1", &verifying)
            .await
            .unwrap_err(),
        AuthFailure::Malformed
    );
    assert!(matches!(
        admit(None, "sensor-1", &verifying).await,
        Ok(Admission::Anonymous)
    ));
}

const GREEN_IDP: &str = "https://idp.green.example";

/// `t-green` registered `GREEN_IDP` with `idp`'s key; `t-blue` registered the
/// same `iss` with a key of its own.
fn with_tenant_issuers(idp: &Key, blue: &Key) -> Directory {
    let control = Key::new("control");
    let mut d = directory(&control);
    d.tenants.insert("t-blue".into(), TenantFacts::active());
    d.issuers.insert(
        "t-green".into(),
        vec![TenantIssuer::from_jwks(GREEN_IDP, &idp.jwks())],
    );
    d.issuers.insert(
        "t-blue".into(),
        vec![TenantIssuer::from_jwks(GREEN_IDP, &blue.jwks())],
    );
    d
}

#[test]
fn a_tenant_issuer_speaks_for_its_own_tenant_only() {
    let idp = Key::new("idp-1");
    let blue = Key::new("blue-1");
    let d = with_tenant_issuers(&idp, &blue);
    let green_claims = with(&[("iss", json!(GREEN_IDP))]);
    let grant = check(&d, &idp.sign(&green_claims), "sensor-1").unwrap();
    assert_eq!(grant.tenant_id, "t-green");
    assert_eq!(grant.tenant_issuer.as_deref(), Some(GREEN_IDP));

    // The same issuer's token naming another tenant: that tenant's own
    // registration (another key) decides, so the signature fails.
    let as_blue = with(&[("iss", json!(GREEN_IDP)), ("tnt", json!("t-blue"))]);
    assert_eq!(
        check(&d, &idp.sign(&as_blue), "sensor-1"),
        Err(AuthFailure::UnknownKid)
    );
    let mut forged_kid = idp.sign_with_header(json!({"kid": "blue-1"}), &as_blue);
    assert_eq!(
        check(&d, &forged_kid, "sensor-1"),
        Err(AuthFailure::BadSignature)
    );
    // A tenant without that issuer: unknown issuer.
    let as_paused = with(&[("iss", json!(GREEN_IDP)), ("tnt", json!("t-paused"))]);
    assert_eq!(
        check(&d, &idp.sign(&as_paused), "sensor-1"),
        Err(AuthFailure::UnknownIssuer)
    );
    // The control plane's keys never verify a tenant issuer's token.
    forged_kid = idp.sign_with_header(json!({"kid": "control"}), &green_claims);
    assert_eq!(
        check(&d, &forged_kid, "sensor-1"),
        Err(AuthFailure::UnknownKid)
    );
}

#[test]
fn a_tenant_issuer_key_is_never_an_hmac_secret_and_none_is_refused() {
    let idp = Key::new("idp-1");
    let d = with_tenant_issuers(&idp, &Key::new("blue-1"));
    let green_claims = with(&[("iss", json!(GREEN_IDP))]);
    let header = json!({"alg": "HS256", "kid": "idp-1"});
    let input = signing_input(&header, &green_claims);
    let public = URL_SAFE_NO_PAD.decode(idp.x()).unwrap();
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &public),
        input.as_bytes(),
    );
    let hs256 = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(
        check(&d, &hs256, "sensor-1"),
        Err(AuthFailure::AlgNotAllowed)
    );
    let none = format!(
        "{}.",
        signing_input(&json!({"alg": "none", "kid": "idp-1"}), &green_claims)
    );
    assert_eq!(
        check(&d, &none, "sensor-1"),
        Err(AuthFailure::AlgNotAllowed)
    );
    // An RS256 header on an Ed25519 key: refused before the signature.
    let rs = idp.sign_with_header(json!({"alg": "RS256"}), &green_claims);
    assert_eq!(check(&d, &rs, "sensor-1"), Err(AuthFailure::AlgNotAllowed));
}

#[test]
fn issuer_keys_skip_symmetric_keys_and_follow_a_named_alg() {
    let set: JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "OKP", "crv": "Ed25519", "x": Key::new("x").x(), "kid": "ed"},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    ]}))
    .unwrap();
    let issuer = TenantIssuer::from_jwks(GREEN_IDP, &set);
    let kids: Vec<_> = issuer
        .keys
        .iter()
        .map(|k| (k.kid.clone().unwrap(), k.algorithms.clone()))
        .collect();
    assert_eq!(
        kids,
        vec![
            ("ed".to_owned(), vec![jsonwebtoken::Algorithm::EdDSA]),
            ("ec".to_owned(), vec![jsonwebtoken::Algorithm::ES256]),
        ]
    );
}

#[test]
fn a_pem_issuer_verifies_tokens_without_a_kid() {
    let idp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let pkcs8 = idp.serialize_der();
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
    let mut d = directory(&Key::new("control"));
    d.issuers.insert(
        "t-green".into(),
        vec![TenantIssuer::from_pem(GREEN_IDP, idp.public_key_pem().as_bytes()).unwrap()],
    );
    let input = signing_input(
        &json!({"alg": "EdDSA"}),
        &with(&[("iss", json!(GREEN_IDP))]),
    );
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref())
    );
    assert_eq!(check(&d, &token, "sensor-1").unwrap().tenant_id, "t-green");
}

#[test]
fn a_new_key_for_the_same_issuer_is_a_new_directory() {
    let pem = |_: u8| {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .public_key_pem()
    };
    let with = |pem: &str| {
        let mut d = directory(&Key::new("control"));
        d.issuers.insert(
            "t-green".into(),
            vec![TenantIssuer::from_pem(GREEN_IDP, pem.as_bytes()).unwrap()],
        );
        d
    };
    let (first, second) = (pem(1), pem(2));
    assert!(with(&first).same_as(&with(&first)));
    // Deleted and registered again under the same `iss`, with another key.
    assert!(!with(&first).same_as(&with(&second)));
    // And a JWKS whose key changed under the same kid.
    let (a, b) = (Key::new("idp-1"), Key::new("idp-1"));
    let jwks = |k: &Key| {
        let mut d = directory(&Key::new("control"));
        d.issuers.insert(
            "t-green".into(),
            vec![TenantIssuer::from_jwks(GREEN_IDP, &k.jwks())],
        );
        d
    };
    assert!(!jwks(&a).same_as(&jwks(&b)));
}
