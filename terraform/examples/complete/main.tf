# Topics, ACLs and the Helm release on an existing Kafka cluster and
# Kubernetes cluster. Credentials come from the environment, e.g.
#   export TF_VAR_kafka_admin_password=...   (never in a file)
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    kafka = {
      source  = "Mongey/kafka"
      version = "~> 0.13"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
  }
}

# An administrator of the Kafka cluster: creates the topics and the ACLs.
provider "kafka" {
  bootstrap_servers = var.kafka_admin_bootstrap_servers
  tls_enabled       = true
  ca_cert           = var.kafka_ca_cert_pem
  sasl_mechanism    = "scram-sha512"
  sasl_username     = var.kafka_admin_username
  sasl_password     = var.kafka_admin_password
}

provider "helm" {
  kubernetes = {
    config_path    = var.kubeconfig_path
    config_context = var.kube_context
  }
}

module "pubsubkafka" {
  source = "../../modules/pubsubkafka"

  # Production topics: 12 partitions, replication factor 3, min.insync.replicas 2.
  partitions          = 12
  replication_factor  = 3
  min_insync_replicas = 2

  namespace               = var.namespace
  image_repository        = var.image_repository
  image_tag               = var.image_tag
  kafka_bootstrap_servers = var.kafka_bootstrap_servers
  # The Secrets of deploy/README.md, section 3.
  kafka_ca_secret_name  = "pubsubkafka-cluster-ca-cert"
  api_token_secret_name = "pubsubkafka-api-token"

  extra_values = [
    yamlencode({
      producer = {
        hpa = { minReplicas = 3, maxReplicas = 12 }
      }
      serviceMonitor = { labels = { release = "kube-prometheus-stack" } }
      prometheusRule = { labels = { release = "kube-prometheus-stack" } }
    }),
  ]
}
