# `aerie gateway`: MQTT over TCP and WebSocket, no data dir, no database
# (the control plane's facts and the sessions are in NATS), so the
# autoscaler adds and removes pods freely: clients of a stopped pod
# reconnect to another and their sessions resume there.
module "gateway" {
  source = "./workload"

  name      = "gateway"
  namespace = kubernetes_namespace_v1.aerie.metadata[0].name
  image     = local.image
  args      = ["gateway"]
  env = {
    AERIE_MQTT          = "0.0.0.0:1883"
    AERIE_WS            = "0.0.0.0:8083"
    AERIE_HTTP          = "0.0.0.0:8080"
    AERIE_NATS          = local.nats
    AERIE_NATS_REPLICAS = tostring(var.nats_replicas)
    AERIE_LOG_FORMAT    = "json"
  }
  node_id_from_pod_name = true
  ports                 = { mqtt = 1883, ws = 8083, http = 8080 }
  service_ports         = ["mqtt", "ws"]
  service_type          = var.gateway_service_type
  resources             = var.gateway_resources
  min_replicas          = var.gateway_min_replicas
  max_replicas          = var.gateway_max_replicas
  target_cpu_percent    = var.gateway_target_cpu_percent
}
