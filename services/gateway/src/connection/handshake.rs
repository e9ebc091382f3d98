//! CONNECT → CONNACK: validate the client's CONNECT, decide its tenant and
//! session, and say what we allow it.

use std::sync::Arc;

use aerie_core::{Attachment, Broker, Tenant};
use aerie_proto::{ByteString, ConnAck, ConnAckProperties, Connect, ProtocolVersion, ReasonCode};

use crate::auth::Admission;
use crate::auth::Permissions;
use crate::config::GatewayConfig;
use crate::registry::Credential;

/// What the handshake settled for the rest of the connection.
pub(crate) struct Accepted {
    pub tenant: Arc<Tenant>,
    /// `None`: every topic of the tenant (no token, or a token without `acl`).
    pub permissions: Option<Arc<Permissions>>,
    /// The token's id and expiry (`None`: anonymous).
    pub credential: Option<Credential>,
    /// The client authenticated with method `JWT` and may re-authenticate.
    pub jwt_auth_method: bool,
    pub attachment: Attachment,
    pub connack: ConnAck,
    /// Seconds; 0 = no keep alive.
    pub keep_alive: u16,
    pub session_expiry: u32,
    /// The client's limits on what we send it.
    pub client_receive_maximum: u16,
    pub client_max_packet_size: u32,
    pub client_topic_alias_maximum: u16,
    /// The connection, counted against the tenant's `connections`.
    pub slot: aerie_core::quota::ConnectionSlot,
}

/// A refused CONNECT: the CONNACK reason to send.
pub(crate) struct Refused(pub ReasonCode);

/// The token a CONNECT carries: its password, or (v5 enhanced
/// authentication, method `JWT`, which allows re-authenticating later) its
/// authentication data.
fn connect_token(connect: &Connect) -> Result<Option<&[u8]>, Refused> {
    let props = &connect.properties;
    match props.authentication_method.as_deref() {
        None => Ok(connect.password.as_deref()),
        Some(crate::auth::JWT_AUTH_METHOD) => Ok(props
            .authentication_data
            .as_deref()
            .or(connect.password.as_deref())),
        Some(_) => Err(Refused(ReasonCode::BAD_AUTHENTICATION_METHOD)),
    }
}

/// Fuzzing entry point (`fuzz/fuzz_targets/connect_token.rs`), not an API:
/// authenticates `connect` as [`accept`] does (its token, then
/// `auth::admit`) and stops there, before any tenant or session is touched.
/// `Ok(None)`: admitted anonymously.
#[doc(hidden)]
pub async fn authenticate_for_fuzzing(
    connect: &Connect,
    config: &GatewayConfig,
) -> Result<Option<crate::auth::Grant>, ReasonCode> {
    let token = connect_token(connect).map_err(|Refused(code)| code)?;
    match crate::auth::admit(token, &connect.client_id, config).await {
        Ok(Admission::Token(grant)) => Ok(Some(*grant)),
        Ok(Admission::Anonymous) => Ok(None),
        Err(failure) => Err(failure.reason_code()),
    }
}

