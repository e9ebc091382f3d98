# `aerie serve` on the host that runs Terraform: started in the background by
# a local-exec provisioner, checked at /readyz, stopped (by its pid file) by a
# destroy-time provisioner. Only Terraform's built-in terraform_data is used,
# so nothing has to be downloaded.

locals {
  listen = {
    AERIE_MQTT     = "${var.listen_host}:${var.mqtt_port}"
    AERIE_WS       = "${var.listen_host}:${var.ws_port}"
    AERIE_HTTP     = "${var.listen_host}:${var.http_port}"
    AERIE_DATA_DIR = var.data_dir
    # What tenants are shown: the advertised host, not the bind address.
    AERIE_PUBLIC_MQTT = "mqtt://${var.advertised_host}:${var.mqtt_port}"
    AERIE_PUBLIC_WS   = "ws://${var.advertised_host}:${var.ws_port}/mqtt"
  }
  # The readiness probe goes to loopback when the listener binds every interface.
  probe_host = contains(["0.0.0.0", "::", "[::]"], var.listen_host) ? "127.0.0.1" : var.listen_host
  pid_file   = "${var.data_dir}/aerie.pid"
  log_file   = "${var.data_dir}/aerie.log"
}

# The bootstrap account's key: the variable, else made once (two random
# UUIDs, 244 random bits) and kept in the state, so the provider can sign in
# before any person has signed up.
resource "terraform_data" "account_key" {
  input = sensitive(coalesce(
    var.bootstrap_account_key,
    "aerie_acct_${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}",
  ))

  lifecycle {
    # uuid() is new at every plan: keep the first.
    ignore_changes = [input]
  }
}

resource "terraform_data" "server" {
  # A change of any setting stops the server and starts it again.
  triggers_replace = [var.binary, local.listen, var.environment, var.bootstrap_account_email]

  # What the destroy-time provisioner may read (it sees only `self`).
  input = {
    pid_file = local.pid_file
    server   = "${path.module}/server.sh"
  }

  provisioner "local-exec" {
    command = "${path.module}/server.sh start"
    environment = merge(var.environment, local.listen, {
      AERIE_BOOTSTRAP_ACCOUNT     = var.bootstrap_account_email
      AERIE_BOOTSTRAP_ACCOUNT_KEY = terraform_data.account_key.output
      AERIE_HOST_BINARY           = var.binary
      AERIE_HOST_PID_FILE         = local.pid_file
      AERIE_HOST_LOG_FILE         = local.log_file
      AERIE_HOST_READYZ           = "http://${local.probe_host}:${var.http_port}/readyz"
      AERIE_HOST_TIMEOUT          = tostring(var.readiness_timeout_seconds)
    })
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "${self.output.server} stop"
    environment = { AERIE_HOST_PID_FILE = self.output.pid_file }
  }
}
