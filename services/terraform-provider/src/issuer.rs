//! `aerie_issuer`: a tenant's own token issuer (the `iss` of the tokens it
//! mints itself) and where its public keys are: exactly one of `jwks_url`,
//! `jwks` (a JWK set as JSON text) or `public_key_pem`, checked at plan time.
//! The API cannot change an issuer, so every argument replaces it. One
//! deleted outside Terraform leaves the state and is registered again.
//!
//! The API never answers with the keys themselves (only `jwks_url`): an
//! imported issuer of kind `jwks` or `public_key` takes the configured keys
//! into its state with an in-place update that calls nothing.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::api::Shared;
use crate::diagnostics::error;
use crate::provider::attribute;
use crate::tenant_items::TenantItems;
use crate::values::{self, changed, given, must_exist, string, tenant_and_id};

/// The arguments an API problem can be about.
const ARGUMENTS: &[&str] = &["tenant_id", "issuer", "jwks_url", "jwks", "public_key_pem"];
/// Where an issuer's keys are: exactly one of these.
const KEY_SOURCES: [&str; 3] = ["jwks_url", "jwks", "public_key_pem"];

/// The resource's state (and config, and plan).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Issuer {
    #[serde(default)]
    tenant_id: Value<String>,
    #[serde(default)]
    issuer: Value<String>,
    #[serde(default)]
    jwks_url: Value<String>,
    #[serde(default)]
    jwks: Value<String>,
    #[serde(default)]
    public_key_pem: Value<String>,
    #[serde(default)]
    id: Value<String>,
    #[serde(default)]
    kind: Value<String>,
}

impl Issuer {
    fn key_sources(&self) -> [(&'static str, &Value<String>); 3] {
        [
            (KEY_SOURCES[0], &self.jwks_url),
            (KEY_SOURCES[1], &self.jwks),
            (KEY_SOURCES[2], &self.public_key_pem),
        ]
    }
}

/// An issuer as the API lists it (never its keys).
#[derive(Deserialize)]
struct IssuerView {
    id: String,
    issuer: String,
    kind: String,
    #[serde(default)]
    jwks_url: Option<String>,
}

impl IssuerView {
    /// The state of this issuer of `tenant_id`, with the keys of `known`.
    fn into_state(self, tenant_id: &str, keys_of: Option<&Issuer>) -> Issuer {
        let kept =
            |pick: fn(&Issuer) -> &Value<String>| keys_of.map_or(Value::Null, |k| pick(k).clone());
        Issuer {
            tenant_id: Value::Value(tenant_id.to_owned()),
            issuer: Value::Value(self.issuer),
            jwks_url: self.jwks_url.map_or(Value::Null, Value::Value),
            jwks: kept(|i| &i.jwks),
            public_key_pem: kept(|i| &i.public_key_pem),
            id: Value::Value(self.id),
            kind: Value::Value(self.kind),
        }
    }
}

/// The plan-time rule: exactly one key source, and a `jwks` that is JSON.
fn check_key_sources(diags: &mut Diagnostics, config: &Issuer) {
    let sources = config.key_sources();
    let count = sources.iter().filter(|(_, v)| given(*v)).count();
    if count != 1 {
        let (summary, at) = match sources.iter().filter(|(_, v)| given(*v)).nth(1) {
            Some((second, _)) => (
                format!(
                    "`{second}` is a second key source: give exactly one of `jwks_url`, `jwks` and `public_key_pem`"
                ),
                AttributePath::new(*second),
            ),
            None => (
                "no key source: give exactly one of `jwks_url`, `jwks` and `public_key_pem`"
                    .to_owned(),
                AttributePath::root(),
            ),
        };
        error(diags, summary, "", at);
    }
    if let Some(text) = config.jwks.as_ref_option()
        && let Err(why) = serde_json::from_str::<serde_json::Value>(text)
    {
        error(
            diags,
            format!("`jwks` is not JSON: {why}"),
            "Give the JWK set as JSON text, e.g. jsonencode({ keys = [ … ] }).",
            AttributePath::new("jwks"),
        );
    }
}

pub struct IssuerResource {
    issuers: TenantItems,
}

impl IssuerResource {
    pub fn new(client: Shared) -> Self {
        IssuerResource {
            issuers: TenantItems::new(client, "issuers", ARGUMENTS),
        }
    }

