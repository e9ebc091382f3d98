# One `apply`: start `aerie serve` on this host (modules/aerie-host), then,
# through the aerie provider signed in with the key the server was started
# with, a tenant, an API key for it, a device token and an issuer.

module "aerie" {
  source = "../../modules/aerie-host"

  binary    = coalesce(var.aerie_binary, abspath("${path.root}/../../../../target/debug/aerie"))
  data_dir  = coalesce(var.data_dir, abspath("${path.root}/aerie-data"))
  mqtt_port = var.mqtt_port
  ws_port   = var.ws_port
  http_port = var.http_port
}

# Known only once the server runs: the provider is configured again with the
# values before anything of it is applied.
provider "aerie" {
  endpoint = module.aerie.endpoints.api
  token    = module.aerie.account_api_key
}

resource "aerie_tenant" "plant" {
  name = var.tenant_name
}

# For the tenant's own scripts and services (REST API, within its scopes).
resource "aerie_api_key" "ci" {
  tenant_id = aerie_tenant.plant.id
  name      = "ci"
}

# The device's MQTT password: bound to its client id, publishing only under
# its own topics.
resource "aerie_token" "device" {
  tenant_id   = aerie_tenant.plant.id
  client_id   = var.device_id
  pub         = ["sensors/$${client_id}/#"]
  sub         = ["commands/$${client_id}"]
  ttl_seconds = 86400
}

resource "aerie_issuer" "idp" {
  tenant_id      = aerie_tenant.plant.id
  issuer         = var.issuer
  public_key_pem = var.issuer_public_key_pem
}
