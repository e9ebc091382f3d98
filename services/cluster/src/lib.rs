//! The scale-out shape's implementations of the core's seams
//! (`aerie_core::seams`), over NATS: what `aerie gateway` plugs into its
//! broker with `Broker::with_seams`. The embedded shape (`aerie serve`)
//! never links this crate's types into its message path.

pub mod backbone;
mod counts;
mod kv_cas;
mod kv_key;
pub mod limits;
pub mod live;
pub mod message_log;
pub mod nodes;
pub mod owners;
mod rate_share;
pub mod replicas;
pub mod retained;
mod retained_stream;
pub mod retained_usage;
pub mod session_records;
pub mod stale_owners;
pub mod subjects;
pub mod survivors;
pub mod wills;

pub use limits::ClusterConnections;
pub use nodes::Nodes;
pub use owners::NatsOwners;
