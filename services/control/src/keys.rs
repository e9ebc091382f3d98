//! Device and browser tokens: Ed25519 signing keys (private halves encrypted
//! at rest under a key-encryption key), JWT minting, the JWKS, and rotation.
//!
//! Everything cryptographic is aws-lc-rs, the crypto provider of the tree: the
//! JWT is assembled by hand (header and claims as base64url JSON, EdDSA
//! signature), which keeps a JWT library out of the production graph. The
//! tests verify the result with `jsonwebtoken` as an independent verifier.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::{self, ControlStore, SigningKeyRow};

/// The JWS algorithm of every key the control plane makes.
pub const ALGORITHM: &str = "EdDSA";
/// The `aud` of every device and browser token.
pub const AUDIENCE: &str = "mqtt";
/// Longest token lifetime; retired keys stay in the JWKS this long.
pub const MAX_TOKEN_TTL: time::Duration = time::Duration::days(30);
pub const MIN_TOKEN_TTL: time::Duration = time::Duration::seconds(60);
pub const DEFAULT_TOKEN_TTL: time::Duration = time::Duration::hours(1);

/// The 32-byte key-encryption key (KEK) under which private signing keys are
/// stored (AES-256-GCM).
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek(bytes)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system RNG works");
        Kek(bytes)
    }

    /// 32 bytes written as 64 hex digits or as base64 (standard or URL-safe,
    /// padded or not); surrounding whitespace is ignored.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?
        } else {
            [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .context("the secret key is neither hex nor base64")?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            anyhow::anyhow!("the secret key must be 32 bytes, not {}", b.len())
        })?;
        Ok(Kek(bytes))
    }

    /// Reads the key at `path`, or, if there is no file there, generates one
    /// and writes it (base64, mode 0600, never overwriting).
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => return Kek::parse(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let kek = Kek::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                writeln!(file, "{}", STANDARD.encode(kek.0))?;
                file.sync_all()?;
                tracing::info!(path = %path.display(), "generated the secret key (keep it: it decrypts the signing keys)");
                Ok(kek)
            }
            // Another process wrote it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Kek::load_or_create(path),
            Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }

    /// The KEK from `--secret-key-file`, else from `AERIE_SECRET_KEY` text,
    /// else from (or generated into) `default_file`; an error if none is given.
    pub fn resolve(
        file: Option<&Path>,
        text: Option<&str>,
        default_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read --secret-key-file {}", file.display()))?;
            return Kek::parse(&text).context("--secret-key-file");
        }
        if let Some(text) = text {
            return Kek::parse(text).context("AERIE_SECRET_KEY");
        }
        match default_file {
            Some(path) => Kek::load_or_create(path),
            None => bail!(
                "no secret key: give --secret-key-file or AERIE_SECRET_KEY (32 bytes, hex or base64)"
            ),
        }
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte key"))
    }

    /// `nonce || ciphertext || tag`, bound to `kid` as associated data.
    fn seal(&self, kid: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system RNG works");
        let mut buf = plaintext.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("signing key {kid}: sealed private key too short");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("signing key {kid}: bad nonce"))?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| {
                anyhow::anyhow!("signing key {kid} does not decrypt: wrong secret key (--secret-key-file / AERIE_SECRET_KEY)?")
            })?;
        Ok(plain.to_vec())
    }
}

