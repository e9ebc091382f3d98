//! `aerie_token`: a device or browser token (a JWT for the MQTT password)
//! of a tenant. A token cannot change, so every argument replaces it;
//! destroying it revokes it (the broker refuses it at CONNECT from then on).
//! A token revoked outside Terraform (or whose tenant is gone) leaves the
//! state and is created again; one past its `expires_at` is planned for
//! replacement, as a certificate due for renewal is, so the plan shows the
//! old token going and a new one coming.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, Schema,
};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::Shared;
use crate::diagnostics::error;
use crate::provider::attribute;
use crate::tenant_items::TenantItems;
use crate::values::{self, changed, string};

/// The arguments an API problem can be about.
const ARGUMENTS: &[&str] = &["tenant_id", "client_id", "pub", "sub", "ttl_seconds"];

type Filters = Value<Vec<Value<String>>>;

/// The resource's state (and config, and plan).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Token {
    #[serde(default)]
    tenant_id: Value<String>,
    #[serde(default)]
    client_id: Value<String>,
    #[serde(default, rename = "pub")]
    publish: Filters,
    #[serde(default, rename = "sub")]
    subscribe: Filters,
    #[serde(default)]
    ttl_seconds: Value<i64>,
    #[serde(default)]
    token: Value<String>,
    #[serde(default)]
    jti: Value<String>,
    #[serde(default)]
    expires_at: Value<String>,
}

/// The body of `POST /v1/tenants/{tid}/tokens`: what the token allows.
#[derive(Serialize)]
struct MintBody<'t> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'t str>,
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none")]
    publish: Option<Vec<&'t str>>,
    #[serde(rename = "sub", skip_serializing_if = "Option::is_none")]
    subscribe: Option<Vec<&'t str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<i64>,
}

/// A list's strings (an unknown or null element is left out: by apply
/// time every element is known, and the API refuses no null).
fn strings(filters: &Filters) -> Option<Vec<&str>> {
    filters.as_ref_option().map(|list| {
        list.iter()
            .filter_map(|f| f.as_ref_option().map(String::as_str))
            .collect()
    })
}

/// The token as minted.
#[derive(Deserialize)]
struct Minted {
    token: String,
    jti: String,
    expires_at: String,
}

/// A minted token as `GET /v1/tenants/{tid}/tokens/{jti}` shows it.
#[derive(Deserialize)]
struct TokenView {
    expires_at: String,
    revoked: bool,
}

/// Whether a token that expires at `expires_at` (RFC 3339) has expired at
/// `now`; a time that does not parse counts as expired, so it is replaced.
fn expired(expires_at: &str, now: OffsetDateTime) -> bool {
    OffsetDateTime::parse(expires_at, &Rfc3339).map_or(true, |at| at <= now)
}

pub struct TokenResource {
    tokens: TenantItems,
}

impl TokenResource {
    pub fn new(client: Shared) -> Self {
        TokenResource {
            tokens: TenantItems::new(client, "tokens", ARGUMENTS),
        }
    }
}

fn known(diags: &mut Diagnostics, state: Value<Token>) -> Option<Token> {
    values::known(diags, state, "aerie_token")
}

fn forget_the_token(planned: &mut Token) {
    planned.token = Value::Unknown;
    planned.jti = Value::Unknown;
    planned.expires_at = Value::Unknown;
}

