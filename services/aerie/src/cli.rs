//! Command-line flags. Every flag is also an `AERIE_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use aerie_control::login_backoff::BackoffPolicy;
use aerie_control::ratelimit::RateLimit;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "aerie",
    version,
    about = "Aerie: a multi-tenant MQTT 3.1.1 and 5.0 broker service"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "AERIE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole service in one process (embedded shape).
    Serve(Box<ServeArgs>),
    /// Run only the control plane (REST API v1) on its own HTTP address (scale-out shape).
    Control(Box<ControlArgs>),
    /// Run an MQTT gateway of the scale-out shape: the control plane's facts
    /// from NATS, no data dir, no database.
    Gateway(Box<GatewayArgs>),
    /// Token signing keys of the control plane.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Load-test Aerie (and Mosquitto with --compare-mosquitto): one table with ratios.
    Bench(BenchArgs),
    /// Apply the control-plane database migrations (`serve` and `control` also do at start).
    Migrate(DbArgs),
    /// Mint or revoke device tokens (local data dir, or --url with an API key).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Operator view of tenants: list, limits, suspend (local data dir, or --url).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// An account's own credentials (local data dir, or --url with a log-in).
    #[command(subcommand)]
    Account(AccountCommand),
}

/// The control-plane database: `<data-dir>/control.db`, or --database-url.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Where the embedded shape keeps control.db and secret.key.
    #[arg(long, env = "AERIE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Control-plane database instead of <data-dir>/control.db: postgres://… or sqlite://PATH?mode=rwc.
    #[arg(long, env = "AERIE_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Where `token` and `tenant` act: the database directly (the default), or a
/// running control plane at --url.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Call the control plane at this URL (e.g. http://127.0.0.1:8080)
    /// instead of opening the database.
    #[arg(long, env = "AERIE_URL")]
    pub url: Option<String>,
    /// With --url: a tenant API key (aerie_…).
    #[arg(long, env = "AERIE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the JSON answer instead of the short form.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Mint a token; prints only the token (or the JSON with --json).
    Mint(TokenMintArgs),
    /// Revoke a token by its jti.
    Revoke(TokenRevokeArgs),
}

#[derive(Args, Debug, Clone)]
pub struct TokenMintArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Locally: the secret key that opens the signing keys (default <data-dir>/secret.key).
    #[command(flatten)]
    pub secret: SecretKeyArgs,
    /// Locally: the `iss` of the token; give the same as `serve --issuer`.
    #[arg(long, env = "AERIE_ISSUER", default_value = "http://127.0.0.1:8080")]
    pub issuer: String,
    #[arg(long)]
    pub tenant: String,
    /// The MQTT client id the token is for (also its `sub`).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Topic filter the token may publish to (repeat; placeholders ${client_id}, ${sub}).
    #[arg(long = "pub", value_name = "FILTER")]
    pub publish: Vec<String>,
    /// Topic filter the token may subscribe to (repeat).
    #[arg(long = "sub", value_name = "FILTER")]
    pub subscribe: Vec<String>,
    /// Lifetime in seconds (60 to 2592000; default 3600).
    #[arg(long)]
    pub ttl: Option<i64>,
}

#[derive(Args, Debug, Clone)]
pub struct TokenRevokeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long)]
    pub tenant: String,
    /// A jti is random base64url: one in 64 begins with '-', which is
    /// still the jti here, not an option.
    #[arg(allow_hyphen_values = true)]
    pub jti: String,
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Account API keys: for machines acting as the account (Terraform, CI).
    #[command(subcommand, name = "api-key")]
    ApiKey(AccountApiKeyCommand),
}

#[derive(Subcommand, Debug)]
pub enum AccountApiKeyCommand {
    /// Create a key; prints only the key (or the JSON with --json). Shown once.
    Create(AccountKeyCreateArgs),
    /// The account's keys (never their secrets).
    List(AccountArgs),
    /// Delete a key: requests with it get 401 from now on.
    Delete(AccountKeyDeleteArgs),
}

