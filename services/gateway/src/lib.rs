//! The gateway: listeners for MQTT over TCP, TLS, WebSocket and WSS, and the
//! connection task that speaks MQTT 3.1.1 and 5.0 to one client.
//!
//! Every transport produces a byte stream (`AsyncRead + AsyncWrite`) that feeds
//! the same [`connection::run`], so there is one codec path and one protocol
//! state machine. Data flows one way: listener → connection → core.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod connection;
pub mod edge;
pub mod limits;
pub mod listener;
pub mod reaper;
pub mod registry;
pub mod sys;
pub mod tls;
pub mod usage;
pub mod ws;

pub use config::GatewayConfig;
pub use listener::Gateway;
