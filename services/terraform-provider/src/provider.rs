//! The provider block: `endpoint` (or AERIE_ENDPOINT), the control plane's
//! base URL, and the sensitive `token` (or AERIE_TOKEN), an account API key.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};

use crate::api::{Client, Shared};
use crate::api_key::ApiKeyResource;
use crate::diagnostics::error;
use crate::issuer::IssuerResource;
use crate::jwks_data::JwksDataSource;
use crate::tenant::TenantResource;
use crate::tenant_data::TenantDataSource;
use crate::token::TokenResource;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProviderConfig {
    #[serde(default)]
    endpoint: Value<String>,
    #[serde(default)]
    token: Value<String>,
}

#[derive(Default)]
pub struct AerieProvider {
    client: Shared,
}

/// A schema attribute (not sensitive, not deprecated).
pub fn attribute(
    attr_type: AttributeType,
    description: &str,
    constraint: AttributeConstraint,
) -> Attribute {
    Attribute {
        attr_type,
        description: Description::plain(description),
        constraint,
        ..Default::default()
    }
}

/// The attribute's value, else the environment variable's; `None` (with an
/// error on the attribute) when neither is set.
fn setting(
    diags: &mut Diagnostics,
    value: Value<String>,
    attribute: &'static str,
    variable: &str,
) -> Option<String> {
    let found = value
        .as_option()
        .or_else(|| std::env::var(variable).ok())
        .filter(|v| !v.trim().is_empty());
    if found.is_none() {
        error(
            diags,
            format!("`{attribute}` is not set"),
            format!(
                "Set `{attribute}` in the provider block or the {variable} environment variable."
            ),
            AttributePath::new(attribute),
        );
    }
    found
}

#[async_trait]
impl Provider for AerieProvider {
    type Config<'a> = ProviderConfig;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let string = |description: &str, sensitive| Attribute {
            sensitive,
            ..attribute(
                AttributeType::String,
                description,
                AttributeConstraint::Optional,
            )
        };
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "Aerie, a multi-tenant MQTT broker: tenants, their API keys, tokens and issuers through its control plane's REST API v1.",
                ),
                attributes: HashMap::from([
                    (
                        "endpoint".to_owned(),
                        string(
                            "The control plane's base URL, e.g. http://127.0.0.1:8080 (without /v1). \
                             Default: the AERIE_ENDPOINT environment variable.",
                            false,
                        ),
                    ),
                    (
                        "token".to_owned(),
                        string(
                            "An account API key (aerie_acct_…, from POST /v1/account/api-keys or the \
                             console's Account keys page). Default: the AERIE_TOKEN environment variable.",
                            true,
                        ),
                    ),
                ]),
                ..Default::default()
            },
        })
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: ProviderConfig,
    ) -> Option<()> {
        // Unknown until an earlier resource is applied (a server the same
        // configuration starts, e.g. infra/terraform/modules/aerie-host):
        // Terraform plans with this and configures the provider again, with
        // the values known, before it applies anything of it. A plan that
        // needs the API meanwhile gets "not configured".
        if matches!(config.endpoint, Value::Unknown) || matches!(config.token, Value::Unknown) {
            return Some(());
        }
        let endpoint = setting(diags, config.endpoint, "endpoint", "AERIE_ENDPOINT");
        let token = setting(diags, config.token, "token", "AERIE_TOKEN");
        let (endpoint, token) = (endpoint?, token?);
        match Client::new(endpoint.trim(), token.trim()) {
            Ok(client) => {
                self.client.set(client);
                Some(())
            }
            Err(why) => {
                error(
                    diags,
                    format!("`endpoint` {endpoint:?}: {why}"),
                    "",
                    AttributePath::new("endpoint"),
                );
                None
            }
        }
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        let client = || self.client.clone();
        let resources: [(&str, Box<dyn DynamicResource>); 4] = [
            ("tenant", Box::new(TenantResource::new(client()))),
            ("api_key", Box::new(ApiKeyResource::new(client()))),
            ("token", Box::new(TokenResource::new(client()))),
            ("issuer", Box::new(IssuerResource::new(client()))),
        ];
        Some(resources.map(|(name, r)| (name.to_owned(), r)).into())
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        let client = || self.client.clone();
        let sources: [(&str, Box<dyn DynamicDataSource>); 2] = [
            ("tenant", Box::new(TenantDataSource::new(client()))),
            ("jwks", Box::new(JwksDataSource::new(client()))),
        ];
        Some(sources.map(|(name, d)| (name.to_owned(), d)).into())
    }
}
