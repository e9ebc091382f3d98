//! `terraform-provider-aerie`: the Terraform provider of Aerie (protocol 6,
//! source address `aerie/aerie`). Terraform starts it as a plugin; it calls
//! the control plane's REST API v1 with an account API key.
//!
//! Layout: `provider.rs` (the provider block: endpoint and token),
//! `api.rs` (the REST client; a problem+json answer is an [`api::Problem`]),
//! `diagnostics.rs` (problems and other errors as Terraform diagnostics, on
//! the attribute they are about), `values.rs` (reading states and plans),
//! `tenant_items.rs` (calls on what belongs to a tenant: keys, tokens,
//! issuers), the resources `tenant.rs`, `api_key.rs`, `token.rs`,
//! `issuer.rs`, and
//! the data sources `tenant_data.rs` and `jwks_data.rs`.

#![forbid(unsafe_code)]

mod api;
mod api_key;
mod diagnostics;
mod issuer;
mod jwks_data;
mod provider;
mod tenant;
mod tenant_data;
mod tenant_items;
mod token;
mod values;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // tonic brings rustls's ring provider into the graph beside aws-lc-rs:
    // with two, rustls needs the process default named before any TLS.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tf_provider::serve("aerie", provider::AerieProvider::default()).await
}