pub(crate) async fn accept(
    connect: &Connect,
    broker: &Broker,
    config: &GatewayConfig,
    connection_id: u64,
) -> Result<Accepted, Refused> {
    let v5 = connect.protocol.is_v5();
    let props = &connect.properties;

    let token = connect_token(connect)?;
    let jwt_auth_method = props.authentication_method.is_some();
    // The decoder has already refused an invalid will topic (0x90); `$`-topics
    // are the server's (read-only `$SYS`), so a will may not go there either.
    if connect
        .will
        .as_ref()
        .is_some_and(|w| w.topic.starts_with('$'))
    {
        return Err(Refused(ReasonCode::NOT_AUTHORIZED));
    }
    if let Some(will) = &connect.will
        && will.properties.payload_format_indicator == Some(1)
        && std::str::from_utf8(&will.payload).is_err()
    {
        return Err(Refused(ReasonCode::PAYLOAD_FORMAT_INVALID));
    }

    // Credentials: a token names the tenant; anonymous clients join one local tenant.
    let grant = match crate::auth::admit(token, &connect.client_id, config).await {
        Ok(Admission::Token(grant)) => Some(*grant),
        Ok(Admission::Anonymous) => None,
        Err(failure) => return Err(Refused(failure.reason_code())),
    };
    let tenant = broker.tenant(
        grant
            .as_ref()
            .map_or(&config.anonymous_tenant, |g| &g.tenant_id),
    );
    if let Some(g) = &grant {
        tenant.init_limits(g.limits);
    }
    let limits = tenant.quota().limits();

    let mut connack_props = ConnAckProperties::default();
    let client_id: ByteString = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            // MQTT 3.1.1 §3.1.3.1: a zero-byte id needs CleanSession = 1.
            return Err(Refused(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID));
        }
        // A token bound to a client id gives that one.
        let assigned: ByteString = match grant.as_ref().and_then(|g| g.client_id.clone()) {
            Some(bound) => bound.into(),
            None => format!("aerie-{:016x}", rand::random::<u64>()).into(),
        };
        connack_props.assigned_client_identifier = Some(assigned.clone());
        assigned
    } else {
        connect.client_id.clone()
    };

    // A token's `acl` bounds what the client may publish and subscribe to;
    // its will is a publish like any other.
    let permissions = grant.as_ref().and_then(|g| {
        let acl = g.acl.as_ref()?;
        Some(Arc::new(Permissions::new(acl, &client_id, &g.sub)))
    });
    if let (Some(p), Some(will)) = (&permissions, &connect.will)
        && !p.may_publish(&will.topic)
    {
        metrics::counter!(crate::auth::ACL_DENIED_TOTAL, "action" => "will").increment(1);
        return Err(Refused(ReasonCode::NOT_AUTHORIZED));
    }

    let requested_expiry = match connect.protocol {
        // 3.1.1: CleanSession = 0 means the session lives until a clean connect.
        ProtocolVersion::V311 if !connect.clean_start => u32::MAX,
        ProtocolVersion::V311 => 0,
        ProtocolVersion::V5 => props.session_expiry_interval.unwrap_or(0),
    };
    if v5 && requested_expiry > limits.session_expiry_max {
        tenant.quota().refused(aerie_core::Limit::SessionExpiry);
    }
    let session_expiry = requested_expiry
        .min(broker.config().max_session_expiry)
        .min(limits.session_expiry_max);
    if v5 && session_expiry != requested_expiry {
        connack_props.session_expiry_interval = Some(session_expiry);
    }

    let mut keep_alive = connect.keep_alive;
    if config.max_keep_alive > 0 && (keep_alive == 0 || keep_alive > config.max_keep_alive) {
        keep_alive = config.max_keep_alive;
        if v5 {
            connack_props.server_keep_alive = Some(keep_alive);
        }
    }

    // Before the session is touched: a refused CONNECT takes nothing over.
    let takeover = tenant.session(&client_id).is_some_and(|s| s.is_attached());
    let slot = crate::limits::admit_connection(config.connections.as_ref(), &tenant, takeover)
        .await
        .map_err(Refused)?;
    let attachment = tenant
        .attach_with_will(
            &client_id,
            connect.clean_start,
            session_expiry,
            connection_id,
            connect.will.as_ref(),
        )
        .await
        .map_err(Refused)?;

    if v5 {
        connack_props.receive_maximum = Some(config.receive_maximum.min(limits.inflight));
        connack_props.maximum_packet_size =
            Some(config.max_packet_size.min(limits.max_packet_size));
        connack_props.topic_alias_maximum = Some(config.topic_alias_maximum);
        connack_props.retain_available = Some(1);
        connack_props.wildcard_subscription_available = Some(1);
        connack_props.subscription_identifiers_available = Some(1);
        connack_props.shared_subscription_available = Some(1);
        if jwt_auth_method {
            connack_props.authentication_method = Some(crate::auth::JWT_AUTH_METHOD.into());
        }
    }
    let credential = grant.as_ref().map(Credential::of);

    Ok(Accepted {
        connack: ConnAck {
            // 3.1.1 §3.2.2.2 and 5.0 §3.2.2.1.1: never "present" after a clean start.
            session_present: attachment.session_present && !connect.clean_start,
            reason: ReasonCode::SUCCESS,
            properties: connack_props,
        },
        tenant,
        permissions,
        credential,
        jwt_auth_method,
        attachment,
        keep_alive,
        session_expiry,
        client_receive_maximum: props
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(config.max_inflight.max(1))
            .min(limits.inflight.max(1)),
        client_max_packet_size: props.maximum_packet_size.unwrap_or(u32::MAX),
        client_topic_alias_maximum: props.topic_alias_maximum.unwrap_or(0),
        slot,
    })
}
