//! The topic core: everything a broker keeps, keyed by tenant.
//!
//! **Architecture invariant:** the core knows no sockets, TLS, HTTP or SQL. It
//! receives decoded messages from connection tasks and hands deliveries to
//! session queues; connections drain those queues.

#![forbid(unsafe_code)]

pub mod trie;
