//! What belongs to a tenant, as the API keeps it:
//! `/v1/tenants/{tid}/{collection}[/{id}]` for `api-keys`, `tokens` and
//! `issuers`. Created with a POST, found in the collection's list (keys and
//! issuers have no GET of one), read one by one (tokens), deleted; a 404 on
//! the way is "gone" (the tenant, or the thing), an error on create.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tf_provider::Diagnostics;

use crate::api::Shared;
use crate::diagnostics::{created, reported};

/// A collection of a tenant's things, and the arguments a problem can name.
pub struct TenantItems {
    client: Shared,
    collection: &'static str,
    arguments: &'static [&'static str],
}

impl TenantItems {
    pub fn new(
        client: Shared,
        collection: &'static str,
        arguments: &'static [&'static str],
    ) -> Self {
        TenantItems {
            client,
            collection,
            arguments,
        }
    }

    /// POST `body` to the tenant's collection: what was made, or `None`
    /// with the problem (`tenant not found` on `tenant_id`) in `diags`.
    pub async fn create<V: DeserializeOwned>(
        &self,
        diags: &mut Diagnostics,
        doing: &str,
        tenant_id: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Option<V> {
        let client = self.client.configured(diags)?;
        let path = ["v1", "tenants", tenant_id, self.collection];
        let answer = client.call::<V>(Method::POST, &path, Some(body)).await;
        created(diags, doing, answer, self.arguments)
    }

    /// The one of the tenant's list that `is_it`: `Some(None)` if none is,
    /// or the tenant is gone; `None` with the problem in `diags`.
    pub async fn find<V: DeserializeOwned>(
        &self,
        diags: &mut Diagnostics,
        doing: &str,
        tenant_id: &str,
        is_it: impl Fn(&V) -> bool,
    ) -> Option<Option<V>> {
        let client = self.client.configured(diags)?;
        let path = ["v1", "tenants", tenant_id, self.collection];
        let answer = client.call::<Vec<V>>(Method::GET, &path, None::<&()>).await;
        let listed = reported(diags, doing, answer, self.arguments)?;
        Some(listed.unwrap_or_default().into_iter().find(is_it))
    }

    /// GET the tenant's `id`: `Some(None)` if it or the tenant is gone.
    pub async fn get<V: DeserializeOwned>(
        &self,
        diags: &mut Diagnostics,
        doing: &str,
        tenant_id: &str,
        id: &str,
    ) -> Option<Option<V>> {
        let client = self.client.configured(diags)?;
        let path = ["v1", "tenants", tenant_id, self.collection, id];
        let answer = client.call::<V>(Method::GET, &path, None::<&()>).await;
        reported(diags, doing, answer, self.arguments)
    }

    /// DELETE the tenant's `id`; gone already (404) is what destroying asks for.
    pub async fn delete(
        &self,
        diags: &mut Diagnostics,
        doing: &str,
        tenant_id: &str,
        id: &str,
    ) -> Option<()> {
        let client = self.client.configured(diags)?;
        let path = ["v1", "tenants", tenant_id, self.collection, id];
        let answer = client
            .call::<serde_json::Value>(Method::DELETE, &path, None::<&()>)
            .await;
        reported(diags, doing, answer, self.arguments).map(|_| ())
    }
}
