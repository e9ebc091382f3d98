//! A CONNECT whose password (or JWT-method authentication data) is a token,
//! decoded by the real decoder and authenticated by the gateway's own path
//! (`connection::authenticate_for_fuzzing`: the handshake's token choice,
//! `auth::admit`, `Verifier`) against a fixed directory whose keys this
//! process generated. It must never panic, and a token is accepted only if
//! this harness signed it, with the key the directory has for the tenant and
//! issuer the grant names: no forged, tampered, `none`, HMAC-with-a-public-key
//! or cross-tenant token ever passes.
//!
//! Input: either raw bytes off the socket, or a token shaped from choices
//! (header `alg`/`kid`/`crit`, claims `iss`/`tnt`/`aud`/times/`jti`/
//! `client_id`, the signer, a byte tampered afterwards, where the token goes),
//! so the fuzzer reaches past the JSON into every check.

#![no_main]

use std::sync::{Arc, LazyLock};

use aerie_gateway::GatewayConfig;
use aerie_gateway::auth::{
    Directory, DirectoryCache, DirectorySource, TenantFacts, TenantIssuer, TenantStatus, Verifier,
};
use aerie_gateway::connection::authenticate_for_fuzzing;
use aerie_proto::{Connect, ConnectProperties, Packet, ProtocolVersion, decode, encode};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

const CONTROL_ISS: &str = "http://control.fuzz";
const CONTROL_KID: &str = "cp-1";
const GREEN_ISS: &str = "https://green.fuzz";
const GREEN_KID: &str = "g-1";
/// Its single key has no `kid`.
const BLUE_ISS: &str = "https://blue.fuzz";
const REVOKED_JTI: &str = "jti-revoked";

/// The keys, directory and verifier, made once per process.
struct Fixture {
    runtime: Runtime,
    config: GatewayConfig,
    control: Ed25519KeyPair,
    green: EcdsaKeyPair,
    blue: Ed25519KeyPair,
    /// In no directory.
    stranger: Ed25519KeyPair,
}

struct FixedSource(Directory);

#[async_trait::async_trait]
impl DirectorySource for FixedSource {
    async fn load(&self) -> anyhow::Result<Directory> {
        Ok(self.0.clone())
    }
}

fn ed25519() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("a key");
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key")
}

fn jwks(keys: Value) -> jsonwebtoken::jwk::JwkSet {
    serde_json::from_value(json!({ "keys": keys })).expect("a JWKS")
}

fn okp(pair: &Ed25519KeyPair) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(pair.public_key().as_ref())})
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let control = ed25519();
    let blue = ed25519();
    let stranger = ed25519();
    let green = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a key");
    // Uncompressed point: 0x04, x, y.
    let point = green.public_key().as_ref().to_vec();
    let (x, y) = point[1..].split_at(32);

    let mut directory = Directory::default();
    let mut control_jwk = okp(&control);
    control_jwk["kid"] = json!(CONTROL_KID);
    directory.add_jwks(&jwks(json!([control_jwk])));
    for tenant in ["t-green", "t-blue"] {
        directory
            .tenants
            .insert(tenant.into(), TenantFacts::active());
    }
    directory.tenants.insert(
        "t-paused".into(),
        TenantFacts {
            status: TenantStatus::Suspended,
            ..TenantFacts::active()
        },
    );
    // Revoked in every tenant (revocations are per tenant).
    for tenant in ["t-green", "t-blue", "t-paused"] {
        directory.revoke(tenant, REVOKED_JTI);
    }
    let green_jwk = json!({"kty": "EC", "crv": "P-256", "kid": GREEN_KID,
        "x": B64.encode(x), "y": B64.encode(y)});
    directory.issuers.insert(
        "t-green".into(),
        vec![TenantIssuer::from_jwks(
            GREEN_ISS,
            &jwks(json!([green_jwk])),
        )],
    );
    directory.issuers.insert(
        "t-blue".into(),
        vec![TenantIssuer::from_jwks(
            BLUE_ISS,
            &jwks(json!([okp(&blue)])),
        )],
    );

    let cache = Arc::new(DirectoryCache::new(
        Arc::new(FixedSource(directory.clone())),
        directory,
    ));
    let config = GatewayConfig {
        verifier: Some(Arc::new(Verifier::new(CONTROL_ISS, cache))),
        allow_anonymous: false,
        ..GatewayConfig::default()
    };
    Fixture {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        config,
        control,
        green,
        blue,
        stranger,
    }
});

