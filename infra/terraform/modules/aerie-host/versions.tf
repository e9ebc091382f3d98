terraform {
  # terraform_data (1.4) and nothing else: no provider to download.
  required_version = ">= 1.4"
}
