//! Test support: real databases, never mocks (shared with the end-to-end
//! tests through the `aerie-testdb` crate), and what every router test needs.

#![allow(dead_code)] // each test binary uses a part of it

pub mod api;

/// Runs each scenario `async fn(Api)` twice: on a fresh SQLite file and on a
/// fresh Postgres database (the test file imports `Api`).
#[allow(unused_macros)] // each test binary uses a part of support
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Api::new().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Api::on_postgres().await).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_databases;

pub use aerie_testdb::*;

use aerie_control::Endpoints;
use axum::http::{StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;

/// The endpoints a test control plane announces.
pub fn endpoints() -> Endpoints {
    Endpoints {
        mqtt: "mqtt://127.0.0.1:1883".into(),
        mqtts: Some("mqtts://127.0.0.1:8883".into()),
        ws: "ws://127.0.0.1:8083/mqtt".into(),
        wss: Some("wss://127.0.0.1:8084/mqtt".into()),
    }
}

/// Status, content type and body of an answer (JSON if it parses, else a
/// JSON string).
pub async fn read(res: axum::response::Response) -> (StatusCode, String, Value) {
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, content_type, body)
}
