# Ten tenants, then a token of each: Terraform applies ten at a time.
terraform {
  required_providers {
    aerie = { source = "aerie/aerie" }
  }
}

resource "aerie_tenant" "fleet" {
  count = 10
  name  = "fleet-${count.index}"
}

resource "aerie_token" "fleet" {
  count     = 10
  tenant_id = aerie_tenant.fleet[count.index].id
  client_id = "device-${count.index}"
}
