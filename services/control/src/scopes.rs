//! What a tenant API key may do: its scopes.
//!
//! An account session holds every scope of its tenants; an API key holds the
//! scopes it was created with, never more than the credential that created it.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The Prometheus counter of requests refused for a scope the API key lacks
/// (a route it may not use, or a scope it tried to grant), by `scope`.
pub const SCOPE_REFUSED_TOTAL: &str = "aerie_control_scope_refused_total";

/// Counts and logs a refusal for `scope` (never the key itself).
pub fn count_refusal(scope: Scope) {
    metrics::counter!(SCOPE_REFUSED_TOTAL, "scope" => scope.name()).increment(1);
    tracing::info!(scope = scope.name(), "API key refused: scope not held");
}

/// One thing a tenant API key may do on its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Mint, list and revoke device and browser tokens.
    Tokens,
    /// List and disconnect connected MQTT clients.
    Clients,
    /// Publish over HTTP and read retained messages.
    Messages,
    /// Read the tenant's usage.
    Usage,
    /// Register, list and delete the tenant's own JWT issuers.
    Issuers,
    /// Create, list and revoke API keys.
    Keys,
    /// Rename the tenant.
    Tenant,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::Tokens,
        Scope::Clients,
        Scope::Messages,
        Scope::Usage,
        Scope::Issuers,
        Scope::Keys,
        Scope::Tenant,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Tokens => "tokens",
            Scope::Clients => "clients",
            Scope::Messages => "messages",
            Scope::Usage => "usage",
            Scope::Issuers => "issuers",
            Scope::Keys => "keys",
            Scope::Tenant => "tenant",
        }
    }

    fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes. Stored as their names separated by spaces.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    pub fn all() -> Scopes {
        Scope::ALL.into_iter().collect()
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The first scope of `self` that `holder` lacks, if any.
    pub fn first_missing_from(self, holder: Scopes) -> Option<Scope> {
        self.iter().find(|s| !holder.contains(*s))
    }

    /// In the order of [`Scope::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn to_vec(self) -> Vec<Scope> {
        self.iter().collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::name).collect();
        f.write_str(&names.join(" "))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// The stored form. A name this version does not know grants nothing
/// (fail closed), so a row written by a newer version never widens a key.
impl From<String> for Scopes {
    fn from(text: String) -> Self {
        text.split_whitespace()
            .filter_map(Scope::from_name)
            .collect()
    }
}

/// The scope a route needs, as a type, so a handler declares it in its
/// signature (`TenantWith<need::Tokens>`) and cannot forget it.
pub trait Needs: Send + Sync + 'static {
    const SCOPE: Scope;
}

pub mod need {
    use super::{Needs, Scope};

    macro_rules! markers {
        ($($name:ident),*) => {$(
            #[doc = concat!("Routes that need the `", stringify!($name), "` scope.")]
            pub struct $name;
            impl Needs for $name {
                const SCOPE: Scope = Scope::$name;
            }
        )*};
    }
    markers!(Tokens, Clients, Messages, Usage, Issuers, Keys, Tenant);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_their_stored_form() {
        let some: Scopes = [Scope::Keys, Scope::Tokens].into_iter().collect();
        assert_eq!(some.to_string(), "tokens keys");
        assert_eq!(Scopes::from(some.to_string()), some);
        assert_eq!(Scopes::from(Scopes::all().to_string()), Scopes::all());
        assert_eq!(Scopes::from(String::new()), Scopes::NONE);
    }

    #[test]
    fn an_unknown_stored_name_grants_nothing() {
        let read = Scopes::from("tokens everything admin".to_owned());
        assert_eq!(read.to_vec(), vec![Scope::Tokens]);
    }

    #[test]
    fn the_first_missing_scope_is_named() {
        let held: Scopes = [Scope::Tokens, Scope::Clients].into_iter().collect();
        let asked: Scopes = [Scope::Tokens, Scope::Issuers, Scope::Keys]
            .into_iter()
            .collect();
        assert_eq!(asked.first_missing_from(held), Some(Scope::Issuers));
        assert_eq!(held.first_missing_from(held), None);
        assert_eq!(Scopes::NONE.first_missing_from(Scopes::NONE), None);
    }
}
