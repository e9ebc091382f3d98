# One Aerie process kind on Kubernetes: its Deployment (probes, Prometheus
# annotations, requests and limits, a locked-down container), a Service, a
# HorizontalPodAutoscaler that owns the pod count, and a PodDisruptionBudget
# that keeps all but one pod up during a node drain.

locals {
  labels = { "app.kubernetes.io/name" = "aerie", "app.kubernetes.io/component" = var.name }
  # Prometheus finds every Aerie pod by these (/metrics on the http port).
  scrape = {
    "prometheus.io/scrape" = "true"
    "prometheus.io/port"   = tostring(var.ports["http"])
    "prometheus.io/path"   = "/metrics"
  }
}

resource "kubernetes_deployment_v1" "this" {
  #checkov:skip=CKV_K8S_43:the image is pinned by tag (image_tag, never latest); give a digest through the parent's var.image to pin it by digest
  #checkov:skip=CKV_K8S_35:aerie control reads its database URL from AERIE_DATABASE_URL only (no file flag), so the Secret is passed as environment variables (env_from), never in the pod spec; the gateway has no secret setting
  metadata {
    name      = "aerie-${var.name}"
    namespace = var.namespace
    labels    = local.labels
  }

  spec {
    replicas = var.min_replicas
    selector {
      match_labels = local.labels
    }

    template {
      metadata {
        labels      = local.labels
        annotations = local.scrape
      }

      spec {
        automount_service_account_token = false
        # Aerie drains its connections on SIGTERM within 5 s.
        termination_grace_period_seconds = 30
        security_context {
          run_as_non_root = true
          run_as_user     = 10001
          run_as_group    = 10001
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        container {
          name              = var.name
          image             = var.image
          image_pull_policy = "Always"
          args              = var.args

          dynamic "env" {
            for_each = var.env
            content {
              name  = env.key
              value = env.value
            }
          }
          dynamic "env" {
            for_each = var.node_id_from_pod_name ? ["AERIE_NODE_ID"] : []
            content {
              name = env.value
              value_from {
                field_ref {
                  field_path = "metadata.name"
                }
              }
            }
          }
          dynamic "env_from" {
            for_each = var.secret_env_from == null ? [] : [var.secret_env_from]
            content {
              secret_ref {
                name = env_from.value
              }
            }
          }

          dynamic "port" {
            for_each = var.ports
            content {
              name           = port.key
              container_port = port.value
            }
          }

          resources {
            requests = var.resources.requests
            limits   = var.resources.limits
          }

          # /readyz: what the process needs answers (the control plane's
          # database; the gateway's NATS and facts), else no traffic;
          # /healthz: the process serves, else it is restarted.
          readiness_probe {
            http_get {
              path = "/readyz"
              port = "http"
            }
            period_seconds    = 5
            failure_threshold = 2
          }
          liveness_probe {
            http_get {
              path = "/healthz"
              port = "http"
            }
            initial_delay_seconds = 10
            period_seconds        = 10
            failure_threshold     = 3
          }

          security_context {
            allow_privilege_escalation = false
            read_only_root_filesystem  = true
            capabilities {
              drop = ["ALL"]
            }
          }
        }
      }
    }
  }

  lifecycle {
    # The autoscaler owns the count once it runs.
    ignore_changes = [spec[0].replicas]
  }
}

resource "kubernetes_service_v1" "this" {
  metadata {
    name      = "aerie-${var.name}"
    namespace = var.namespace
    labels    = local.labels
  }
  spec {
    type     = var.service_type
    selector = local.labels
    dynamic "port" {
      for_each = var.service_ports
      content {
        name        = port.value
        port        = var.ports[port.value]
        target_port = port.value
      }
    }
  }
}

resource "kubernetes_horizontal_pod_autoscaler_v2" "this" {
  metadata {
    name      = "aerie-${var.name}"
    namespace = var.namespace
  }
  spec {
    min_replicas = var.min_replicas
    max_replicas = var.max_replicas
    scale_target_ref {
      api_version = "apps/v1"
      kind        = "Deployment"
      name        = kubernetes_deployment_v1.this.metadata[0].name
    }
    metric {
      type = "Resource"
      resource {
        name = "cpu"
        target {
          type                = "Utilization"
          average_utilization = var.target_cpu_percent
        }
      }
    }
  }
}

resource "kubernetes_pod_disruption_budget_v1" "this" {
  metadata {
    name      = "aerie-${var.name}"
    namespace = var.namespace
  }
  spec {
    max_unavailable = "1"
    selector {
      match_labels = local.labels
    }
  }
}
