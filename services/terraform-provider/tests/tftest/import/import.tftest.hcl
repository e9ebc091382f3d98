# Import by id: a tenant (<tenant_id>), an API key and an issuer
# (<tenant_id>/<id>). The Rust test passes the ids of what it made.

run "import_a_tenant_its_key_and_its_issuer" {
  assert {
    condition     = aerie_tenant.legacy.id == var.tenant_id && aerie_tenant.legacy.name == "legacy"
    error_message = "the tenant is imported by its id"
  }
  assert {
    condition     = aerie_api_key.legacy.id == var.key_id && aerie_api_key.legacy.key == null
    error_message = "the API key is imported, without its secret (the API shows it only at creation)"
  }
  assert {
    condition     = aerie_issuer.legacy.id == var.issuer_id && aerie_issuer.legacy.kind == "public_key"
    error_message = "the issuer is imported"
  }
}
