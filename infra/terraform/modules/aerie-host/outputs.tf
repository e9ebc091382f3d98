# Every output refers to terraform_data.server, so whatever uses one (the
# aerie provider block) waits for the server to be ready.

output "endpoints" {
  description = "Where the server is reached: `api` (the control plane's base URL, the aerie provider's `endpoint`; the REST API is under /v1), `mqtt`, `ws`, and `mqtt_host` / `mqtt_port` (mosquitto_pub -h / -p)."
  value = {
    api       = "http://${var.advertised_host}:${var.http_port}"
    mqtt      = "mqtt://${var.advertised_host}:${var.mqtt_port}"
    ws        = "ws://${var.advertised_host}:${var.ws_port}/mqtt"
    mqtt_host = var.advertised_host
    mqtt_port = var.mqtt_port
  }
  depends_on = [terraform_data.server]
}

output "account_email" {
  description = "The bootstrap account's email."
  value       = var.bootstrap_account_email
  depends_on  = [terraform_data.server]
}

output "account_api_key" {
  description = "The bootstrap account's API key: the aerie provider's `token`."
  value       = terraform_data.account_key.output
  sensitive   = true
  depends_on  = [terraform_data.server]
}

output "files" {
  description = "The server's `pid` file (removed when it is stopped) and `log` (its stdout and stderr)."
  value       = { pid = local.pid_file, log = local.log_file }
  depends_on  = [terraform_data.server]
}
