variable "name" {
  description = "The component: control or gateway (names the resources aerie-<name>)."
  type        = string
}

variable "namespace" {
  type = string
}

variable "image" {
  description = "The aerie image with its tag or digest."
  type        = string
}

variable "args" {
  description = "The aerie subcommand, e.g. [\"gateway\"]."
  type        = list(string)
}

variable "env" {
  description = "AERIE_* settings in the pod spec: nothing secret (see secret_env_from)."
  type        = map(string)
  default     = {}
}

variable "secret_env_from" {
  description = "A Secret whose keys become environment variables (the secret settings)."
  type        = string
  default     = null
}

variable "node_id_from_pod_name" {
  description = "Set AERIE_NODE_ID to the pod's name (gateways: their name among the others)."
  type        = bool
  default     = false
}

variable "ports" {
  description = "Container ports by name; `http` (/healthz, /readyz, /metrics) is required."
  type        = map(number)

  validation {
    condition     = contains(keys(var.ports), "http")
    error_message = "The probes and Prometheus use the port named http."
  }
}

variable "service_ports" {
  description = "Which of the ports the Service exposes."
  type        = list(string)
}

variable "service_type" {
  type    = string
  default = "ClusterIP"
}

variable "resources" {
  description = "Requests and limits of the container (the autoscaler measures CPU against the request)."
  type = object({
    requests = object({ cpu = string, memory = string })
    limits   = object({ cpu = string, memory = string })
  })
}

variable "min_replicas" {
  type = number
}

variable "max_replicas" {
  type = number
}

variable "target_cpu_percent" {
  description = "Average CPU use (of the request) the autoscaler aims at."
  type        = number
  default     = 70
}
