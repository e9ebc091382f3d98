//! Test support: real databases, never mocks (shared with the end-to-end
//! tests through the `aerie-testdb` crate).

pub use aerie_testdb::*;
