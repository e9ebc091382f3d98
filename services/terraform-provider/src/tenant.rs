//! `aerie_tenant`: a tenant of the account the token belongs to. `name` is
//! the only argument and changes in place (`PATCH`): the id, and so whatever
//! refers to it, stays. `id`, `plan` and `limits` are computed. A tenant
//! deleted outside Terraform leaves the state (and is planned again); one
//! renamed outside is planned back to its configured name.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::api::Shared;
use crate::diagnostics::reported;
use crate::provider::attribute;
use crate::values::{self, must_exist, string};

/// The arguments an API problem can be about.
const ARGUMENTS: &[&str] = &["name"];

/// The resource's state (and config, and plan).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    #[serde(default)]
    pub id: Value<String>,
    #[serde(default)]
    pub name: Value<String>,
    #[serde(default)]
    plan: Value<String>,
    #[serde(default)]
    limits: Value<BTreeMap<String, Value<i64>>>,
    #[serde(default)]
    endpoints: Value<BTreeMap<String, Value<String>>>,
}

/// A tenant as `GET /v1/tenants/{tid}` answers (the fields kept here).
#[derive(Debug, Deserialize)]
pub struct TenantView {
    id: String,
    pub name: String,
    plan: String,
    limits: BTreeMap<String, i64>,
    /// Only the listeners the server runs (no `mqtts`/`wss` without TLS).
    #[serde(default)]
    endpoints: BTreeMap<String, String>,
}

impl From<TenantView> for Tenant {
    fn from(t: TenantView) -> Self {
        Tenant {
            id: Value::Value(t.id),
            name: Value::Value(t.name),
            plan: Value::Value(t.plan),
            limits: known_map(t.limits),
            endpoints: known_map(t.endpoints),
        }
    }
}

pub struct TenantResource {
    client: Shared,
}

impl TenantResource {
    pub fn new(client: Shared) -> Self {
        TenantResource { client }
    }

