//! The topic core: everything a broker keeps, keyed by tenant.
//!
//! **Architecture invariant:** the core knows no sockets, TLS, HTTP or SQL. It
//! receives decoded messages from connection tasks and hands deliveries to
//! session queues; connections drain those queues.

#![forbid(unsafe_code)]

mod broker;
pub mod config;
mod flight;
pub mod message;
pub mod metrics;
pub mod node;
pub mod quota;
pub mod retained;
pub mod seams;
pub mod session;
mod small_map;
pub mod store;
mod tenant;
pub mod tenant_series;
pub mod trace_context;
pub mod trie;
pub mod usage;

pub use broker::Broker;
pub use config::CoreConfig;
pub use message::{Delivery, Message, MessageId, Origin, SharedGroup};
pub use node::{Node, NodeId};
pub use quota::{Limit, Quota, TenantLimits};
pub use seams::Seams;
pub use session::{Enqueued, FlightState, Kick, OutFlight, Session, SubscriptionSpec};
pub use store::{NullStore, Store, StoreOp, Ticket};
pub use tenant::{Attachment, Later, Published, Router, SessionTable, Subscribed, Tenant, granted};
pub use usage::{Usage, UsageCounts, UsageReportError, UsageSink};