/// Which account, and where: the database directly (the default), or a
/// running control plane at --url with that account's log-in.
#[derive(Args, Debug, Clone)]
pub struct AccountArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Call the control plane at this URL (e.g. http://127.0.0.1:8080)
    /// instead of opening the database.
    #[arg(long, env = "AERIE_URL")]
    pub url: Option<String>,
    /// The account's email. With --url it logs in: the password comes from
    /// AERIE_PASSWORD, else the first line of stdin.
    #[arg(long, env = "AERIE_EMAIL", required_unless_present = "session_token")]
    pub email: Option<String>,
    /// With --url: a session token of the account instead of a log-in
    /// (an API key cannot manage account API keys).
    #[arg(
        long,
        env = "AERIE_SESSION_TOKEN",
        hide_env_values = true,
        requires = "url"
    )]
    pub session_token: Option<String>,
    /// Print the JSON answer instead of the short form.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AccountKeyCreateArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    /// What the key is for (1 to 100 characters), e.g. "terraform".
    #[arg(long)]
    pub name: String,
}

#[derive(Args, Debug, Clone)]
pub struct AccountKeyDeleteArgs {
    #[command(flatten)]
    pub account: AccountArgs,
    /// The key's id (from `list`).
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Every tenant (locally or with --admin-token), or the API key's tenant.
    List(TenantAdminArgs),
    /// One tenant.
    Get(TenantIdArgs),
    /// Change some of a tenant's limits (the others stay).
    SetLimits(TenantSetLimitsArgs),
    /// Mark a tenant suspended.
    Suspend(TenantIdArgs),
    /// Mark a suspended tenant active again.
    Resume(TenantIdArgs),
}

#[derive(Args, Debug, Clone)]
pub struct TenantAdminArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// With --url: the operator's admin token (the admin routes).
    #[arg(long, env = "AERIE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TenantIdArgs {
    #[command(flatten)]
    pub admin: TenantAdminArgs,
    pub tenant: String,
}

/// The limits to change; field names as in the tenant object's `limits`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct LimitArgs {
    #[arg(long)]
    pub connections: Option<i64>,
    #[arg(long)]
    pub publish_rate_msgs: Option<i64>,
    #[arg(long)]
    pub publish_rate_bytes: Option<i64>,
    #[arg(long)]
    pub client_publish_rate_msgs: Option<i64>,
    #[arg(long)]
    pub client_publish_rate_bytes: Option<i64>,
    #[arg(long)]
    pub connect_rate: Option<i64>,
    #[arg(long)]
    pub max_packet_size: Option<i64>,
    #[arg(long)]
    pub subscriptions_per_client: Option<i64>,
    #[arg(long)]
    pub retained_messages: Option<i64>,
    #[arg(long)]
    pub retained_bytes: Option<i64>,
    #[arg(long)]
    pub session_expiry_max: Option<i64>,
    #[arg(long)]
    pub queued_messages: Option<i64>,
    #[arg(long)]
    pub inflight: Option<i64>,
    /// Seconds the tenant's message log keeps a QoS 1/2 message (scale-out).
    #[arg(long)]
    pub message_log_max_age: Option<i64>,
    /// Bytes the tenant's message log keeps (scale-out).
    #[arg(long)]
    pub message_log_max_bytes: Option<i64>,
}

#[derive(Args, Debug, Clone)]
pub struct TenantSetLimitsArgs {
    #[command(flatten)]
    pub id: TenantIdArgs,
    /// Boxed: fifteen `Option<i64>`s would make every `TenantCommand` large.
    #[command(flatten)]
    pub limits: Box<LimitArgs>,
}

