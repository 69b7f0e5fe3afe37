locals {
  principals = {
    producer     = "User:${var.principals.producer}"
    consumer     = "User:${var.principals.consumer}"
    lag_exporter = "User:${var.principals.lag_exporter}"
    dlq_replay   = "User:${var.principals.dlq_replay}"
    console      = var.principals.console == null ? null : "User:${var.principals.console}"
  }

  # Each topic's own configuration. orders-state carries each order's full
  # state, keyed by order_id, for downstream services to read (only the
  # consumer writes it): compacted, so each order's latest state stays, every
  # version for at least state_min_compaction_lag_ms.
  topics = {
    "orders"       = { "cleanup.policy" = "delete", "retention.ms" = tostring(var.retention_ms) }
    "orders-dlq"   = { "cleanup.policy" = "delete", "retention.ms" = tostring(var.dlq_retention_ms) }
    "users"        = { "cleanup.policy" = "delete", "retention.ms" = tostring(var.retention_ms) }
    "users-dlq"    = { "cleanup.policy" = "delete", "retention.ms" = tostring(var.dlq_retention_ms) }
    "orders-state" = { "cleanup.policy" = "compact", "min.compaction.lag.ms" = tostring(var.state_min_compaction_lag_ms) }
  }

  # Least privilege: what each component does, and nothing more. The grants
  # are those of the chart's files/acls.json, the one list the chart's
  # KafkaUsers and k8s/base/kafka-users.yaml follow too (deploy/check.sh
  # compares them). Its names are symbolic: here the topics above, the
  # configured groups, and "kafka-cluster" for a cluster grant. The idempotent
  # producers (the producer service, the consumer's dead-letter producer and
  # state relay, and the replay job) need IdempotentWrite on brokers before
  # Kafka 3.0; the lag exporter reads the message at each committed offset
  # (the time lag), so it may read the topics. The console allowed to replay
  # has the lag exporter's rights and the replay job's.
  acl_roles = jsondecode(file("${path.module}/../../../helm/pubsubkafka/files/acls.json")).roles

  acl_names = merge(
    { for topic in keys(local.topics) : topic => topic },
    { "consumer-group" = var.consumer_group, "dlq-replay-group" = var.dlq_replay_group },
  )

  # A role without a principal (the console allowed to replay, unless
  # principals.console is set) is granted nothing.
  grants = flatten([
    for role, role_grants in local.acl_roles : [
      for grant in role_grants : {
        principal  = replace(role, "-", "_")
        type       = title(grant.type)
        names      = grant.type == "cluster" ? ["kafka-cluster"] : [for name in grant.names : local.acl_names[name]]
        operations = grant.operations
      }
    ] if local.principals[replace(role, "-", "_")] != null
  ])

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

  # The compacted topic stays compacted whatever topic_config says.
  config = merge(
    { "min.insync.replicas" = tostring(var.min_insync_replicas) },
    each.value,
    var.topic_config,
    each.value["cleanup.policy"] == "compact" ? { "cleanup.policy" = "compact" } : {},
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
