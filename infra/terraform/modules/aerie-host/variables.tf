variable "binary" {
  description = "Path of the aerie binary to run (e.g. target/debug/aerie, or /usr/local/bin/aerie)."
  type        = string
}

variable "data_dir" {
  description = "Data directory of `aerie serve` (sessions, retained messages, control.db, secret.key); also holds aerie.pid and aerie.log. Kept on destroy."
  type        = string
}

variable "listen_host" {
  description = "Address every listener binds (0.0.0.0 for all interfaces)."
  type        = string
  default     = "127.0.0.1"
}

variable "advertised_host" {
  description = "Host name or address clients use to reach this host (shown in the outputs and to tenants)."
  type        = string
  default     = "127.0.0.1"
}

variable "mqtt_port" {
  description = "MQTT over TCP."
  type        = number
  default     = 1883
}

variable "ws_port" {
  description = "MQTT over WebSocket (path /mqtt)."
  type        = number
  default     = 8083
}

variable "http_port" {
  description = "HTTP: the REST API (/v1), the console, /healthz, /readyz, /metrics."
  type        = number
  default     = 8080
}

variable "environment" {
  description = "More settings of `aerie serve`, as its AERIE_* environment variables (every flag has one: `aerie serve --help`), e.g. { AERIE_TLS_CERT = \"…\", AERIE_TLS_KEY = \"…\" }."
  type        = map(string)
  default     = {}
}

variable "bootstrap_account_email" {
  description = "Email of the account the server is started with (made without a usable password when new), whose account API key is the output account_api_key: what the aerie provider signs in with."
  type        = string
  default     = "terraform@aerie.local"
}

variable "bootstrap_account_key" {
  description = "That account's API key (aerie_acct_ and 32 or more letters and digits), taken at the first apply (a later change is ignored). Default: one generated then and kept in the state."
  type        = string
  default     = null
  sensitive   = true
}

variable "readiness_timeout_seconds" {
  description = "How long to wait for /readyz after the start before giving up (and stopping the process)."
  type        = number
  default     = 60
}
