//! MQTT 5 re-authentication (§4.12.1): a client that connected with the
//! `JWT` authentication method sends AUTH (reason 0x19) with a fresh token
//! as its authentication data before the old one expires.
//!
//! The new token must verify like a CONNECT's and belong to the same
//! tenant. It replaces the old one's expiry and `acl`; subscriptions the new
//! `acl` no longer covers are removed, so nothing outside it is delivered.

use std::sync::Arc;

use aerie_proto::{Auth, AuthProperties, Packet, ReasonCode};

use super::{Close, Conn, Flow};
use crate::auth::{AUTH_FAILURES_TOTAL, AuthFailure, JWT_AUTH_METHOD, Permissions};
use crate::registry::Credential;

impl Conn {
    pub(super) fn on_auth(&mut self, auth: Auth) -> Flow {
        // §4.12: AUTH only after a CONNECT with an authentication method,
        // the same method, and only a re-authentication can start here.
        if !self.jwt_auth_method
            || auth.reason != ReasonCode::RE_AUTHENTICATE
            || auth.properties.authentication_method.as_deref() != Some(JWT_AUTH_METHOD)
        {
            return Close::by_server(ReasonCode::PROTOCOL_ERROR, "unexpected_auth");
        }
        let token = auth
            .properties
            .authentication_data
            .as_deref()
            .unwrap_or(&[]);
        let grant = match &self.config.verifier {
            Some(verifier) => verifier
                .verify(token, &self.session.client_id, crate::auth::unix_now())
                .and_then(|grant| {
                    if grant.tenant_id == *self.tenant.id {
                        Ok(grant)
                    } else {
                        // A token of another tenant never moves a connection.
                        Err(AuthFailure::UnknownTenant)
                    }
                }),
            None => Err(AuthFailure::NoCredentials),
        };
        let grant = match grant {
            Ok(grant) => grant,
            Err(failure) => {
                metrics::counter!(AUTH_FAILURES_TOTAL, "reason" => failure.label()).increment(1);
                tracing::info!(
                    tenant = %self.tenant.id,
                    client_id = %self.session.client_id,
                    reason = failure.label(),
                    "re-authentication refused"
                );
                return Close::by_server(ReasonCode::NOT_AUTHORIZED, "reauthentication_failed");
            }
        };
        self.permissions = grant
            .acl
            .as_ref()
            .map(|acl| Arc::new(Permissions::new(acl, &self.session.client_id, &grant.sub)));
        self.drop_what_the_acl_no_longer_allows();
        self.live.set_credential(Credential::of(&grant));
        self.token_renewed = true;
        metrics::counter!(REAUTHENTICATIONS_TOTAL).increment(1);
        tracing::debug!("re-authenticated");
        let _ = self.out.push(&Packet::Auth(Auth {
            reason: ReasonCode::SUCCESS,
            properties: AuthProperties {
                authentication_method: Some(JWT_AUTH_METHOD.into()),
                ..AuthProperties::default()
            },
        }));
        Flow::Continue
    }

    /// Unsubscribes the filters and forgets the will that the current
    /// permissions no longer allow.
    fn drop_what_the_acl_no_longer_allows(&mut self) {
        let Some(permissions) = self.permissions.clone() else {
            return;
        };
        for (filter, _) in self.session.subscriptions() {
            if !permissions.may_subscribe(&filter) {
                self.tenant.unsubscribe(&self.session, &filter);
            }
        }
        if self
            .will
            .as_ref()
            .is_some_and(|w| !permissions.may_publish(&w.topic))
        {
            self.will = None;
            self.tenant
                .will_discarded(&self.session, self.live.connection_id);
        }
    }
}

/// Successful re-authentications.
pub const REAUTHENTICATIONS_TOTAL: &str = "aerie_reauthentications_total";
