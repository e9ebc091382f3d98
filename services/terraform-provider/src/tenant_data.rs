//! The `aerie_tenant` data source: a tenant of the token's account, by `id`
//! or by `name` (exactly one), with its plan and limits. A name that no
//! tenant has, or that several have, is an error on `name`.

use std::collections::HashMap;

use async_trait::async_trait;
use reqwest::Method;
use tf_provider::schema::{AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};

use crate::api::Shared;
use crate::diagnostics::{error, reported};
use crate::provider::attribute;
use crate::tenant::{Tenant, TenantView};
use crate::values::given;

/// The arguments an API problem can be about.
const ARGUMENTS: &[&str] = &["id", "name"];

pub struct TenantDataSource {
    client: Shared,
}

impl TenantDataSource {
    pub fn new(client: Shared) -> Self {
        TenantDataSource { client }
    }
}

/// The one tenant of `listed` named `name`, or an error on `name`.
fn named(diags: &mut Diagnostics, listed: Vec<TenantView>, name: &str) -> Option<TenantView> {
    let mut found: Vec<TenantView> = listed.into_iter().filter(|t| t.name == name).collect();
    let why = match found.len() {
        1 => return found.pop(),
        0 => format!("no tenant of the token's account is named {name:?}"),
        n => format!("{n} tenants are named {name:?}: look it up by `id`"),
    };
    error(diags, why, "", AttributePath::new("name"));
    None
}

#[async_trait]
impl DataSource for TenantDataSource {
    type State<'a> = Value<Tenant>;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let lookup = |description| {
            attribute(
                AttributeType::String,
                description,
                AttributeConstraint::OptionalComputed,
            )
        };
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A tenant of the token's account, by id or by name (exactly one).",
                ),
                attributes: HashMap::from([
                    ("id".to_owned(), lookup("The tenant id; or give name.")),
                    (
                        "name".to_owned(),
                        lookup(
                            "The tenant's name, which one tenant of the account has; or give id.",
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
                            "The tenant's limits, as the API's `limits`.",
                            AttributeConstraint::Computed,
                        ),
                    ),
                    ("endpoints".to_owned(), crate::tenant::endpoints_attribute()),
                ]),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Value<Tenant>) -> Option<()> {
        if let Some(config) = config.as_ref_option()
            && given(&config.id) == given(&config.name)
        {
            error(
                diags,
                "give exactly one of `id` and `name`",
                "",
                AttributePath::root(),
            );
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Value<Tenant>,
        _meta: ValueEmpty,
    ) -> Option<Value<Tenant>> {
        let config = config.as_option().unwrap_or_default();
        let client = self.client.configured(diags)?;
        let doing = "cannot read the tenant";
        let view = match (config.id.as_ref_option(), config.name.as_ref_option()) {
            (Some(id), _) => {
                let answer = client
                    .call::<TenantView>(Method::GET, &["v1", "tenants", id], None::<&()>)
                    .await;
                let found = reported(diags, doing, answer, ARGUMENTS)?;
                if found.is_none() {
                    let why = format!("no tenant {id:?} in the token's account");
                    error(diags, why, "", AttributePath::new("id"));
                }
                found?
            }
            (None, Some(name)) => {
                let answer = client
                    .call::<Vec<TenantView>>(Method::GET, &["v1", "tenants"], None::<&()>)
                    .await;
                let listed = reported(diags, doing, answer, ARGUMENTS)?;
                named(diags, listed.unwrap_or_default(), name)?
            }
            (None, None) => {
                error(
                    diags,
                    "give exactly one of `id` and `name`",
                    "",
                    AttributePath::root(),
                );
                return None;
            }
        };
        Some(Value::Value(Tenant::from(view)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(names: &[&str]) -> Vec<TenantView> {
        let views = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                serde_json::json!({"id": format!("tenant{i:04}"), "name": name, "plan": "free", "limits": {}})
            })
            .collect::<Vec<_>>();
        serde_json::from_value(serde_json::Value::Array(views)).unwrap()
    }

    #[test]
    fn a_name_finds_the_one_tenant_that_has_it() {
        let mut diags = Diagnostics::default();
        let found = named(&mut diags, listed(&["a", "b"]), "b").unwrap();
        assert_eq!(found.name, "b");
        assert!(diags.errors.is_empty());
    }

    #[test]
    fn a_name_that_none_or_several_have_is_an_error_on_name() {
        for (names, says) in [
            (
                &["a"][..],
                "no tenant of the token's account is named \"b\"",
            ),
            (
                &["b", "b"][..],
                "2 tenants are named \"b\": look it up by `id`",
            ),
        ] {
            let mut diags = Diagnostics::default();
            assert!(named(&mut diags, listed(names), "b").is_none());
            assert_eq!(diags.errors[0].summary, says);
            assert_eq!(diags.errors[0].attribute, AttributePath::new("name"));
        }
    }
}
