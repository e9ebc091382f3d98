output "namespace" {
  value = kubernetes_namespace_v1.aerie.metadata[0].name
}

output "api_url_in_cluster" {
  description = "The control plane inside the cluster (the aerie provider's `endpoint` from there; expose it with your ingress)."
  value       = "http://${module.control.service_name}.${var.namespace}.svc:8080"
}

output "gateway_service" {
  description = "The gateways' Service (MQTT 1883, WebSocket 8083 at /mqtt)."
  value       = module.gateway.service_name
}

output "nats_url" {
  value = local.nats
}
