locals {
  principals = {
    producer     = "User:${var.principals.producer}"
    consumer     = "User:${var.principals.consumer}"
    lag_exporter = "User:${var.principals.lag_exporter}"
    dlq_replay   = "User:${var.principals.dlq_replay}"
  }

  topics = {
    "orders"     = var.retention_ms
    "orders-dlq" = var.dlq_retention_ms
    "users"      = var.retention_ms
    "users-dlq"  = var.dlq_retention_ms
  }

  # Least privilege: what each component does, and nothing more. The idempotent
  # producers (the producer service, the consumer's dead-letter producer and the
  # replay job) need IdempotentWrite on brokers before Kafka 3.0.
  grants = [
    { principal = "producer", type = "Topic", names = ["orders", "users"], operations = ["Write", "Describe"] },
    { principal = "producer", type = "Cluster", names = ["kafka-cluster"], operations = ["IdempotentWrite"] },

    { principal = "consumer", type = "Topic", names = ["orders", "users"], operations = ["Read", "Describe"] },
    { principal = "consumer", type = "Group", names = [var.consumer_group], operations = ["Read", "Describe"] },
    { principal = "consumer", type = "Topic", names = ["orders-dlq", "users-dlq"], operations = ["Write", "Describe"] },
    { principal = "consumer", type = "Cluster", names = ["kafka-cluster"], operations = ["IdempotentWrite"] },

    { principal = "dlq_replay", type = "Topic", names = ["orders-dlq", "users-dlq"], operations = ["Read", "Describe"] },
    { principal = "dlq_replay", type = "Group", names = [var.dlq_replay_group], operations = ["Read", "Describe"] },
    { principal = "dlq_replay", type = "Topic", names = ["orders", "users"], operations = ["Write", "Describe"] },
    { principal = "dlq_replay", type = "Cluster", names = ["kafka-cluster"], operations = ["IdempotentWrite"] },

    { principal = "lag_exporter", type = "Group", names = [var.consumer_group, var.dlq_replay_group], operations = ["Describe"] },
    { principal = "lag_exporter", type = "Topic", names = keys(local.topics), operations = ["Describe"] },
  ]

  acls = {
    for acl in flatten([
      for grant in local.grants : [
        for pair in setproduct(grant.names, grant.operations) : {
          principal = local.principals[grant.principal]
          type      = grant.type
          name      = pair[0]
          operation = pair[1]
        }
      ]
    ]) : "${acl.principal}|${acl.type}|${acl.name}|${acl.operation}" => acl
  }
}

resource "kafka_topic" "this" {
  for_each = local.topics

  name               = each.key
  partitions         = var.partitions
  replication_factor = var.replication_factor

  config = merge(
    {
      "cleanup.policy"      = "delete"
      "min.insync.replicas" = tostring(var.min_insync_replicas)
      "retention.ms"        = tostring(each.value)
    },
    var.topic_config,
  )
}

resource "kafka_acl" "this" {
  for_each = local.acls

  acl_principal                = each.value.principal
  acl_host                     = "*"
  acl_operation                = each.value.operation
  acl_permission_type          = "Allow"
  resource_type                = each.value.type
  resource_name                = each.value.name
  resource_pattern_type_filter = "Literal"
}
