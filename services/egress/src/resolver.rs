//! DNS resolution that refuses forbidden destinations: reqwest asks it on
//! every new connection, so a name that changes its answer (DNS rebinding)
//! is judged again each time.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::policy::{DestinationPolicy, Forbidden};

/// A destination refused by the [`DestinationPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("destination refused: a {} address ({})", .why.label(), .ip)]
pub struct Refused {
    pub ip: IpAddr,
    pub why: Forbidden,
}

/// Resolves with the system resolver, then applies the policy.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub policy: DestinationPolicy,
}

impl GuardedResolver {
    /// Every address of `addrs`, unless one of them is forbidden: a name that
    /// answers with a public and a private address is refused whole (a
    /// rebinding trick would otherwise be one retry away).
    pub fn judge(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        for addr in &addrs {
            self.policy
                .check(addr.ip())
                .map_err(|why| Refused { ip: addr.ip(), why })?;
        }
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs = guard.judge(addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
