variable "kafka_admin_bootstrap_servers" {
  description = "Bootstrap servers as Terraform reaches them."
  type        = list(string)
}

variable "kafka_admin_username" {
  description = "SASL/SCRAM user allowed to create topics and ACLs."
  type        = string
}

variable "kafka_admin_password" {
  description = "Its password (set TF_VAR_kafka_admin_password)."
  type        = string
  sensitive   = true
}

variable "kafka_ca_cert_pem" {
  description = "PEM of the CA that signs the brokers' certificates; null: the system CAs."
  type        = string
  default     = null
}

variable "kubeconfig_path" {
  description = "kubeconfig of the target cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "kubeconfig context; null: the current one."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Namespace of the release; create the Secrets there first (deploy/README.md)."
  type        = string
  default     = "pubsubkafka"
}

variable "image_repository" {
  description = "Container image repository of the services."
  type        = string
}

variable "image_tag" {
  description = "Container image tag."
  type        = string
  default     = "0.2.0"
}

variable "kafka_bootstrap_servers" {
  description = "Bootstrap servers as the pods reach them."
  type        = list(string)
}
