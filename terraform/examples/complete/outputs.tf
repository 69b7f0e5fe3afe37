output "topics" {
  value = module.pubsubkafka.topics
}

output "acls" {
  value = module.pubsubkafka.acls
}

output "producer_url" {
  value = module.pubsubkafka.producer_url
}
