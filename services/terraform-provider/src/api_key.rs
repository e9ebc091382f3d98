//! `aerie_api_key`: an API key of a tenant (`aerie_…`). The API cannot
//! change a key, so a new `tenant_id` or `name` replaces it. The secret
//! `key` is shown once, at creation, and kept (sensitive) in the state; an
//! imported key has none. A key revoked or deleted outside Terraform leaves
//! the state, and the next plan creates it again.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::api::Shared;
use crate::provider::attribute;
use crate::tenant_items::TenantItems;
use crate::values::{self, changed, must_exist, string, tenant_and_id};

/// The arguments an API problem can be about.
const ARGUMENTS: &[&str] = &["tenant_id", "name"];

/// The resource's state (and config, and plan).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    #[serde(default)]
    tenant_id: Value<String>,
    #[serde(default)]
    name: Value<String>,
    #[serde(default)]
    id: Value<String>,
    #[serde(default)]
    key: Value<String>,
    #[serde(default)]
    created_at: Value<String>,
}

/// An API key as the API answers (`key` only at creation).
#[derive(Deserialize)]
struct ApiKeyView {
    id: String,
    name: String,
    created_at: String,
    #[serde(default)]
    key: Option<String>,
}

impl ApiKey {
    fn from_view(tenant_id: &str, view: ApiKeyView) -> ApiKey {
        ApiKey {
            tenant_id: Value::Value(tenant_id.to_owned()),
            name: Value::Value(view.name),
            id: Value::Value(view.id),
            key: view.key.map_or(Value::Null, Value::Value),
            created_at: Value::Value(view.created_at),
        }
    }
}

pub struct ApiKeyResource {
    keys: TenantItems,
}

impl ApiKeyResource {
    pub fn new(client: Shared) -> Self {
        ApiKeyResource {
            keys: TenantItems::new(client, "api-keys", ARGUMENTS),
        }
    }

    /// The tenant's key `id` if it is not revoked (`Some(None)`: it is, or
    /// the tenant is gone); `None` with the problem in `diags`. The API has
    /// no GET of one key: its list has every key not revoked.
    async fn find(
        &self,
        diags: &mut Diagnostics,
        doing: &str,
        tenant_id: &str,
        id: &str,
    ) -> Option<Option<ApiKey>> {
        let found = self
            .keys
            .find(diags, doing, tenant_id, |k: &ApiKeyView| k.id == id)
            .await?
            .map(|view| ApiKey::from_view(tenant_id, view));
        Some(found)
    }
}

fn known(diags: &mut Diagnostics, state: Value<ApiKey>) -> Option<ApiKey> {
    values::known(diags, state, "aerie_api_key")
}

#[async_trait]
impl Resource for ApiKeyResource {
    type State<'a> = Value<ApiKey>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let computed = |description| {
            attribute(
                AttributeType::String,
                description,
                AttributeConstraint::Computed,
            )
        };
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "An API key of a tenant, for machines acting as that tenant. Any change \
                     replaces it; the key is known only to the apply that created it.",
                ),
                attributes: HashMap::from([
                    (
                        "tenant_id".to_owned(),
                        attribute(
                            AttributeType::String,
                            "The tenant's id; a change replaces the key.",
                            AttributeConstraint::Required,
                        ),
                    ),
                    (
                        "name".to_owned(),
                        attribute(
                            AttributeType::String,
                            "1 to 100 characters, no control characters; a change replaces the key.",
                            AttributeConstraint::Required,
                        ),
                    ),
                    ("id".to_owned(), computed("The key's id (a UUID).")),
                    (
                        "key".to_owned(),
                        Attribute {
                            sensitive: true,
                            ..computed(
                                "The secret (aerie_…), shown by the API once: kept in the state. \
                                 Null for an imported key.",
                            )
                        },
                    ),
                    (
                        "created_at".to_owned(),
                        computed("When the key was created (RFC 3339)."),
                    ),
                ]),
                ..Default::default()
            },
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Value<ApiKey>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<ApiKey>, ValueEmpty)> {
        let Some(prior) = state.as_ref_option() else {
            return Some((state, private_state));
        };
        let (Some(tenant_id), Some(id)) =
            (prior.tenant_id.as_ref_option(), prior.id.as_ref_option())
        else {
            return Some((state, private_state));
        };
        let found = self
            .find(diags, "cannot read the API key", tenant_id, id)
            .await?;
        // Revoked or deleted outside Terraform: a null state removes it, and
        // the next plan creates it again. The secret is not listed: keep it.
        let read = found.map(|live| ApiKey {
            key: prior.key.clone(),
            ..live
        });
        Some((read.map_or(Value::Null, Value::Value), private_state))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed_state: Value<ApiKey>,
        _config_state: Value<ApiKey>,
        _meta: ValueEmpty,
    ) -> Option<(Value<ApiKey>, ValueEmpty)> {
        let mut planned = known(diags, proposed_state)?;
        planned.id = Value::Unknown;
        planned.key = Value::Unknown;
        planned.created_at = Value::Unknown;
        Some((Value::Value(planned), ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<ApiKey>,
        proposed_state: Value<ApiKey>,
        _config_state: Value<ApiKey>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<ApiKey>, ValueEmpty, Vec<AttributePath>)> {
        let prior = known(diags, prior_state)?;
        let mut planned = known(diags, proposed_state)?;
        let triggers = changed(&[
            ("tenant_id", planned.tenant_id != prior.tenant_id),
            ("name", planned.name != prior.name),
        ]);
        if !triggers.is_empty() {
            planned.id = Value::Unknown;
            planned.key = Value::Unknown;
            planned.created_at = Value::Unknown;
        }
        Some((Value::Value(planned), prior_private_state, triggers))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<ApiKey>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(prior_private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned_state: Value<ApiKey>,
        _config_state: Value<ApiKey>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<ApiKey>, ValueEmpty)> {
        let planned = known(diags, planned_state)?;
        let tenant_id = string(diags, &planned.tenant_id, "tenant_id")?;
        let name = string(diags, &planned.name, "name")?;
        let body = json!({ "name": name });
        let view = self
            .keys
            .create(diags, "cannot create the API key", tenant_id, &body)
            .await?;
        let made = ApiKey::from_view(tenant_id, view);
        Some((Value::Value(made), private_state))
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<ApiKey>,
        planned_state: Value<ApiKey>,
        _config_state: Value<ApiKey>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<ApiKey>, ValueEmpty)> {
        // Every argument replaces the key: nothing changes in place.
        Some((planned_state, private_state))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<ApiKey>,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let prior = known(diags, prior_state)?;
        let tenant_id = string(diags, &prior.tenant_id, "tenant_id")?;
        let id = string(diags, &prior.id, "id")?;
        let doing = "cannot revoke the API key";
        self.keys.delete(diags, doing, tenant_id, id).await
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        import_id: String,
    ) -> Option<(Value<ApiKey>, ValueEmpty)> {
        let (tenant_id, id) = tenant_and_id(diags, &import_id, "API key")?;
        let doing = "cannot import the API key";
        let found = self.find(diags, doing, tenant_id, id).await?;
        let summary = format!("cannot import API key {import_id:?}: not found");
        let detail = "The id is <tenant_id>/<key id>, of a key that is not revoked.";
        Some((
            must_exist(diags, found, summary, detail)?,
            ValueEmpty::default(),
        ))
    }
}
