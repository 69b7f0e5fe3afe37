# --- Kafka: topics and ACLs ------------------------------------------------

variable "partitions" {
  description = "Partitions of every topic (orders, orders-dlq, users, users-dlq, orders-state). Kafka can add partitions but never remove them."
  type        = number
  default     = 12

  validation {
    condition     = var.partitions >= 1
    error_message = "partitions must be at least 1."
  }
}

variable "replication_factor" {
  description = "Replication factor of every topic."
  type        = number
  default     = 3
}

variable "min_insync_replicas" {
  description = "min.insync.replicas of every topic; with acks=all a write needs this many replicas."
  type        = number
  default     = 2

  validation {
    condition     = var.min_insync_replicas >= 1
    error_message = "min_insync_replicas must be at least 1."
  }
}

variable "retention_ms" {
  description = "retention.ms of orders and users (default 7 days)."
  type        = number
  default     = 604800000
}

variable "dlq_retention_ms" {
  description = "retention.ms of the dead-letter topics (default 14 days: time to fix the cause and replay)."
  type        = number
  default     = 1209600000
}

variable "state_min_compaction_lag_ms" {
  description = "min.compaction.lag.ms of the compacted orders-state: how long every version of an order's state stays readable before compaction may keep only the latest (default 7 days, as retention_ms)."
  type        = number
  default     = 604800000

  validation {
    condition     = var.state_min_compaction_lag_ms >= 0
    error_message = "state_min_compaction_lag_ms must be 0 or more."
  }
}

variable "topic_config" {
  description = "More topic configuration for every topic, e.g. { \"compression.type\" = \"producer\" } (orders-state keeps cleanup.policy compact)."
  type        = map(string)
  default     = {}
}

variable "principals" {
  description = "SASL user name of each component. Their SCRAM credentials are created outside this module. console: the user of a console allowed to replay (the chart's console.allowReplay), granted the lag exporter's and the replay job's rights; null (the default): no such user is granted anything (a read-only console logs in as lag_exporter)."
  type = object({
    producer     = optional(string, "pubsubkafka-producer")
    consumer     = optional(string, "pubsubkafka-consumer")
    lag_exporter = optional(string, "pubsubkafka-lag-exporter")
    dlq_replay   = optional(string, "pubsubkafka-dlq-replay")
    console      = optional(string)
  })
  default = {}
}

variable "consumer_group" {
  description = "Consumer group of the consumer service."
  type        = string
  default     = "order-consumer"
}

variable "dlq_replay_group" {
  description = "Consumer group of the DLQ replay job."
  type        = string
  default     = "dlq-replay"
}

# --- The Helm release ------------------------------------------------------

variable "install_chart" {
  description = "Install the Helm chart; false: only the topics and ACLs."
  type        = bool
  default     = true
}

variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "pubsubkafka"
}

variable "namespace" {
  description = "Kubernetes namespace of the release. The Secrets the chart reads must exist there first."
  type        = string
  default     = "pubsubkafka"
}

variable "create_namespace" {
  description = "Create the namespace if it does not exist."
  type        = bool
  default     = false
}

variable "chart" {
  description = "Chart to install: a local path (default: this repository's helm/pubsubkafka), or a chart name with chart_repository."
  type        = string
  default     = null
}

variable "chart_repository" {
  description = "Chart repository URL (or an oci:// reference's registry); null for a local chart."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "Chart version when installing from a repository."
  type        = string
  default     = null
}

variable "image_repository" {
  description = "Container image repository of the services."
  type        = string
}

variable "image_tag" {
  description = "Container image tag; null: the chart's appVersion."
  type        = string
  default     = null
}

variable "kafka_bootstrap_servers" {
  description = "Bootstrap servers as the pods reach them (host:port)."
  type        = list(string)

  validation {
    condition     = length(var.kafka_bootstrap_servers) > 0
    error_message = "Give at least one bootstrap server."
  }
}

variable "kafka_security_protocol" {
  description = "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
  type        = string
  default     = "SASL_SSL"

  validation {
    condition     = contains(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], var.kafka_security_protocol)
    error_message = "kafka_security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
  }
}

variable "kafka_sasl_mechanism" {
  description = "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
  type        = string
  default     = "SCRAM-SHA-512"
}

variable "kafka_ca_secret_name" {
  description = "Secret (key ca.crt) with the CA of the brokers' certificates; empty: the system CAs."
  type        = string
  default     = "pubsubkafka-cluster-ca-cert"
}

variable "api_token_secret_name" {
  description = "Secret (key API_TOKEN) with the bearer token requests must carry. The query service answers customer data and the chart refuses it without a token; empty: no token, for reads behind a gateway that authenticates (then pass query.allowAnonymous=true in extra_values)."
  type        = string
  default     = "pubsubkafka-api-token"
}

variable "database_secret_name" {
  description = "Secret holding the consumer's DATABASE_URL (key DATABASE_URL)."
  type        = string
  default     = "pubsubkafka-database"
}

variable "enable_keda" {
  description = "Scale the consumer on lag with KEDA (KEDA must be installed)."
  type        = bool
  default     = true
}

variable "enable_prometheus_operator" {
  description = "Create the ServiceMonitor and PrometheusRule (the Prometheus Operator must be installed)."
  type        = bool
  default     = true
}

variable "extra_values" {
  description = "More Helm values, as YAML documents, applied after the module's."
  type        = list(string)
  default     = []
}
