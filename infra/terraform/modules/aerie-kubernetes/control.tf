# `aerie control`: the REST API, the console and the facts publisher; its
# state is the database's, so any number of pods serve the same.
module "control" {
  source = "./workload"

  name      = "control"
  namespace = kubernetes_namespace_v1.aerie.metadata[0].name
  image     = local.image
  args      = ["control"]
  env = {
    AERIE_HTTP          = "0.0.0.0:8080"
    AERIE_NATS          = local.nats
    AERIE_NATS_REPLICAS = tostring(var.nats_replicas)
    AERIE_ISSUER        = var.issuer
    AERIE_PUBLIC_MQTT   = var.public_mqtt
    AERIE_PUBLIC_WS     = var.public_ws
    AERIE_LOG_FORMAT    = "json"
  }
  # AERIE_DATABASE_URL and AERIE_SECRET_KEY, from the Secret only.
  secret_env_from = kubernetes_secret_v1.control.metadata[0].name
  ports           = { http = 8080 }
  service_ports   = ["http"]
  resources       = var.control_resources
  min_replicas    = var.control_min_replicas
  max_replicas    = var.control_max_replicas
}
