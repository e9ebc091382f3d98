variable "namespace" {
  description = "Namespace made for Aerie and its NATS."
  type        = string
  default     = "aerie"
}

variable "image" {
  description = "The aerie image (its entrypoint is the aerie binary). Pin a digest with image = \"…@sha256:…\" and image_tag = \"\"."
  type        = string
  default     = "ghcr.io/aerie/aerie"
}

variable "image_tag" {
  description = "The image's tag: a release, never latest."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = var.image_tag != "latest"
    error_message = "Pin a release tag (or a digest in image), not latest."
  }
}

variable "database_url" {
  description = "The control plane's Postgres URL (postgres://…, with its user, password and sslmode=require): kept in a Kubernetes Secret, never in the pod spec."
  type        = string
  sensitive   = true
}

variable "secret_key" {
  description = "The 32-byte key (hex or base64) that encrypts the token signing keys at rest (README, \"Control plane API\"): kept in the same Secret. Keep a copy: without it the signing keys cannot be opened."
  type        = string
  sensitive   = true
}

variable "issuer" {
  description = "`iss` of the tokens the control plane mints: its public URL, e.g. https://api.example.com."
  type        = string
}

variable "public_mqtt" {
  description = "MQTT address shown to tenants, e.g. mqtt://mqtt.example.com:1883 (the gateway Service's address)."
  type        = string
}

variable "public_ws" {
  description = "MQTT over WebSocket address shown to tenants, e.g. ws://mqtt.example.com:8083/mqtt."
  type        = string
}

variable "control_min_replicas" {
  description = "Fewest control-plane pods the autoscaler keeps (stateless: the database holds its state)."
  type        = number
  default     = 2
}

variable "control_max_replicas" {
  description = "Most control-plane pods the autoscaler makes."
  type        = number
  default     = 4
}

variable "gateway_min_replicas" {
  description = "Fewest gateway pods the autoscaler keeps."
  type        = number
  default     = 2
}

variable "gateway_max_replicas" {
  description = "Most gateway pods the autoscaler makes."
  type        = number
  default     = 10
}

variable "gateway_target_cpu_percent" {
  description = "Average CPU use (of the request) the autoscaler aims the gateways at."
  type        = number
  default     = 70
}

variable "control_resources" {
  description = "Requests and limits of a control-plane container."
  type = object({
    requests = object({ cpu = string, memory = string })
    limits   = object({ cpu = string, memory = string })
  })
  default = {
    requests = { cpu = "250m", memory = "256Mi" }
    limits   = { cpu = "1", memory = "512Mi" }
  }
}

variable "gateway_resources" {
  description = "Requests and limits of a gateway container (the autoscaler measures CPU against the request)."
  type = object({
    requests = object({ cpu = string, memory = string })
    limits   = object({ cpu = string, memory = string })
  })
  default = {
    requests = { cpu = "500m", memory = "512Mi" }
    limits   = { cpu = "2", memory = "2Gi" }
  }
}

variable "gateway_service_type" {
  description = "How clients reach the gateways: LoadBalancer, or NodePort / ClusterIP behind your own ingress."
  type        = string
  default     = "LoadBalancer"
}

variable "nats_chart_version" {
  description = "Version of the official NATS Helm chart (https://nats-io.github.io/k8s/helm/charts/)."
  type        = string
  default     = "1.2.6"
}

variable "nats_replicas" {
  description = "NATS servers (3: JetStream streams replicated R3, so losing one loses nothing)."
  type        = number
  default     = 3
}

variable "nats_storage_size" {
  description = "JetStream file storage per NATS server."
  type        = string
  default     = "10Gi"
}
