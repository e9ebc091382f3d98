variable "aerie_binary" {
  description = "The aerie binary (default: this repository's debug build, `cargo build -p aerie`)."
  type        = string
  default     = null
}

variable "data_dir" {
  description = "The server's data directory (default: aerie-data beside this file)."
  type        = string
  default     = null
}

variable "mqtt_port" {
  type    = number
  default = 1883
}

variable "ws_port" {
  type    = number
  default = 8083
}

variable "http_port" {
  type    = number
  default = 8080
}

variable "tenant_name" {
  type    = string
  default = "greenhouse"
}

variable "device_id" {
  description = "The MQTT client id the device token is bound to."
  type        = string
  default     = "sensor-1"
}

variable "issuer" {
  description = "A JWT issuer of the tenant's own (its `iss`)."
  type        = string
  default     = "https://idp.example.com/"
}

variable "issuer_public_key_pem" {
  description = "The public key that verifies the issuer's tokens (an example key whose private half nobody has; use your IdP's)."
  type        = string
  default     = <<-PEM
    -----BEGIN PUBLIC KEY-----
    MCowBQYDK2VwAyEAwmdrcsJSSsQqXrUwxKgAP6exjhTILDis/JBObqb7wtg=
    -----END PUBLIC KEY-----
  PEM
}
