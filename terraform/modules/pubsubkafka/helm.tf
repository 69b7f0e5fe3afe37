locals {
  kafka_user = {
    for component, username in var.principals : component => {
      username   = username
      secretName = ""
      secretKey  = "password"
    } if username != null
  }

  # Topics and ACLs are managed here, so the chart's Strimzi resources stay off.
  chart_values = {
    image = merge(
      { repository = var.image_repository },
      var.image_tag == null ? {} : { tag = var.image_tag },
    )
    kafka = {
      bootstrapServers = join(",", var.kafka_bootstrap_servers)
      securityProtocol = var.kafka_security_protocol
      saslMechanism    = var.kafka_sasl_mechanism
      caSecret         = { name = var.kafka_ca_secret_name, key = "ca.crt" }
    }
    kafkaUsers = merge(
      {
        producer    = local.kafka_user.producer
        consumer    = local.kafka_user.consumer
        lagExporter = local.kafka_user.lag_exporter
        dlqReplay   = local.kafka_user.dlq_replay
      },
      { for c in ["console"] : c => local.kafka_user[c] if contains(keys(local.kafka_user), c) },
    )
    database = {
      secretName = var.database_secret_name
      secretKey  = "DATABASE_URL"
    }
    producer = {
      apiToken = { existingSecret = var.api_token_secret_name, secretKey = "API_TOKEN", value = "" }
    }
    consumer = {
      group = var.consumer_group
      keda = {
        enabled         = var.enable_keda
        maxReplicaCount = var.partitions
      }
    }
    dlqReplay      = { group = var.dlq_replay_group }
    serviceMonitor = { enabled = var.enable_prometheus_operator }
    prometheusRule = { enabled = var.enable_prometheus_operator }
    strimzi = {
      topics = { enabled = false }
      users  = { enabled = false }
    }
  }
}

resource "helm_release" "this" {
  count = var.install_chart ? 1 : 0

  name             = var.release_name
  namespace        = var.namespace
  create_namespace = var.create_namespace
  chart            = coalesce(var.chart, "${path.module}/../../../helm/pubsubkafka")
  repository       = var.chart_repository
  version          = var.chart_version

  values = concat([yamlencode(local.chart_values)], var.extra_values)

  atomic  = true
  wait    = true
  timeout = 600

  # The services need their topics and permissions before they start.
  depends_on = [kafka_topic.this, kafka_acl.this]
}
