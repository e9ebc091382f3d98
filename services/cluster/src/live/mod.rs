//! The control plane's live-state routes (`/clients`, kick, HTTP publish,
//! retained) in the scale-out shape, where no broker runs beside the
//! control plane: request/reply over core NATS to the gateways.
//!
//! Each gateway answers on its own subjects, `<prefix>.live.<node>.<op>.<tenant>`
//! (`node` its incarnation as in `<prefix>_nodes`, `tenant` escaped as a
//! topic level is), from its own registry and core only: the tenant of the
//! subject is the only scope of what it answers ([`responder`]). The
//! control plane ([`ClusterBroker`]) asks every live node for a listing,
//! the owner of a client id for a kick, one live node to publish, and reads
//! retained messages from JetStream itself.

mod cluster_broker;
pub mod responder;
mod wire;

pub use cluster_broker::{ClusterBroker, REQUESTS_TOTAL};
pub use responder::serve;