/// The operator credential of the admin routes (`/v1/admin`).
#[derive(Args, Debug, Clone)]
pub struct AdminTokenArgs {
    /// File holding the admin token (32 characters or more) that opens
    /// /v1/admin; without it (or AERIE_ADMIN_TOKEN) the admin routes are off.
    #[arg(long, env = "AERIE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The admin token itself (prefer the variable AERIE_ADMIN_TOKEN or the
    /// file: flags show in `ps`); --admin-token-file wins.
    #[arg(long, env = "AERIE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// A first account and its account API key, chosen by whoever starts the
/// server: for tools (Terraform's aerie-host module) that start it and then
/// provision through its API, with no person to sign up in between.
#[derive(Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// Make sure this email has an account (made without a usable password
    /// when new) holding the key of --bootstrap-account-key-file or
    /// AERIE_BOOTSTRAP_ACCOUNT_KEY; the same settings at the next start
    /// change nothing.
    #[arg(long, env = "AERIE_BOOTSTRAP_ACCOUNT")]
    pub bootstrap_account: Option<String>,
    /// File holding the bootstrap account's API key: aerie_acct_ and at
    /// least 32 random letters and digits.
    #[arg(long, env = "AERIE_BOOTSTRAP_ACCOUNT_KEY_FILE")]
    pub bootstrap_account_key_file: Option<PathBuf>,
    /// The key itself (prefer the variable AERIE_BOOTSTRAP_ACCOUNT_KEY or the
    /// file: flags show in `ps`); --bootstrap-account-key-file wins.
    #[arg(long, env = "AERIE_BOOTSTRAP_ACCOUNT_KEY", hide_env_values = true)]
    pub bootstrap_account_key: Option<String>,
}

impl BootstrapArgs {
    /// (email, key) when a bootstrap account is asked for; one without the
    /// other is an error.
    pub fn resolve(&self) -> anyhow::Result<Option<(String, String)>> {
        let key = match (&self.bootstrap_account_key_file, &self.bootstrap_account_key) {
            (Some(path), _) => Some(std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the bootstrap account key file {} (--bootstrap-account-key-file): {e}",
                    path.display()
                )
            })?),
            (None, key) => key.clone(),
        };
        match (&self.bootstrap_account, key) {
            (Some(email), Some(key)) => Ok(Some((email.clone(), key))),
            (None, None) => Ok(None),
            (Some(_), None) => anyhow::bail!(
                "--bootstrap-account needs its key: --bootstrap-account-key-file or AERIE_BOOTSTRAP_ACCOUNT_KEY"
            ),
            (None, Some(_)) => anyhow::bail!(
                "a bootstrap account key is given without --bootstrap-account (the account's email)"
            ),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a new active signing key; the old one keeps verifying its tokens
    /// (it stays in /.well-known/jwks.json for the longest token lifetime).
    Rotate(KeysArgs),
}

#[derive(Args, Debug, Clone)]
pub struct KeysArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub secret: SecretKeyArgs,
}

/// The key-encryption key of the token signing keys.
#[derive(Args, Debug, Clone)]
pub struct SecretKeyArgs {
    /// File holding the 32-byte key (hex or base64) that encrypts the token
    /// signing keys at rest. Default for `serve`: <data-dir>/secret.key, generated once.
    #[arg(long, env = "AERIE_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The same key given directly (hex or base64); --secret-key-file wins.
    #[arg(long, env = "AERIE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
}

impl SecretKeyArgs {
    /// The key from the flags, else from `default_file` (generated there when
    /// it does not exist; pass None where generating would be wrong).
    pub fn resolve(
        &self,
        default_file: Option<&std::path::Path>,
    ) -> anyhow::Result<aerie_control::keys::Kek> {
        aerie_control::keys::Kek::resolve(
            self.secret_key_file.as_deref(),
            self.secret_key.as_deref(),
            default_file,
        )
    }
}

/// Rate limits on sign-up and log-in (POST /v1/accounts, /v1/sessions).
#[derive(Args, Debug, Clone)]
pub struct AuthRateArgs {
    /// Sign-up and log-in attempts per minute from one client IP (IPv6: per /64).
    #[arg(long, env = "AERIE_AUTH_RATE_PER_IP", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_rate_per_ip: u32,
    /// Attempts one client IP may make at once before the per-minute rate applies.
    #[arg(long, env = "AERIE_AUTH_BURST_PER_IP", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_burst_per_ip: u32,
    /// Failed log-ins for one email (whether or not it has an account) before it
    /// is backed off: 30 s, doubling per further failure up to 15 min, and only
    /// for the addresses that failed (the owner's correct password from another
    /// address still passes).
    #[arg(long, env = "AERIE_AUTH_FAILURES_PER_EMAIL", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failures_per_email: u32,
}