#[async_trait]
impl Resource for TokenResource {
    type State<'a> = Value<Token>;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let input = |attr_type, description| {
            attribute(attr_type, description, AttributeConstraint::Optional)
        };
        let computed = |description| {
            attribute(
                AttributeType::String,
                description,
                AttributeConstraint::Computed,
            )
        };
        let filters = || AttributeType::List(AttributeType::String.into());
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain(
                    "A device or browser token of a tenant: a JWT for the MQTT password field. \
                     Any change replaces it, destroying it revokes it, and one past its \
                     expires_at is planned for replacement.",
                ),
                attributes: HashMap::from([
                    (
                        "tenant_id".to_owned(),
                        attribute(
                            AttributeType::String,
                            "The tenant's id.",
                            AttributeConstraint::Required,
                        ),
                    ),
                    (
                        "client_id".to_owned(),
                        input(
                            AttributeType::String,
                            "The only MQTT client id the token may connect with (also its sub). \
                             Any client id if absent.",
                        ),
                    ),
                    (
                        "pub".to_owned(),
                        input(
                            filters(),
                            "Topic filters the token may publish to (${client_id} and ${sub} \
                             are substituted). With neither pub nor sub, no ACL.",
                        ),
                    ),
                    (
                        "sub".to_owned(),
                        input(filters(), "Topic filters the token may subscribe to."),
                    ),
                    (
                        "ttl_seconds".to_owned(),
                        input(
                            AttributeType::Number,
                            "Lifetime, 60 to 2592000 seconds; 3600 if absent.",
                        ),
                    ),
                    (
                        "token".to_owned(),
                        Attribute {
                            sensitive: true,
                            ..computed("The JWT, for the MQTT password field.")
                        },
                    ),
                    ("jti".to_owned(), computed("The token's id.")),
                    (
                        "expires_at".to_owned(),
                        computed("When the token stops verifying (RFC 3339)."),
                    ),
                ]),
                ..Default::default()
            },
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Value<Token>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Token>, ValueEmpty)> {
        let Some(prior) = state.as_ref_option() else {
            return Some((state, private_state));
        };
        let (Some(tenant_id), Some(jti)) =
            (prior.tenant_id.as_ref_option(), prior.jti.as_ref_option())
        else {
            return Some((state, private_state));
        };
        let found: Option<TokenView> = self
            .tokens
            .get(diags, "cannot read the token", tenant_id, jti)
            .await?;
        // Revoked outside Terraform, or its tenant gone: a null state
        // removes it, and the next plan mints it again.
        let read = found.filter(|t| !t.revoked).map(|t| Token {
            expires_at: Value::Value(t.expires_at),
            ..prior.clone()
        });
        Some((read.map_or(Value::Null, Value::Value), private_state))
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed_state: Value<Token>,
        _config_state: Value<Token>,
        _meta: ValueEmpty,
    ) -> Option<(Value<Token>, ValueEmpty)> {
        let mut planned = known(diags, proposed_state)?;
        forget_the_token(&mut planned);
        Some((Value::Value(planned), ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<Token>,
        proposed_state: Value<Token>,
        _config_state: Value<Token>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Token>, ValueEmpty, Vec<AttributePath>)> {
        let prior = known(diags, prior_state)?;
        let mut planned = known(diags, proposed_state)?;
        let lapsed = prior
            .expires_at
            .as_ref_option()
            .is_some_and(|at| expired(at, OffsetDateTime::now_utc()));
        let triggers = changed(&[
            ("tenant_id", planned.tenant_id != prior.tenant_id),
            ("client_id", planned.client_id != prior.client_id),
            ("pub", planned.publish != prior.publish),
            ("sub", planned.subscribe != prior.subscribe),
            ("ttl_seconds", planned.ttl_seconds != prior.ttl_seconds),
            ("expires_at", lapsed),
        ]);
        if !triggers.is_empty() {
            forget_the_token(&mut planned);
        }
        Some((Value::Value(planned), prior_private_state, triggers))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<Token>,
        prior_private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(prior_private_state)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned_state: Value<Token>,
        _config_state: Value<Token>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Token>, ValueEmpty)> {
        let mut planned = known(diags, planned_state)?;
        let tenant_id = string(diags, &planned.tenant_id, "tenant_id")?;
        let body = MintBody {
            client_id: planned.client_id.as_ref_option().map(String::as_str),
            publish: strings(&planned.publish),
            subscribe: strings(&planned.subscribe),
            ttl_seconds: planned.ttl_seconds.as_option(),
        };
        let minted: Minted = self
            .tokens
            .create(diags, "cannot mint the token", tenant_id, &body)
            .await?;
        planned.token = Value::Value(minted.token);
        planned.jti = Value::Value(minted.jti);
        planned.expires_at = Value::Value(minted.expires_at);
        Some((Value::Value(planned), private_state))
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior_state: Value<Token>,
        planned_state: Value<Token>,
        _config_state: Value<Token>,
        private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<(Value<Token>, ValueEmpty)> {
        // Every argument replaces the token: nothing changes in place.
        Some((planned_state, private_state))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior_state: Value<Token>,
        _private_state: ValueEmpty,
        _meta: ValueEmpty,
    ) -> Option<()> {
        let prior = known(diags, prior_state)?;
        let tenant_id = string(diags, &prior.tenant_id, "tenant_id")?;
        let jti = string(diags, &prior.jti, "jti")?;
        // Revoked already, or its tenant gone (404): what destroying asks for.
        let doing = "cannot revoke the token";
        self.tokens.delete(diags, doing, tenant_id, jti).await
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        import_id: String,
    ) -> Option<(Value<Token>, ValueEmpty)> {
        // Said here, not by tf-provider's default, whose error carries a
        // backtrace when RUST_BACKTRACE is set.
        error(
            diags,
            format!("cannot import token {import_id:?}: tokens are not importable"),
            "The API shows a token only when it mints it; let Terraform mint a new one.",
            AttributePath::root(),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_has_expired_at_its_expires_at_and_after() {
        let at = OffsetDateTime::parse("2026-12-06T00:00:00Z", &Rfc3339).unwrap();
        let second = time::Duration::seconds(1);
        assert!(!expired("2026-12-06T00:00:00Z", at - second));
        assert!(expired("2026-12-06T00:00:00Z", at));
        assert!(expired("2026-12-06T00:00:00Z", at + second));
        assert!(expired("not a time", at), "an unreadable time is renewed");
    }
}