/// A signing key ready to sign.
pub struct SigningKey {
    pub kid: String,
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Decrypts a stored key.
    pub fn unseal(row: &SigningKeyRow, kek: &Kek) -> anyhow::Result<Self> {
        if row.algorithm != ALGORITHM {
            bail!(
                "signing key {}: unknown algorithm {}",
                row.id,
                row.algorithm
            );
        }
        let pkcs8 = kek.open(&row.id, &row.private_key)?;
        let key_pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| anyhow::anyhow!("signing key {}: bad PKCS#8: {e}", row.id))?;
        Ok(SigningKey {
            kid: row.id.clone(),
            key_pair,
        })
    }

    pub fn public_key(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// A compact JWS: header `{alg: EdDSA, typ: JWT, kid}`, `claims` as payload.
    pub fn sign_jwt<C: Serialize>(&self, claims: &C) -> String {
        let header = serde_json::json!({"alg": ALGORITHM, "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let signature = self.key_pair.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// A new Ed25519 key, its private half sealed under `kek`, created `now`.
pub fn generate_signing_key(kek: &Kek, now: OffsetDateTime) -> anyhow::Result<SigningKeyRow> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| anyhow::anyhow!("generated PKCS#8 does not parse: {e}"))?;
    let kid = new_random_id(12);
    Ok(SigningKeyRow {
        private_key: kek.seal(&kid, pkcs8.as_ref()),
        public_key: key_pair.public_key().as_ref().to_vec(),
        id: kid,
        algorithm: ALGORITHM.to_owned(),
        created_at: now,
        retired_at: None,
    })
}

/// The active signing key; at first start (no active key) one is created.
pub async fn active_signing_key(store: &dyn ControlStore, kek: &Kek) -> anyhow::Result<SigningKey> {
    if let Some(row) = store.active_signing_key().await? {
        return SigningKey::unseal(&row, kek);
    }
    let row = generate_signing_key(kek, store::now())?;
    store.insert_signing_key(&row).await?;
    tracing::info!(kid = %row.id, "created the first token signing key");
    // Two processes starting at once may both create one: the newest wins,
    // and both are in the JWKS.
    let row = store
        .active_signing_key()
        .await?
        .context("no active signing key after creating one")?;
    SigningKey::unseal(&row, kek)
}

/// Makes a new active signing key and retires the old one. Tokens signed by
/// the old key still verify: it stays in the JWKS for [`MAX_TOKEN_TTL`].
/// Returns the new `kid`.
pub async fn rotate_signing_key(store: &dyn ControlStore, kek: &Kek) -> anyhow::Result<String> {
    // Refuse to rotate with a KEK that cannot open the current key: the new
    // key would be sealed under a different secret from the old ones.
    if let Some(current) = store.active_signing_key().await? {
        SigningKey::unseal(&current, kek)?;
    }
    let row = generate_signing_key(kek, store::now())?;
    store.rotate_signing_key(&row).await?;
    tracing::info!(kid = %row.id, "rotated the token signing key");
    Ok(row.id)
}

/// One entry of the JWKS (RFC 8037 OKP key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// A JSON Web Key Set (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// Every key that is active or retired less than [`MAX_TOKEN_TTL`] before `now`.
pub async fn jwks(store: &dyn ControlStore, now: OffsetDateTime) -> anyhow::Result<Jwks> {
    let rows = store.signing_keys_since(now - MAX_TOKEN_TTL).await?;
    Ok(Jwks {
        keys: rows
            .into_iter()
            .filter(|r| r.algorithm == ALGORITHM)
            .map(|r| Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(&r.public_key),
                kid: r.id,
                alg: ALGORITHM.into(),
                use_: "sig".into(),
            })
            .collect(),
    })
}

/// The `acl` claim: topic filters the token may publish to and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    #[serde(rename = "pub")]
    pub publish: Vec<String>,
    #[serde(rename = "sub")]
    pub subscribe: Vec<String>,
}

/// The claims of a device or browser token, exactly as DESIGN.md lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub tnt: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
}

/// `len` random bytes, base64url: ids for `kid` and `jti`.
pub fn new_random_id(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system RNG works");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_parses_hex_and_base64_and_refuses_other_lengths() {
        let bytes = [7u8; 32];
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Kek::parse(&hex).unwrap().0, bytes);
        assert_eq!(Kek::parse(&STANDARD.encode(bytes)).unwrap().0, bytes);
        assert_eq!(
            Kek::parse(&format!(" {}\n", URL_SAFE_NO_PAD.encode(bytes)))
                .unwrap()
                .0,
            bytes
        );
        assert!(Kek::parse(&STANDARD.encode([1u8; 16])).is_err());
        assert!(Kek::parse("not a key!").is_err());
    }

    #[test]
    fn sealed_private_key_opens_only_with_the_same_kek_and_kid() {
        let kek = Kek::generate();
        let sealed = kek.seal("k1", b"secret pkcs8");
        assert_eq!(kek.open("k1", &sealed).unwrap(), b"secret pkcs8");
        assert!(kek.open("k2", &sealed).is_err());
        assert!(Kek::generate().open("k1", &sealed).is_err());
    }
}
