//! Test harness: start the real `aerie` binary on free loopback ports with a
//! fresh data dir, and talk to it with real clients (rumqttc) or, for protocol
//! edge cases, raw packets encoded by hand.

pub mod http;
pub mod idp;
pub mod nats;
pub mod otlp;
pub mod prometheus;
pub mod raw;
pub mod scaleout;
pub mod server;
pub mod tenants;
pub mod tls;
pub mod v5client;
pub mod ws;

pub use raw::RawClient;
pub use server::{HttpResponse, Server, ServerOptions};

use std::time::Duration;

/// Long enough for a loaded 2-core box, short enough that a hang fails fast.
pub const WAIT: Duration = Duration::from_secs(5);