    /// `method` on `/v1/tenants[/{id}]`: the tenant answered, `Some(None)`
    /// for a 404 (or an empty answer), or `None` with the problem in `diags`.
    async fn call(
        &self,
        diags: &mut Diagnostics,
        doing: &str,
        method: Method,
        id: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Option<Option<Tenant>> {
        let client = self.client.configured(diags)?;
        let mut path = vec!["v1", "tenants"];
        path.extend(id);
        let answer = client
            .call::<TenantView>(method, &path, body.as_ref())
            .await;
        reported(diags, doing, answer, ARGUMENTS).map(|found| found.map(Tenant::from))
    }
}

/// A map the API answered, every value known.
fn known_map<T>(map: BTreeMap<String, T>) -> Value<BTreeMap<String, Value<T>>> {
    Value::Value(map.into_iter().map(|(k, v)| (k, Value::Value(v))).collect())
}

/// `endpoints`, computed: where the tenant's clients connect, by scheme.
pub fn endpoints_attribute() -> Attribute {
    attribute(
        AttributeType::Map(AttributeType::String.into()),
        "Where the tenant's clients connect, by scheme (`mqtt`, `ws`, and `mqtts`, `wss` when the server has TLS), as the API's `endpoints`.",
        AttributeConstraint::Computed,
    )
}

fn known(diags: &mut Diagnostics, state: Value<Tenant>) -> Option<Tenant> {
    values::known(diags, state, "aerie_tenant")
}

#[async_trait]
impl Resource for TenantResource {
    type State<'a> = Value<Tenant>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A tenant: an isolated MQTT namespace with its own plan, limits, keys and tokens.",
                ),
                attributes: HashMap::from([
                    (
                        "name".to_owned(),
                        attribute(
                            AttributeType::String,
                            "1 to 100 characters, no control characters; changes in place.",
                            AttributeConstraint::Required,
                        ),
                    ),
                    (
                        "id".to_owned(),
                        attribute(
                            AttributeType::String,
                            "The tenant id: 10 characters of [a-z0-9].",
                            AttributeConstraint::Computed,
                        ),
                    ),
                    (
                        "plan".to_owned(),
                        attribute(
                            AttributeType::String,
                            "The plan, e.g. free.",
                            AttributeConstraint::Computed,
                        ),
                    ),
                    (
                        "limits".to_owned(),
                        attribute(
                            AttributeType::Map(AttributeType::Number.into()),
                            "The tenant's limits (connections, publish rates, …), as the API's `limits`.",
                            AttributeConstraint::Computed,
                        ),
                    ),
                    ("endpoints".to_owned(), endpoints_attribute()),
                ]),
                ..Default::default()
            },
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Value<Tenant>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Tenant>, ValueEmpty)> {
        let Some(id) = state
            .as_ref_option()
            .and_then(|t| t.id.as_ref_option())
            .cloned()
        else {
            return Some((state, private_state));
        };
        let read = self
            .call(
                diags,
                "cannot read the tenant",
                Method::GET,
                Some(&id),
                None,
            )
            .await?;
        // Deleted outside Terraform: a null state removes it, and the next
        // plan creates it again.
        Some((read.map_or(Value::Null, Value::Value), private_state))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed_state: Value<Tenant>,
        _config_state: Value<Tenant>,
        _meta: ValueEmpty,
    ) -> Option<(Value<Tenant>, ValueEmpty)> {
        let mut tenant = known(diags, proposed_state)?;
        tenant.id = Value::Unknown;
        tenant.plan = Value::Unknown;
        tenant.limits = Value::Unknown;
        tenant.endpoints = Value::Unknown;
        Some((Value::Value(tenant), ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<Tenant>,
        proposed_state: Value<Tenant>,
        _config_state: Value<Tenant>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Tenant>, ValueEmpty, Vec<AttributePath>)> {
        // A rename is in place: the id, plan and limits stay as they were
        // (the proposal carries them over from the prior state).
        Some((proposed_state, prior_private_state, Vec::new()))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<Tenant>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(prior_private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned_state: Value<Tenant>,
        _config_state: Value<Tenant>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Tenant>, ValueEmpty)> {
        let planned = known(diags, planned_state)?;
        let name = string(diags, &planned.name, "name")?;
        let body = json!({ "name": name });
        let doing = "cannot create the tenant";
        let found = self
            .call(diags, doing, Method::POST, None, Some(body))
            .await?;
        let summary = format!("{doing}: the API answered nothing");
        Some((must_exist(diags, found, summary, "")?, private_state))
    }

    async fn update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<Tenant>,
        planned_state: Value<Tenant>,
        _config_state: Value<Tenant>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Tenant>, ValueEmpty)> {
        let prior = known(diags, prior_state)?;
        let planned = known(diags, planned_state)?;
        let id = string(diags, &prior.id, "id")?;
        let name = string(diags, &planned.name, "name")?;
        let body = json!({ "name": name });
        let doing = "cannot rename the tenant";
        let found = self
            .call(diags, doing, Method::PATCH, Some(id), Some(body))
            .await?;
        let summary = format!("{doing}: tenant {id} is gone");
        let detail = "It was deleted outside Terraform; the next plan creates it again.";
        Some((must_exist(diags, found, summary, detail)?, private_state))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<Tenant>,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let prior = known(diags, prior_state)?;
        let id = string(diags, &prior.id, "id")?;
        // Gone already (404) is what destroying asks for.
        let doing = "cannot delete the tenant";
        self.call(diags, doing, Method::DELETE, Some(id), None)
            .await
            .map(|_| ())
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Value<Tenant>, ValueEmpty)> {
        let doing = "cannot import the tenant";
        let found = self
            .call(diags, doing, Method::GET, Some(&id), None)
            .await?;
        let summary = format!("cannot import tenant {id:?}: not found");
        let detail = "The id is the tenant's (10 characters of [a-z0-9]), of a tenant of the token's account.";
        Some((
            must_exist(diags, found, summary, detail)?,
            ValueEmpty::default(),
        ))
    }
}
