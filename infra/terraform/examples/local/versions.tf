terraform {
  required_version = ">= 1.4"
  required_providers {
    # From the filesystem mirror of `make terraform-mirror` (README,
    # "Deploying with Terraform"): no registry needed.
    aerie = {
      source  = "aerie/aerie"
      version = ">= 0.1.0"
    }
  }
}