#[derive(Arbitrary, Debug)]
enum Input {
    /// Bytes off the socket: a CONNECT among them is authenticated.
    Wire(Vec<u8>),
    Shaped(Box<Shaped>),
}

#[derive(Arbitrary, Debug)]
struct Shaped {
    /// Whose token it means to be: `alg`, `kid`, `iss`, `tnt` and the signer
    /// default to what that key's issuer uses, so valid tokens of every
    /// issuer are a few choices away; each can be overridden.
    profile: Key,
    alg: Option<Alg>,
    kid: Option<Kid>,
    typ: bool,
    crit: Option<Vec<String>>,
    iss: Option<Party>,
    tnt: Option<TenantName>,
    aud: Aud,
    sub: Option<String>,
    exp: Time,
    iat: Option<Time>,
    nbf: Option<Time>,
    jti: Jti,
    claim_client_id: Option<String>,
    connect_client_id: ConnectClientId,
    signer: Option<Signer>,
    /// A byte of the signed token replaced afterwards.
    tamper: Option<(u16, u8)>,
    carrier: Carrier,
    v5: bool,
}

#[derive(Arbitrary, Debug)]
enum Alg {
    EdDSA,
    ES256,
    HS256,
    RS256,
    None,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Kid {
    Control,
    Green,
    Absent,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Key {
    Control,
    Green,
    Blue,
}

#[derive(Arbitrary, Debug)]
enum Party {
    Key(Key),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum TenantName {
    Green,
    Blue,
    Paused,
    Other(String),
    Number(i64),
}

#[derive(Arbitrary, Debug)]
enum Aud {
    Mqtt,
    Many(Vec<String>),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Time {
    /// Seconds from now.
    After(i16),
    Raw(i64),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Jti {
    Fresh(u32),
    Revoked,
    Absent,
}

#[derive(Arbitrary, Debug)]
enum ConnectClientId {
    SameAsClaim,
    Empty,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Signer {
    /// Signed by a key of the directory (for its own `alg`, whatever the header says).
    Harness(Key),
    /// A valid Ed25519 signature from a key no directory has.
    Stranger,
    /// Algorithm confusion: HMAC-SHA256 with a public key as the secret.
    HmacWithPublicKey(Key, bool),
    Empty,
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Carrier {
    Password,
    /// v5 method `JWT`, the token as authentication data.
    JwtMethodData,
    /// v5 method `JWT`, the token as password.
    JwtMethodPassword,
    OtherMethod(String),
}

impl Key {
    fn issuer(self) -> &'static str {
        match self {
            Key::Control => CONTROL_ISS,
            Key::Green => GREEN_ISS,
            Key::Blue => BLUE_ISS,
        }
    }

    fn public(self, f: &Fixture) -> Vec<u8> {
        match self {
            Key::Control => f.control.public_key().as_ref().to_vec(),
            Key::Green => f.green.public_key().as_ref().to_vec(),
            Key::Blue => f.blue.public_key().as_ref().to_vec(),
        }
    }

    fn sign(self, f: &Fixture, input: &[u8]) -> Vec<u8> {
        match self {
            Key::Control => f.control.sign(input).as_ref().to_vec(),
            Key::Blue => f.blue.sign(input).as_ref().to_vec(),
            Key::Green => f
                .green
                .sign(&SystemRandom::new(), input)
                .expect("signs")
                .as_ref()
                .to_vec(),
        }
    }
}

fn time(t: &Time, now: i64) -> Value {
    match t {
        Time::After(s) => json!(now + i64::from(*s)),
        Time::Raw(v) => json!(v),
        Time::Text(s) => json!(s),
    }
}

/// The token, and the key that legitimately signed it (if one did).
fn token(s: &Shaped, f: &Fixture, now: i64) -> (Vec<u8>, Option<Key>) {
    let mut header = json!({});
    let p = s.profile;
    let alg = s.alg.as_ref().unwrap_or(match p {
        Key::Green => &Alg::ES256,
        Key::Control | Key::Blue => &Alg::EdDSA,
    });
    let kid = s.kid.as_ref().unwrap_or(match p {
        Key::Control => &Kid::Control,
        Key::Green => &Kid::Green,
        Key::Blue => &Kid::Absent,
    });
    let own_iss = Party::Key(p);
    let iss = s.iss.as_ref().unwrap_or(&own_iss);
    let tnt = s.tnt.as_ref().unwrap_or(match p {
        Key::Blue => &TenantName::Blue,
        Key::Control | Key::Green => &TenantName::Green,
    });
    let own_signer = Signer::Harness(p);
    let signer = s.signer.as_ref().unwrap_or(&own_signer);
    header["alg"] = match alg {
        Alg::EdDSA => json!("EdDSA"),
        Alg::ES256 => json!("ES256"),
        Alg::HS256 => json!("HS256"),
        Alg::RS256 => json!("RS256"),
        Alg::None => json!("none"),
        Alg::Other(a) => json!(a),
    };
    match kid {
        Kid::Control => header["kid"] = json!(CONTROL_KID),
        Kid::Green => header["kid"] = json!(GREEN_KID),
        Kid::Absent => {}
        Kid::Other(k) => header["kid"] = json!(k),
    }
    if s.typ {
        header["typ"] = json!("JWT");
    }
    if let Some(crit) = &s.crit {
        header["crit"] = json!(crit);
    }
    let mut claims = json!({
        "iss": match iss { Party::Key(k) => k.issuer().to_owned(), Party::Other(o) => o.clone() },
        "tnt": match tnt {
            TenantName::Green => json!("t-green"),
            TenantName::Blue => json!("t-blue"),
            TenantName::Paused => json!("t-paused"),
            TenantName::Other(t) => json!(t),
            TenantName::Number(n) => json!(n),
        },
        "aud": match &s.aud { Aud::Mqtt => json!("mqtt"), Aud::Many(v) => json!(v), Aud::Other(a) => json!(a) },
        "exp": time(&s.exp, now),
    });
    if let Some(sub) = &s.sub {
        claims["sub"] = json!(sub);
    }
    if let Some(t) = &s.iat {
        claims["iat"] = time(t, now);
    }
    if let Some(t) = &s.nbf {
        claims["nbf"] = time(t, now);
    }
    match &s.jti {
        Jti::Fresh(n) => claims["jti"] = json!(format!("jti-{n}")),
        Jti::Revoked => claims["jti"] = json!(REVOKED_JTI),
        Jti::Absent => {}
    }
    if let Some(id) = &s.claim_client_id {
        claims["client_id"] = json!(id);
    }
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let (signature, signed_by) = match signer {
        Signer::Harness(k) => (k.sign(f, input.as_bytes()), Some(*k)),
        Signer::Stranger => (f.stranger.sign(input.as_bytes()).as_ref().to_vec(), None),
        Signer::HmacWithPublicKey(k, as_base64) => {
            let public = k.public(f);
            let secret = if *as_base64 {
                B64.encode(&public).into_bytes()
            } else {
                public
            };
            let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
            (hmac::sign(&key, input.as_bytes()).as_ref().to_vec(), None)
        }
        Signer::Empty => (Vec::new(), None),
        Signer::Bytes(b) => (b.clone(), None),
    };
    let mut token = format!("{input}.{}", B64.encode(signature)).into_bytes();
    let mut signed_by = signed_by;
    if let Some((at, byte)) = s.tamper
        && !token.is_empty()
    {
        let at = at as usize % token.len();
        if token[at] != byte {
            token[at] = byte;
            signed_by = None;
        }
    }
    (token, signed_by)
}

/// The CONNECT carrying `token` as `s.carrier` says, through the encoder
/// and the real decoder (as the connection reads it); `None` if the decoder
/// refuses it.
fn connect(s: &Shaped, token: Vec<u8>) -> Option<Connect> {
    let protocol = if s.v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    };
    let client_id = match &s.connect_client_id {
        ConnectClientId::SameAsClaim => s.claim_client_id.clone().unwrap_or_default(),
        ConnectClientId::Empty => String::new(),
        ConnectClientId::Other(id) => id.clone(),
    };
    let token = Bytes::from(token);
    let mut properties = ConnectProperties::default();
    let mut password = Some(token.clone());
    if s.v5 {
        match &s.carrier {
            Carrier::Password => {}
            Carrier::JwtMethodData => {
                properties.authentication_method = Some("JWT".into());
                properties.authentication_data = Some(token);
                password = None;
            }
            Carrier::JwtMethodPassword => properties.authentication_method = Some("JWT".into()),
            Carrier::OtherMethod(m) => properties.authentication_method = Some(m.as_str().into()),
        }
    }
    let packet = Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive: 30,
        client_id: client_id.into(),
        will: None,
        // 3.1.1 allows a password only with a user name.
        username: Some("fuzz".into()),
        password,
        properties,
    }));
    let mut wire = BytesMut::new();
    encode(&packet, protocol, &mut wire).ok()?;
    match decode(
        &mut wire,
        ProtocolVersion::V5,
        FIXTURE.config.max_packet_size,
    ) {
        Ok(Some(Packet::Connect(c))) => Some(*c),
        _ => None,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fuzz_target!(|input: Input| {
    let f = &*FIXTURE;
    let now = now();
    let (connect, signed) = match &input {
        Input::Wire(bytes) => {
            let mut wire = BytesMut::from(&bytes[..]);
            match decode(&mut wire, ProtocolVersion::V5, f.config.max_packet_size) {
                Ok(Some(Packet::Connect(c))) => (*c, None),
                _ => return,
            }
        }
        Input::Shaped(s) => {
            let (token, signed_by) = token(s, f, now);
            let Some(c) = connect(s, token.clone()) else {
                return;
            };
            (c, signed_by.map(|k| (k, token, s.crit.is_some())))
        }
    };
    let result = f
        .runtime
        .block_on(authenticate_for_fuzzing(&connect, &f.config));
    let grant = match result {
        Err(_) => return,
        // Anonymous access is off.
        Ok(None) => panic!("admitted without a token: {connect:?}"),
        Ok(Some(grant)) => grant,
    };
    // Accepted: only a token this harness signed, exactly as signed, with
    // the key the directory has for the grant's tenant and issuer.
    let Some((key, token, crit)) = signed else {
        panic!("accepted a token the harness did not sign: {connect:?} → {grant:?}");
    };
    // RFC 7515 §4.1.11: no `crit` extension is understood here, so a token
    // that lists any (or an empty list) is invalid.
    assert!(!crit, "accepted a token with a `crit` header: {connect:?}");
    let carried = connect
        .properties
        .authentication_data
        .as_ref()
        .or(connect.password.as_ref())
        .expect("a token");
    assert_eq!(
        carried[..],
        token[..],
        "accepted a token other than the one signed"
    );
    match key {
        Key::Control => assert_eq!(grant.tenant_issuer, None),
        Key::Green => {
            assert_eq!(grant.tenant_id, "t-green");
            assert_eq!(grant.tenant_issuer.as_deref(), Some(GREEN_ISS));
        }
        Key::Blue => {
            assert_eq!(grant.tenant_id, "t-blue");
            assert_eq!(grant.tenant_issuer.as_deref(), Some(BLUE_ISS));
        }
    }
    assert!(
        ["t-green", "t-blue"].contains(&grant.tenant_id.as_str()),
        "accepted for a tenant that is not active: {grant:?}"
    );
    assert_ne!(grant.jti, REVOKED_JTI);
    assert!(grant.exp > now, "accepted an expired token: {grant:?}");
    if let Some(bound) = &grant.client_id
        && !connect.client_id.is_empty()
    {
        assert_eq!(bound, &*connect.client_id);
    }
});
