//! The `aerie_jwks` data source: the control plane's JSON Web Key Set
//! (`/.well-known/jwks.json`), the public keys that verify the tokens it
//! mints (`aerie_token`), for a service that checks them itself. A tenant's
//! own issuers publish their keys themselves; the API does not serve them.

use std::collections::HashMap;

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};

use crate::api::Shared;
use crate::diagnostics::{error, reported};
use crate::provider::attribute;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Jwks {
    #[serde(default)]
    json: Value<String>,
    #[serde(default)]
    key_ids: Value<Vec<Value<String>>>,
}

pub struct JwksDataSource {
    client: Shared,
}

impl JwksDataSource {
    pub fn new(client: Shared) -> Self {
        JwksDataSource { client }
    }
}

#[async_trait]
impl DataSource for JwksDataSource {
    type State<'a> = Value<Jwks>;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "The control plane's JWKS: the public keys that verify the tokens it mints.",
                ),
                attributes: HashMap::from([
                    (
                        "json".to_owned(),
                        attribute(
                            AttributeType::String,
                            "The key set as JSON text ({\"keys\": [...]}), for jsondecode or a verifier's file.",
                            AttributeConstraint::Computed,
                        ),
                    ),
                    (
                        "key_ids".to_owned(),
                        attribute(
                            AttributeType::List(AttributeType::String.into()),
                            "The kid of each key, in the set's order.",
                            AttributeConstraint::Computed,
                        ),
                    ),
                ]),
                ..Default::default()
            },
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        _config: Value<Jwks>,
        _meta: ValueEmpty,
    ) -> Option<Value<Jwks>> {
        let client = self.client.configured(diags)?;
        let path = [".well-known", "jwks.json"];
        let answer = client
            .call::<serde_json::Value>(Method::GET, &path, None::<&()>)
            .await;
        let set = reported(diags, "cannot read the JWKS", answer, &[])?;
        let Some(set) = set.filter(|s| s["keys"].is_array()) else {
            let why = "cannot read the JWKS: the control plane answered no key set";
            error(diags, why, "", AttributePath::root());
            return None;
        };
        let key_ids = set["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kid"].as_str())
            .map(|kid| Value::Value(kid.to_owned()))
            .collect();
        Some(Value::Value(Jwks {
            json: Value::Value(set.to_string()),
            key_ids: Value::Value(key_ids),
        }))
    }
}