impl AuthRateArgs {
    /// (per IP, per email).
    pub fn limits(&self) -> (RateLimit, BackoffPolicy) {
        let limit = |rate, burst| RateLimit::per_minute(rate, burst).expect("flags are at least 1");
        (
            limit(self.auth_rate_per_ip, self.auth_burst_per_ip),
            BackoffPolicy::with_free_failures(self.auth_failures_per_email)
                .expect("the flag is at least 1"),
        )
    }
}

impl AdminTokenArgs {
    /// The admin token from the file or the variable; `None` when neither is
    /// given. A token shorter than 32 characters is an error (one line).
    pub fn resolve(&self) -> anyhow::Result<Option<aerie_control::api::admin::AdminToken>> {
        use aerie_control::api::admin::AdminToken;
        let (text, source) = match (&self.admin_token_file, &self.admin_token) {
            (Some(path), _) => (
                std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the admin token file {} (--admin-token-file): {e}",
                        path.display()
                    )
                })?,
                "--admin-token-file",
            ),
            (None, Some(token)) => (token.clone(), "AERIE_ADMIN_TOKEN"),
            (None, None) => return Ok(None),
        };
        AdminToken::new(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{e} ({source})"))
    }
}

/// The embedded shape's control-plane database: SQLite in the data dir.
pub fn embedded_control_db(data_dir: &std::path::Path, mode: &str) -> String {
    format!(
        "sqlite://{}?mode={mode}",
        data_dir.join("control.db").display()
    )
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Run the same scenarios against Mosquitto too (if installed).
    #[arg(long)]
    pub compare_mosquitto: bool,
    /// Seconds measured per scenario (default 5, after a 1 s warm-up); minutes for the soak (default 10).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Scenarios to run (default: all but soak): fan-in-qos0 fan-in-qos1 fan-in-qos1-persistent
    /// fan-out latency idle-10k idle-50k; or soak alone (mixed load, RSS/fds/threads over time).
    #[arg(long, num_args = 1..)]
    pub scenario: Vec<aerie_bench::Scenario>,
    /// The soak's length in seconds instead of --duration minutes (quick checks).
    #[arg(long, hide = true)]
    pub soak_seconds: Option<u64>,
    /// Measure a broker already listening at ADDR instead of starting any.
    #[arg(long, value_name = "ADDR", conflicts_with = "compare_mosquitto")]
    pub broker_only: Option<SocketAddr>,
    /// Leave out the column of Aerie with JWT authentication and 100 tenants.
    #[arg(long)]
    pub no_tenants: bool,
    /// Add a column for the scale-out shape: nats-server (`make test-deps`),
    /// `aerie control --nats` and two `aerie gateway`s, publishers on one
    /// gateway and subscribers on the other (fan-in, fan-out, latency).
    #[arg(long, conflicts_with = "broker_only")]
    pub cluster: bool,
}

impl BenchArgs {
    pub fn into_options(self) -> aerie_bench::Options {
        let args: Vec<String> = std::env::args().collect();
        aerie_bench::Options {
            compare_mosquitto: self.compare_mosquitto,
            duration: std::time::Duration::from_secs(self.duration.unwrap_or(5)),
            soak_duration: std::time::Duration::from_secs(
                self.soak_seconds
                    .unwrap_or(self.duration.unwrap_or(10) * 60),
            ),
            scenarios: self.scenario,
            tenancy: !self.no_tenants && self.broker_only.is_none(),
            cluster: self.cluster,
            broker_only: self.broker_only,
            command_line: args.join(" "),
            ..Default::default()
        }
    }
}