    /// The tenant's issuer `id` (`Some(None)`: deleted, or the tenant is
    /// gone), its keys taken from `prior`; `None` with the problem in `diags`.
    async fn find(
        &self,
        diags: &mut Diagnostics,
        doing: &str,
        tenant_id: &str,
        id: &str,
        prior: Option<&Issuer>,
    ) -> Option<Option<Issuer>> {
        let found = self
            .issuers
            .find(diags, doing, tenant_id, |i: &IssuerView| i.id == id)
            .await?
            .map(|view| view.into_state(tenant_id, prior));
        Some(found)
    }
}

fn known(diags: &mut Diagnostics, state: Value<Issuer>) -> Option<Issuer> {
    values::known(diags, state, "aerie_issuer")
}

#[async_trait]
impl Resource for IssuerResource {
    type State<'a> = Value<Issuer>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let string_attribute =
            |description, constraint| attribute(AttributeType::String, description, constraint);
        let key_source = |description| string_attribute(description, AttributeConstraint::Optional);
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A tenant's own token issuer: tokens with this iss are verified with its \
                     public keys, from exactly one of jwks_url, jwks and public_key_pem. Any \
                     change replaces it.",
                ),
                attributes: HashMap::from([
                    (
                        "tenant_id".to_owned(),
                        string_attribute("The tenant's id.", AttributeConstraint::Required),
                    ),
                    (
                        "issuer".to_owned(),
                        string_attribute(
                            "The iss claim of the tenant's tokens (1 to 255 characters).",
                            AttributeConstraint::Required,
                        ),
                    ),
                    (
                        "jwks_url".to_owned(),
                        key_source(
                            "Where the issuer publishes its JWKS: https (http only to a loopback host).",
                        ),
                    ),
                    (
                        "jwks".to_owned(),
                        key_source(
                            "A JWK set of public RSA, EC (P-256/P-384) or Ed25519 keys, as JSON text (jsonencode).",
                        ),
                    ),
                    (
                        "public_key_pem".to_owned(),
                        key_source("One SubjectPublicKeyInfo PEM (-----BEGIN PUBLIC KEY-----)."),
                    ),
                    (
                        "id".to_owned(),
                        string_attribute(
                            "The issuer's id (a UUID).",
                            AttributeConstraint::Computed,
                        ),
                    ),
                    (
                        "kind".to_owned(),
                        string_attribute(
                            "Where its keys are: jwks_url, jwks or public_key.",
                            AttributeConstraint::Computed,
                        ),
                    ),
                ]),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Value<Issuer>) -> Option<()> {
        if let Some(config) = config.as_ref_option() {
            check_key_sources(diags, config);
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Value<Issuer>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Issuer>, ValueEmpty)> {
        let Some(prior) = state.as_ref_option() else {
            return Some((state, private_state));
        };
        let (Some(tenant_id), Some(id)) =
            (prior.tenant_id.as_ref_option(), prior.id.as_ref_option())
        else {
            return Some((state, private_state));
        };
        let found = self
            .find(diags, "cannot read the issuer", tenant_id, id, Some(prior))
            .await?;
        // Deleted outside Terraform: a null state removes it, and the next
        // plan registers it again.
        Some((found.map_or(Value::Null, Value::Value), private_state))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed_state: Value<Issuer>,
        _config_state: Value<Issuer>,
        _meta: ValueEmpty,
    ) -> Option<(Value<Issuer>, ValueEmpty)> {
        let mut planned = known(diags, proposed_state)?;
        planned.id = Value::Unknown;
        planned.kind = Value::Unknown;
        Some((Value::Value(planned), ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<Issuer>,
        proposed_state: Value<Issuer>,
        _config_state: Value<Issuer>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Issuer>, ValueEmpty, Vec<AttributePath>)> {
        let prior = known(diags, prior_state)?;
        let mut planned = known(diags, proposed_state)?;
        // An imported issuer has no keys in its state (the API does not show
        // them): the configured ones are taken as they are, in place.
        let adopted = |source: &str| {
            let kind = if source == "public_key_pem" {
                "public_key"
            } else {
                source
            };
            prior.kind.as_ref_option().is_some_and(|k| k == kind)
        };
        let mut triggers = changed(&[
            ("tenant_id", planned.tenant_id != prior.tenant_id),
            ("issuer", planned.issuer != prior.issuer),
        ]);
        for ((name, was), (_, now)) in prior.key_sources().into_iter().zip(planned.key_sources()) {
            let imported = matches!(was, Value::Null) && name != "jwks_url" && adopted(name);
            if was != now && !imported {
                triggers.push(AttributePath::new(name));
            }
        }
        if !triggers.is_empty() {
            planned.id = Value::Unknown;
            planned.kind = Value::Unknown;
        }
        Some((Value::Value(planned), prior_private_state, triggers))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<Issuer>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(prior_private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned_state: Value<Issuer>,
        _config_state: Value<Issuer>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Issuer>, ValueEmpty)> {
        let planned = known(diags, planned_state)?;
        let tenant_id = string(diags, &planned.tenant_id, "tenant_id")?;
        let issuer = string(diags, &planned.issuer, "issuer")?;
        let mut body = json!({ "issuer": issuer });
        if let Some(url) = planned.jwks_url.as_ref_option() {
            body["jwks_url"] = json!(url);
        }
        if let Some(pem) = planned.public_key_pem.as_ref_option() {
            body["public_key_pem"] = json!(pem);
        }
        if let Some(text) = planned.jwks.as_ref_option() {
            // Checked at plan time; a value known only now is checked here.
            let Ok(jwks) = serde_json::from_str::<serde_json::Value>(text) else {
                check_key_sources(diags, &planned);
                return None;
            };
            body["jwks"] = jwks;
        }
        let doing = "cannot register the issuer";
        let view: IssuerView = self.issuers.create(diags, doing, tenant_id, &body).await?;
        let made = view.into_state(tenant_id, Some(&planned));
        Some((Value::Value(made), private_state))
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<Issuer>,
        planned_state: Value<Issuer>,
        _config_state: Value<Issuer>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Issuer>, ValueEmpty)> {
        // Only an imported issuer's keys are taken in place (plan_update).
        Some((planned_state, private_state))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<Issuer>,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let prior = known(diags, prior_state)?;
        let tenant_id = string(diags, &prior.tenant_id, "tenant_id")?;
        let id = string(diags, &prior.id, "id")?;
        // Deleted already (404) is what destroying asks for.
        let doing = "cannot delete the issuer";
        self.issuers.delete(diags, doing, tenant_id, id).await
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        import_id: String,
    ) -> Option<(Value<Issuer>, ValueEmpty)> {
        let (tenant_id, id) = tenant_and_id(diags, &import_id, "issuer")?;
        let doing = "cannot import the issuer";
        let found = self.find(diags, doing, tenant_id, id, None).await?;
        let summary = format!("cannot import issuer {import_id:?}: not found");
        let detail = "The id is <tenant_id>/<issuer id>.";
        Some((
            must_exist(diags, found, summary, detail)?,
            ValueEmpty::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(jwks_url: Value<String>, jwks: Value<String>, pem: Value<String>) -> Issuer {
        Issuer {
            jwks_url,
            jwks,
            public_key_pem: pem,
            ..Issuer::default()
        }
    }

    fn errors(config: &Issuer) -> Vec<(String, AttributePath)> {
        let mut diags = Diagnostics::default();
        check_key_sources(&mut diags, config);
        diags
            .errors
            .into_iter()
            .map(|e| (e.summary.into_owned(), e.attribute))
            .collect()
    }

    #[test]
    fn exactly_one_key_source_and_unknown_counts_as_given() {
        let v = |s: &str| Value::Value(s.to_owned());
        assert!(errors(&with(v("https://a/jwks"), Value::Null, Value::Null)).is_empty());
        assert!(errors(&with(Value::Null, Value::Null, Value::Unknown)).is_empty());
        let none = errors(&with(Value::Null, Value::Null, Value::Null));
        assert!(none[0].0.starts_with("no key source"), "{none:?}");
        let two = errors(&with(v("https://a/jwks"), Value::Null, Value::Unknown));
        assert_eq!(two[0].1, AttributePath::new("public_key_pem"), "{two:?}");
    }

    #[test]
    fn a_jwks_that_is_not_json_is_an_error_on_jwks() {
        let found = errors(&with(
            Value::Null,
            Value::Value("{keys".into()),
            Value::Null,
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].1, AttributePath::new("jwks"));
    }
}
