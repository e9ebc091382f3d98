# Terraform's default parallelism (10 operations at once) against one
# provider process and one control plane.

run "ten_tenants_and_ten_tokens_at_once" {
  assert {
    condition     = length(distinct(aerie_tenant.fleet[*].id)) == 10
    error_message = "ten tenants, each with its own id"
  }
  assert {
    condition     = aerie_tenant.fleet[*].name == [for i in range(10) : "fleet-${i}"]
    error_message = "each tenant has its name"
  }
  assert {
    condition     = length(distinct(aerie_token.fleet[*].jti)) == 10
    error_message = "ten tokens"
  }
}
