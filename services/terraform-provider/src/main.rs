//! `terraform-provider-aerie`: the Terraform provider of Aerie (protocol 6,
//! source address `aerie/aerie`). Terraform starts it as a plugin; it calls
//! the control plane's REST API v1 with an account API key.
//!
//! Layout: `provider.rs` (the provider block: endpoint and token),
//! `api.rs` (the REST client; a problem+json answer is an [`api::Problem`]),
//! `diagnostics.rs` (problems and other errors as Terraform diagnostics, on
//! the attribute they are about), `tenant.rs` (the `aerie_tenant` resource).

#![forbid(unsafe_code)]

mod api;
mod diagnostics;
mod provider;
mod tenant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // tonic brings rustls's ring provider into the graph beside aws-lc-rs:
    // with two, rustls needs the process default named before any TLS.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tf_provider::serve("aerie", provider::AerieProvider::default()).await
}
