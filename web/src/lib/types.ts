// The shapes of the public REST API v1 (see /v1/openapi.json).

/** Where a tenant's clients connect: only what the server serves (no TLS ones without TLS). */
export interface Endpoints {
  mqtt: string;
  mqtts?: string;
  ws: string;
  wss?: string;
}

export interface Limits {
  connections: number;
  publish_rate_msgs: number;
  publish_rate_bytes: number;
  client_publish_rate_msgs: number;
  client_publish_rate_bytes: number;
  connect_rate: number;
  max_packet_size: number;
  subscriptions_per_client: number;
  retained_messages: number;
  retained_bytes: number;
  session_expiry_max: number;
  queued_messages: number;
  inflight: number;
  message_log_max_age: number;
  message_log_max_bytes: number;
}

export interface Tenant {
  id: string;
  name: string;
  plan: string;
  limits: Limits;
  status: string;
  created_at: string;
  endpoints: Endpoints;
}

export interface ApiKey {
  id: string;
  name: string;
  created_at: string;
  /** Only in the answer to a create: shown once. */
  key?: string;
}

export interface Minted {
  token: string;
  jti: string;
  expires_at: string;
}

export interface TokenInfo {
  jti: string;
  subject: string;
  issued_at: string;
  expires_at: string;
  revoked: boolean;
}

export interface Issuer {
  id: string;
  issuer: string;
  kind: string;
  jwks_url?: string;
  key_ids: string[];
  created_at: string;
}

export interface ClientInfo {
  client_id: string;
  protocol: '3.1.1' | '5.0';
  transport: 'tcp' | 'tls' | 'ws' | 'wss';
  connected_at: string;
  subscriptions: string[];
}

export interface UsageCounters {
  connection_minutes: number;
  messages_in: number;
  messages_out: number;
  bytes_in: number;
  bytes_out: number;
}

export interface UsageHour extends UsageCounters {
  hour: string;
}

export interface UsageReport {
  from: string;
  to: string;
  hours: UsageHour[];
  totals: UsageCounters;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
}