/// What the control plane shows: the web console's files, and the addresses
/// tenants are shown (tenant object `endpoints`, the console's CSP) when they
/// differ from the listen addresses: behind a load balancer, a DNS name, or a
/// listener on 0.0.0.0. Without `--public-*`, `aerie serve` shows its listen
/// addresses (the TLS ones only when it serves TLS) and `aerie control` the
/// defaults of `aerie serve` without TLS.
#[derive(Args, Debug, Clone)]
pub struct ShownArgs {
    /// The built web console served at `/` (`make web` builds it); relative
    /// to the working directory.
    #[arg(long, env = "AERIE_CONSOLE_DIR", default_value = "web/dist")]
    pub console_dir: PathBuf,
    /// MQTT address shown to tenants (default: `aerie serve`'s --mqtt, mqtt://127.0.0.1:1883).
    #[arg(long, env = "AERIE_PUBLIC_MQTT")]
    pub public_mqtt: Option<String>,
    /// MQTT over TLS address shown to tenants (default: `aerie serve`'s --mqtts when it serves TLS;
    /// none otherwise, and none for `aerie control`).
    #[arg(long, env = "AERIE_PUBLIC_MQTTS")]
    pub public_mqtts: Option<String>,
    /// MQTT over WebSocket address shown to tenants (default: `aerie serve`'s --ws and --ws-path,
    /// ws://127.0.0.1:8083/mqtt).
    #[arg(long, env = "AERIE_PUBLIC_WS")]
    pub public_ws: Option<String>,
    /// MQTT over secure WebSocket address shown to tenants (default: `aerie serve`'s --wss and
    /// --ws-path when it serves TLS; none otherwise, and none for `aerie control`).
    #[arg(long, env = "AERIE_PUBLIC_WSS")]
    pub public_wss: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// HTTP: the control plane's REST API (/v1), /healthz, /readyz, /metrics.
    #[arg(long, env = "AERIE_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Where sessions, retained messages and (by default) the control plane's
    /// SQLite database (control.db) are kept.
    #[arg(long, env = "AERIE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Control-plane database instead of <data-dir>/control.db: postgres://… or sqlite://PATH?mode=rwc.
    #[arg(long, env = "AERIE_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub secret: SecretKeyArgs,
    #[command(flatten)]
    pub auth_rate: AuthRateArgs,
    #[command(flatten)]
    pub admin: AdminTokenArgs,
    #[command(flatten)]
    pub bootstrap: BootstrapArgs,
    /// `iss` of the tokens the control plane mints (default: http://<--http>).
    #[arg(long, env = "AERIE_ISSUER")]
    pub issuer: Option<String>,
    #[command(flatten)]
    pub shown: ShownArgs,
    /// Let tenants' outbound requests (JWKS URLs) reach loopback, private,
    /// link-local and cloud-metadata addresses, refused by default
    /// (development, tests, or tenants' servers on an internal network).
    #[arg(long, env = "AERIE_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: bool,
    #[command(flatten)]
    pub mqtt: MqttArgs,
    /// Bytes of writes waiting for the disk (payloads mostly) past which
    /// clients whose acknowledgements wait for the store are not read until
    /// it catches up: the store's back-pressure.
    #[arg(long, env = "AERIE_STORE_BACKLOG_BYTES", default_value_t = aerie_store::DEFAULT_BACKLOG_PAUSE_BYTES,
          value_parser = clap::value_parser!(u64).range(64 * 1024..))]
    pub store_backlog_bytes: u64,
    #[command(flatten)]
    pub http_edge: HttpEdgeArgs,
    /// How often usage (connection time, messages and bytes per tenant) is
    /// written to the control-plane database, in seconds; also on shutdown.
    #[arg(long, env = "AERIE_USAGE_FLUSH_INTERVAL", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub usage_flush_interval: u64,
}

/// `aerie gateway`: MQTT listeners over the in-process core, the control
/// plane's facts from NATS; no data dir, no database.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// HTTP: /healthz, /readyz (NATS connected and the facts held), /metrics.
    #[arg(long, env = "AERIE_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// This gateway's name among the others (NATS connection name, logs);
    /// default: generated at start.
    #[arg(long, env = "AERIE_NODE_ID")]
    pub node_id: Option<String>,
    /// How often usage (connection time, messages and bytes per tenant) is
    /// reported to the control plane over NATS, in seconds; also on shutdown.
    #[arg(long, env = "AERIE_USAGE_REPORT_INTERVAL", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub usage_report_interval: u64,
    /// Seconds a tenant's message log (its QoS 1/2 PUBLISHes on JetStream)
    /// keeps a message; older ones are discarded.
    #[arg(long, env = "AERIE_MESSAGE_LOG_MAX_AGE", default_value_t = 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub message_log_max_age: u64,
    /// Bytes a tenant's message log keeps; past it the oldest are discarded.
    #[arg(long, env = "AERIE_MESSAGE_LOG_MAX_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub message_log_max_bytes: u64,
    #[command(flatten)]
    pub mqtt: MqttArgs,
    #[command(flatten)]
    pub http_edge: HttpEdgeArgs,
}

