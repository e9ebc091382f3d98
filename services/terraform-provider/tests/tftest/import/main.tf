# Imports a tenant, one of its API keys and one of its issuers made outside
# Terraform (the Rust test makes them and passes their ids).
terraform {
  required_providers {
    aerie = { source = "aerie/aerie" }
  }
}

variable "tenant_id" {
  type = string
}

variable "key_id" {
  type = string
}

variable "issuer_id" {
  type = string
}

variable "issuer_pem" {
  type = string
}

import {
  to = aerie_tenant.legacy
  id = var.tenant_id
}

import {
  to = aerie_api_key.legacy
  id = "${var.tenant_id}/${var.key_id}"
}

import {
  to = aerie_issuer.legacy
  id = "${var.tenant_id}/${var.issuer_id}"
}

resource "aerie_tenant" "legacy" {
  name = "legacy"
}

resource "aerie_api_key" "legacy" {
  tenant_id = aerie_tenant.legacy.id
  name      = "legacy-key"
}

resource "aerie_issuer" "legacy" {
  tenant_id      = aerie_tenant.legacy.id
  issuer         = "https://legacy.example.com/"
  public_key_pem = var.issuer_pem
}
