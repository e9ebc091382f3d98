# The configuration the terraform test suites (*.tftest.hcl) apply: a tenant
# with an API key, a device token, an issuer of each kind, and the data
# sources. The provider reads AERIE_ENDPOINT and AERIE_TOKEN.
terraform {
  required_providers {
    aerie = { source = "aerie/aerie" }
  }
}

variable "tenant_name" {
  type    = string
  default = "greenhouse"
}

variable "key_name" {
  type    = string
  default = "ops"
}

variable "client_id" {
  type    = string
  default = "sensor-1"
}

variable "with_token" {
  type    = bool
  default = true
}

variable "issuer_pem" {
  description = "An Ed25519 public key PEM (the test makes one)."
  type        = string
}

variable "issuer_jwks" {
  description = "A JWK set of one public key, as JSON text (the test makes one)."
  type        = string
}

resource "aerie_tenant" "plant" {
  name = var.tenant_name
}

resource "aerie_api_key" "ops" {
  tenant_id = aerie_tenant.plant.id
  name      = var.key_name
}

resource "aerie_token" "device" {
  count       = var.with_token ? 1 : 0
  tenant_id   = aerie_tenant.plant.id
  client_id   = var.client_id
  pub         = ["plant/$${client_id}/#"]
  sub         = ["plant/commands/#"]
  ttl_seconds = 600
}

resource "aerie_issuer" "pem" {
  tenant_id      = aerie_tenant.plant.id
  issuer         = "https://auth.example.com/"
  public_key_pem = var.issuer_pem
}

resource "aerie_issuer" "jwks" {
  tenant_id = aerie_tenant.plant.id
  issuer    = "https://idp.example.com/"
  jwks      = var.issuer_jwks
}

resource "aerie_issuer" "url" {
  tenant_id = aerie_tenant.plant.id
  issuer    = "https://sso.example.com/"
  jwks_url  = "https://sso.example.com/.well-known/jwks.json"
}

data "aerie_tenant" "by_id" {
  id = aerie_tenant.plant.id
}

data "aerie_tenant" "by_name" {
  name = aerie_tenant.plant.name
}

data "aerie_jwks" "control" {}

output "tenant_id" {
  value = aerie_tenant.plant.id
}

output "key_id" {
  value = aerie_api_key.ops.id
}

output "key" {
  value     = aerie_api_key.ops.key
  sensitive = true
}

output "token_jti" {
  value = one(aerie_token.device[*].jti)
}

output "token" {
  value     = one(aerie_token.device[*].token)
  sensitive = true
}

output "issuer_ids" {
  value = [aerie_issuer.pem.id, aerie_issuer.jwks.id, aerie_issuer.url.id]
}
