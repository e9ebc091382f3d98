# The scale-out shape on Kubernetes: `aerie control` (REST API, console,
# database) and autoscaled `aerie gateway`s (MQTT), joined by NATS with
# JetStream from its official Helm chart.

locals {
  image = var.image_tag == "" ? var.image : "${var.image}:${var.image_tag}"
  nats  = "nats://${helm_release.nats.name}.${var.namespace}.svc:4222"
}

resource "kubernetes_namespace_v1" "aerie" {
  metadata {
    name = var.namespace
  }
}

resource "helm_release" "nats" {
  name       = "nats"
  namespace  = kubernetes_namespace_v1.aerie.metadata[0].name
  repository = "https://nats-io.github.io/k8s/helm/charts/"
  chart      = "nats"
  version    = var.nats_chart_version

  values = [yamlencode({
    config = {
      cluster = { enabled = true, replicas = var.nats_replicas }
      jetstream = {
        enabled   = true
        fileStore = { pvc = { size = var.nats_storage_size } }
      }
    }
  })]
}

# The Postgres connection and the signing keys' encryption key: only here,
# read by the control plane through environment variables from this Secret.
resource "kubernetes_secret_v1" "control" {
  metadata {
    name      = "aerie-control"
    namespace = kubernetes_namespace_v1.aerie.metadata[0].name
  }
  data = {
    AERIE_DATABASE_URL = var.database_url
    AERIE_SECRET_KEY   = var.secret_key
  }
}
