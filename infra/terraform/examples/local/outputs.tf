output "endpoints" {
  value = module.aerie.endpoints
}

output "tenant_id" {
  value = aerie_tenant.plant.id
}

output "issuer_id" {
  value = aerie_issuer.idp.id
}

output "api_key" {
  value     = aerie_api_key.ci.key
  sensitive = true
}

# `eval "$(terraform output -raw mosquitto_pub)"` publishes as the device.
output "mosquitto_pub" {
  value = join(" ", [
    "mosquitto_pub -h ${module.aerie.endpoints.mqtt_host} -p ${module.aerie.endpoints.mqtt_port}",
    "-i ${var.device_id} -u ${var.device_id} -P '${aerie_token.device.token}'",
    "-q 1 -t 'sensors/${var.device_id}/temperature' -m 21.5",
  ])
  sensitive = true
}
