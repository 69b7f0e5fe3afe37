output "topics" {
  description = "The topics, by name, with their partition count."
  value       = { for name, topic in kafka_topic.this : name => topic.partitions }
}

output "acls" {
  description = "The ACLs created, as principal|resource type|resource|operation."
  value       = sort(keys(kafka_acl.this))
}

output "release_name" {
  description = "The Helm release name, or null when the chart is not installed."
  value       = one(helm_release.this[*].name)
}

output "namespace" {
  description = "Namespace of the release."
  value       = var.namespace
}

output "producer_url" {
  description = "In-cluster URL of the order API (POST /orders)."
  value = var.install_chart ? format(
    "http://%s-producer.%s.svc:8080",
    length(regexall("pubsubkafka", var.release_name)) > 0 ? var.release_name : "${var.release_name}-pubsubkafka",
    var.namespace,
  ) : null
}
