//! The control plane's facts that gateways need, and how they travel.
//!
//! [`Facts`] are the signing keys (JWKS) and `iss` of the control plane,
//! each tenant's status and limits, tenants' issuers with their public keys,
//! and revoked `jti`s per tenant with their expiry. The control side reads
//! them from its store ([`ControlFacts`]; in `aerie serve` that is the
//! gateway's [`DirectorySource`](aerie_gateway::auth::DirectorySource)
//! directly). In the scale-out shape `aerie control --nats` publishes them
//! into NATS JetStream KV ([`FactsPublisher`]) and every `aerie gateway`
//! watches them ([`KvDirectorySource`]): gateways never call the database,
//! the REST API or a tenant's JWKS URL.
//!
//! # KV layout
//!
//! One bucket, `<prefix>_facts` (`--nats-prefix`, default `aerie`), history 1,
//! values JSON. A key token that is not made of `[A-Za-z0-9_-]` (an `iss`
//! URL, a tenant issuer's `jti`) is written `=` + its base64url.
//!
//! | key | value |
//! |---|---|
//! | `control.issuer` | the `iss` of the control plane's tokens, a JSON string |
//! | `control.jwks` | the control plane's JWKS (`{"keys":[…]}`) |
//! | `tenant.<tenant>` | `{"status":"active"\|"suspended","limits":{…plan limits…}}` |
//! | `issuer.<tenant>.<iss>` | `{"jwks":{"keys":[…]}}` or `{"pem":"-----BEGIN PUBLIC KEY-----…"}` |
//! | `revoked.<tenant>.<jti>` | `{"exp":<unix seconds>}`, deleted once expired |
//!
//! A `tenant.` or `revoked.` value written for a traced request ends with
//! `"traceparent":"00-…"` (W3C trace context): the gateway's kick for that
//! change joins the request's trace. Readers that do not know it ignore it.
//!
//! A gateway that meets a tenant issuer's token with an unknown `kid` asks
//! the control plane to refetch that issuer (`<prefix>.facts.refresh_issuer`,
//! request/reply): the answer comes once the new keys are published.
//!
//! One bucket rather than one per kind: one watch, one point at which a
//! gateway holds the facts (the end of the bucket's history), and changes
//! arrive in the order the publisher made them. A deleted tenant, issuer or
//! revocation is a KV delete.

mod connect;
mod control;
mod jwks_urls;
mod layout;
mod model;
mod publisher;
mod refresh;
mod source;

pub use connect::{Nats, NatsConfig};
pub use control::ControlFacts;
pub use jwks_urls::{JWKS_URL_TTL, JwksUrls};
pub use layout::{bucket, valid_prefix};
pub use model::{Facts, IssuerKeys, Status, TenantRecord, tenant_limits};
pub use publisher::{FACTS_PUBLISH_FAILURES_TOTAL, FACTS_PUBLISHED_TOTAL, FactsPublisher};
pub use source::{FACTS_BAD_ENTRIES_TOTAL, KvDirectorySource};