/// The NATS servers of the scale-out shape.
#[derive(Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URLs (nats://host:4222, tls://…): a comma list, or the
    /// flag repeated.
    #[arg(
        long = "nats",
        env = "AERIE_NATS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub nats: Vec<String>,
    /// NATS credentials file (.creds: user JWT and NKey seed).
    #[arg(long, env = "AERIE_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificates (PEM) of the NATS servers; requires TLS to NATS.
    #[arg(long, env = "AERIE_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients.
    #[arg(long, env = "AERIE_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "AERIE_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Prefix of the JetStream KV buckets (`<prefix>_facts`): several
    /// deployments can share one NATS. Letters, digits, `_` and `-`.
    #[arg(long, env = "AERIE_NATS_PREFIX", default_value = "aerie")]
    pub nats_prefix: String,
    /// Copies JetStream keeps of each bucket and stream Aerie makes (1–5);
    /// default: one per NATS server of the cluster, up to 3. Existing ones
    /// with fewer are raised.
    #[arg(long, env = "AERIE_NATS_REPLICAS", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: Option<u8>,
}

impl NatsArgs {
    /// The connection settings, named `name` in the server's monitoring.
    pub fn config(&self, name: String) -> anyhow::Result<aerie_facts::NatsConfig> {
        anyhow::ensure!(
            aerie_facts::valid_prefix(&self.nats_prefix),
            "--nats-prefix {:?} is not a valid bucket prefix (letters, digits, `_`, `-`)",
            self.nats_prefix
        );
        Ok(aerie_facts::NatsConfig {
            urls: self.nats.clone(),
            creds: self.nats_creds.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_client: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
            name,
            replicas: self.nats_replicas.map(usize::from),
        })
    }
}

/// The MQTT listeners (`aerie serve` and `aerie gateway`).
#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// MQTT over TCP.
    #[arg(long, env = "AERIE_MQTT", default_value = "127.0.0.1:1883")]
    pub mqtt: SocketAddr,
    /// MQTT over WebSocket (path --ws-path).
    #[arg(long, env = "AERIE_WS", default_value = "127.0.0.1:8083")]
    pub ws: SocketAddr,
    /// HTTP path of MQTT over WebSocket.
    #[arg(long, env = "AERIE_WS_PATH", default_value = "/mqtt")]
    pub ws_path: String,
    /// MQTT over TLS; started when --tls-cert and --tls-key are given.
    #[arg(long, env = "AERIE_MQTTS", default_value = "127.0.0.1:8883")]
    pub mqtts: SocketAddr,
    /// MQTT over secure WebSocket; started when --tls-cert and --tls-key are given.
    #[arg(long, env = "AERIE_WSS", default_value = "127.0.0.1:8084")]
    pub wss: SocketAddr,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "AERIE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "AERIE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// What MQTT clients are allowed and announced (`aerie serve` and `aerie gateway`).
