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

  # Least privilege: what each component does, and nothing more. The grants
  # are those of the chart's files/acls.json, the one list the chart's
  # KafkaUsers and k8s/base/kafka-users.yaml follow too (deploy/check.sh
  # compares them). Its names are symbolic: here the topics above, the
  # configured groups, and "kafka-cluster" for a cluster grant. The idempotent
  # producers (the producer service, the consumer's dead-letter producer and
  # the replay job) need IdempotentWrite on brokers before Kafka 3.0; the lag
  # exporter reads the message at each committed offset (the time lag), so it
  # may read the topics.
  acl_roles = jsondecode(file("${path.module}/../../../helm/pubsubkafka/files/acls.json")).roles

  acl_names = merge(
    { for topic in keys(local.topics) : topic => topic },
    { "consumer-group" = var.consumer_group, "dlq-replay-group" = var.dlq_replay_group },
  )

  grants = flatten([
    for role, role_grants in local.acl_roles : [
      for grant in role_grants : {
        principal  = replace(role, "-", "_")
        type       = title(grant.type)
        names      = grant.type == "cluster" ? ["kafka-cluster"] : [for name in grant.names : local.acl_names[name]]
        operations = grant.operations
      }
    ]
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
