//! A tenant's own identity provider for tests: an Ed25519 key that signs
//! tokens, and a JWKS served over loopback HTTP whose keys a test can change.

use parking_lot::Mutex;
use std::sync::Arc;

use aerie_testdb::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// An Ed25519 key of the tenant's own identity provider.
pub struct IdpKey {
    pub kid: String,
    encoding: EncodingKey,
    x: String,
}

impl IdpKey {
    pub fn new(kid: &str) -> IdpKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        IdpKey {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            x: URL_SAFE_NO_PAD.encode(pair.public_key_raw()),
        }
    }

    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA"})
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWKS served over loopback http, whose keys the test can change.
pub struct JwksServer {
    pub url: String,
    pub keys: Arc<Mutex<Value>>,
}

pub async fn jwks_server(keys: Value) -> JwksServer {
    let keys = Arc::new(Mutex::new(keys));
    let served = keys.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let served = served.clone();
            async move {
                let body = served.lock().to_string();
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer { url, keys }
}