#[derive(Args, Debug, Clone)]
pub struct MqttArgs {
    /// Let clients connect without credentials (development and tests only).
    #[arg(long, env = "AERIE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Largest MQTT packet accepted, in bytes (announced in CONNACK, where 0
    /// is not allowed; the protocol's own ceiling is 268,435,460).
    #[arg(long, env = "AERIE_MAX_PACKET_SIZE", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(16..=268_435_460))]
    pub max_packet_size: u32,
    /// QoS 1/2 PUBLISHes a client may have unacknowledged towards the broker
    /// (announced as Receive Maximum; exceeding it closes with 0x93).
    #[arg(long, env = "AERIE_RECEIVE_MAXIMUM", default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..))]
    pub receive_maximum: u16,
    /// MQTT connections at once over all four MQTT listeners, counted from
    /// the accept (TLS handshakes and WebSocket upgrades included); past
    /// it new connections are closed at once.
    #[arg(long, env = "AERIE_MAX_CONNECTIONS", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a TLS handshake (--mqtts, --wss) or a WebSocket upgrade
    /// request (--ws, --wss) may take before the connection is closed.
    #[arg(long, env = "AERIE_HANDSHAKE_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub handshake_timeout: u64,
    /// Seconds between each tenant's `$SYS/…` figures (0: none).
    #[arg(long, env = "AERIE_SYS_INTERVAL", default_value_t = 10)]
    pub sys_interval: u64,
    /// Upper bound on client keep alive in seconds (0: accept the client's).
    #[arg(long, env = "AERIE_MAX_KEEP_ALIVE", default_value_t = 0)]
    pub max_keep_alive: u16,
    /// QoS 1/2 messages in flight to one client before its acks are awaited.
    #[arg(long, env = "AERIE_MAX_INFLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_inflight: u16,
    /// Seconds a PUBACK/PUBREC may wait for the store to make its message
    /// durable (a failing disk); then a v5 client gets the ack with reason
    /// 0x80 and a 3.1.1 client is disconnected without it.
    #[arg(long, env = "AERIE_STORE_ACK_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub store_ack_timeout: u64,
    /// Messages kept queued per session before new ones are dropped.
    #[arg(long, env = "AERIE_MAX_QUEUED_MESSAGES", default_value_t = 10_000)]
    pub max_queued_messages: usize,
    /// Seconds a subscriber's socket may take nothing while its queue is
    /// full before it is disconnected as a slow consumer (0: never).
    #[arg(long, env = "AERIE_SLOW_CONSUMER_TIMEOUT", default_value_t = 30)]
    pub slow_consumer_timeout: u64,
    /// Ceiling on the session expiry interval clients may ask for, in seconds.
    #[arg(long, env = "AERIE_MAX_SESSION_EXPIRY", default_value_t = u32::MAX)]
    pub max_session_expiry: u32,
}

/// Bounds of the HTTP listener (--http): no client holds a connection
/// forever by sending nothing, or its headers or body slowly.
#[derive(Args, Debug, Clone)]
pub struct HttpEdgeArgs {
    /// Connections the HTTP listener serves at once; past it new ones are
    /// closed at once.
    #[arg(long, env = "AERIE_HTTP_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// Seconds a request's headers may take to arrive (also how long an idle
    /// keep-alive connection stays open).
    #[arg(long, env = "AERIE_HTTP_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub http_header_timeout: u64,
    /// Seconds a request may take, body included, before it is answered 408.
    #[arg(long, env = "AERIE_HTTP_REQUEST_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_request_timeout: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    /// HTTP: the REST API (/v1), /healthz, /readyz, /metrics.
    #[arg(long, env = "AERIE_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Control-plane database: postgres://… (or sqlite://PATH?mode=rwc); migrated at start.
    #[arg(long, env = "AERIE_DATABASE_URL")]
    pub database_url: String,
    /// Required here (no data dir): --secret-key-file or AERIE_SECRET_KEY.
    #[command(flatten)]
    pub secret: SecretKeyArgs,
    #[command(flatten)]
    pub auth_rate: AuthRateArgs,
    #[command(flatten)]
    pub admin: AdminTokenArgs,
    /// `iss` of the tokens the control plane mints (default: http://<--http>).
    #[arg(long, env = "AERIE_ISSUER")]
    pub issuer: Option<String>,
    #[command(flatten)]
    pub shown: ShownArgs,
    #[command(flatten)]
    pub http_edge: HttpEdgeArgs,
    /// With --nats: publish the control plane's facts (keys, tenants,
    /// issuers, revocations) there for `aerie gateway`s.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Let tenants' outbound requests (JWKS URLs) reach loopback, private,
    /// link-local and cloud-metadata addresses, refused by default
    /// (development, tests, or tenants' servers on an internal network).
    #[arg(long, env = "AERIE_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: bool,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn a_jti_that_begins_with_a_hyphen_is_revoked_not_taken_for_an_option() {
        let cli = Cli::try_parse_from(["aerie", "token", "revoke", "--tenant", "t1", "-zQ3x_k"])
            .expect("parses");
        let text = format!("{:?}", cli.command);
        assert!(text.contains("jti: \"-zQ3x_k\""), "{text}");
    }
}
