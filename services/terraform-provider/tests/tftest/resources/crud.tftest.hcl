# Create, read, update in place, replace and delete every resource; the data
# sources. `terraform test` destroys what is left at the end, and the Rust
# test then finds the account empty.

run "create" {
  assert {
    condition     = aerie_tenant.plant.name == "greenhouse" && aerie_tenant.plant.plan == "free"
    error_message = "the tenant is created as configured, on the free plan"
  }
  assert {
    condition     = length(aerie_tenant.plant.id) == 10 && length(aerie_tenant.plant.limits) > 0
    error_message = "the tenant has an id of 10 characters and its limits"
  }
  assert {
    condition     = startswith(nonsensitive(aerie_api_key.ops.key), "aerie_") && aerie_api_key.ops.name == "ops"
    error_message = "the API key's secret is in the state after its creation"
  }
  assert {
    condition     = length(aerie_token.device) == 1 && length(aerie_token.device[0].jti) > 0
    error_message = "the token is minted with a jti"
  }
  assert {
    condition     = length(split(".", nonsensitive(aerie_token.device[0].token))) == 3
    error_message = "the token is a JWT"
  }
  assert {
    condition     = [aerie_issuer.pem.kind, aerie_issuer.jwks.kind, aerie_issuer.url.kind] == ["public_key", "jwks", "jwks_url"]
    error_message = "one issuer of each kind"
  }
  assert {
    condition     = data.aerie_tenant.by_id.name == "greenhouse" && data.aerie_tenant.by_name.id == aerie_tenant.plant.id
    error_message = "the tenant data source finds the tenant by id and by name"
  }
  assert {
    condition     = data.aerie_tenant.by_id.limits == aerie_tenant.plant.limits && data.aerie_tenant.by_name.plan == "free"
    error_message = "the tenant data source has the plan and limits"
  }
  assert {
    condition     = startswith(aerie_tenant.plant.endpoints["mqtt"], "mqtt://") && startswith(aerie_tenant.plant.endpoints["ws"], "ws://")
    error_message = "the tenant has its MQTT and WebSocket endpoints"
  }
  assert {
    condition     = data.aerie_tenant.by_name.endpoints == aerie_tenant.plant.endpoints
    error_message = "the tenant data source has the endpoints"
  }
  assert {
    condition     = length(data.aerie_jwks.control.key_ids) >= 1 && jsondecode(data.aerie_jwks.control.json).keys[0].kid == data.aerie_jwks.control.key_ids[0]
    error_message = "the JWKS data source has the control plane's keys"
  }
}

run "rename_the_tenant_in_place" {
  variables {
    tenant_name = "glasshouse"
  }
  assert {
    condition     = aerie_tenant.plant.id == run.create.tenant_id && aerie_tenant.plant.name == "glasshouse"
    error_message = "a rename keeps the tenant's id"
  }
  assert {
    condition     = aerie_api_key.ops.id == run.create.key_id && aerie_token.device[0].jti == run.create.token_jti
    error_message = "nothing that depends on the tenant is replaced by a rename"
  }
  assert {
    condition     = aerie_issuer.pem.id == run.create.issuer_ids[0] && data.aerie_tenant.by_name.id == run.create.tenant_id
    error_message = "the issuers stay, and the new name finds the tenant"
  }
}

run "a_new_key_name_replaces_the_key" {
  variables {
    tenant_name = "glasshouse"
    key_name    = "ops-2"
  }
  assert {
    condition     = aerie_api_key.ops.id != run.create.key_id && aerie_api_key.ops.name == "ops-2"
    error_message = "the API key is replaced"
  }
  assert {
    condition     = nonsensitive(aerie_api_key.ops.key != run.create.key)
    error_message = "the new key has a new secret"
  }
}

run "a_new_client_id_replaces_the_token" {
  variables {
    tenant_name = "glasshouse"
    key_name    = "ops-2"
    client_id   = "sensor-2"
  }
  assert {
    condition     = aerie_token.device[0].jti != run.create.token_jti && aerie_token.device[0].client_id == "sensor-2"
    error_message = "the token is replaced"
  }
}

run "removing_the_token_destroys_it" {
  variables {
    tenant_name = "glasshouse"
    key_name    = "ops-2"
    with_token  = false
  }
  assert {
    condition     = length(aerie_token.device) == 0 && output.token_jti == null
    error_message = "the token is gone from the state"
  }
}
