//! Outbound requests made for a tenant (JWKS URLs today, webhooks later).
//!
//! A tenant chooses the destination, so every call here is treated as
//! hostile input (DESIGN.md "Outbound requests"):
//! - `policy`: which addresses are refused (loopback, private, link-local
//!   and metadata, ...) unless the operator allows private destinations;
//! - `resolver`: applies the policy to every address a name resolves to,
//!   on every connect (IP literals are checked before the request);
//! - `client`: one request with a timeout, no redirects, no proxy, and the
//!   body streamed under a byte cap; every call is counted by outcome.

mod client;
mod policy;
mod resolver;

#[cfg(test)]
mod tests;

pub use client::{Egress, EgressError, Limits, OUTBOUND_REQUESTS_TOTAL};
pub use policy::{DestinationPolicy, Forbidden, forbidden};
pub use resolver::{GuardedResolver, Refused};
