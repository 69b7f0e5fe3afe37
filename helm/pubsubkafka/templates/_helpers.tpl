{{/* Chart name. */}}
{{- define "pubsubkafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; component names are "<fullname>-<component>". */}}
{{- define "pubsubkafka.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pubsubkafka.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; pass (dict "root" $ "component" "producer"). */}}
{{- define "pubsubkafka.labels" -}}
helm.sh/chart: {{ include "pubsubkafka.chart" .root }}
{{ include "pubsubkafka.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: pubsubkafka
{{- end }}

{{- define "pubsubkafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pubsubkafka.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "pubsubkafka.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "pubsubkafka.usesSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "pubsubkafka.usesTls" -}}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) .Values.kafka.caSecret.name }}true{{ end }}
{{- end }}

{{/*
Kafka credentials of one component, as env entries; pass
(dict "root" $ "user" .Values.kafkaUsers.producer).
*/}}
{{- define "pubsubkafka.kafkaUserEnv" -}}
{{- if include "pubsubkafka.usesSasl" .root }}
- name: KAFKA_SASL_USERNAME
  value: {{ .user.username | quote }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default .user.username .user.secretName }}
      key: {{ .user.secretKey }}
{{- end }}
{{- end }}

{{/* What every container shares: the ConfigMap and the extra env. */}}
{{- define "pubsubkafka.envFrom" -}}
- configMapRef:
    name: {{ include "pubsubkafka.fullname" . }}
{{- end }}

{{- define "pubsubkafka.volumeMounts" -}}
{{- if include "pubsubkafka.usesTls" . }}
- name: kafka-ca
  mountPath: /etc/kafka/ca
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pubsubkafka.volumes" -}}
{{- if include "pubsubkafka.usesTls" . }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret.name }}
    items:
      - key: {{ .Values.kafka.caSecret.key }}
        path: ca.crt
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A pod's labels: the chart's, then podLabels (which cannot replace
  them: the selectors rely on them); pass (dict "root" $ "component" name). */}}
{{- define "pubsubkafka.podLabels" -}}
{{- $labels := fromYaml (include "pubsubkafka.labels" .) -}}
{{- toYaml (merge $labels .root.Values.podLabels) }}
{{- end }}

{{/* A pod's priority class, when priorityClassName is set; pass the root. */}}
{{- define "pubsubkafka.priorityClass" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end }}

{{/* One spread constraint per topology key; pass (dict "root" $ "component" "producer" "keys" list). */}}
{{- define "pubsubkafka.topologySpread" -}}
{{- range .keys }}
- maxSkew: 1
  topologyKey: {{ . }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "pubsubkafka.selectorLabels" (dict "root" $.root "component" $.component) | nindent 6 }}
{{- end }}
{{- end }}

{{/* The pods' scheduling fields; pass the component's values. */}}
{{- define "pubsubkafka.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The topics, each with its kind: events (a domain's), dlq (its dead
  letters, "<topic>-dlq") or state (compacted: each order's latest state). */}}
{{- define "pubsubkafka.topics" -}}
{{ .Values.topics.orders }}: events
{{ .Values.topics.orders }}-dlq: dlq
{{ .Values.topics.users }}: events
{{ .Values.topics.users }}-dlq: dlq
{{ .Values.topics.ordersState }}: state
{{- end }}

{{/* The topics the consumer reads: consumer.topics, or both domains'. */}}
{{- define "pubsubkafka.consumerTopics" -}}
{{- default (list .Values.topics.orders .Values.topics.users) .Values.consumer.topics | toJson }}
{{- end }}

{{/* The dead-letter topics to replay: dlqReplay.topics, or every domain's. */}}
{{- define "pubsubkafka.replayTopics" -}}
{{- $deadLetters := list }}
{{- range $topic, $kind := include "pubsubkafka.topics" . | fromYaml }}
{{- if eq $kind "dlq" }}{{ $deadLetters = append $deadLetters $topic }}{{ end }}
{{- end }}
{{- default $deadLetters .Values.dlqReplay.topics | toJson }}
{{- end }}

{{/* Plain settings as env entries, sorted by name; pass a dict NAME -> value. */}}
{{- define "pubsubkafka.env" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The producer's API token from a Secret: apiToken.existingSecret, or the one
the chart makes from apiToken.value.
*/}}
{{- define "pubsubkafka.apiTokenSecret" -}}
{{- with .Values.producer.apiToken }}
{{- if .existingSecret }}{{ .existingSecret }}{{ else if .value }}{{ include "pubsubkafka.fullname" $ }}-api-token{{ end }}
{{- end }}
{{- end }}

{{/* Fails the render when a pod's grace period cannot cover its shutdown. */}}
{{- define "pubsubkafka.checkGrace" -}}
{{- if le (int .values.terminationGracePeriodSeconds) (add (int .values.shutdownTimeoutSecs) .preStop | int) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed shutdownTimeoutSecs (%v) plus the %vs preStop pause" .component .values.terminationGracePeriodSeconds .values.shutdownTimeoutSecs .preStop) }}
{{- end }}
{{- end }}

{{/* The migrations Job's settings: its logs, and the consumer's database
  timeouts (start-up migrates under the same ones). */}}
{{- define "pubsubkafka.migrationEnv" -}}
{{- include "pubsubkafka.env" (dict
    "LOG_LEVEL" .Values.log.level
    "LOG_FORMAT" .Values.log.format
    "DB_STATEMENT_TIMEOUT_MS" .Values.consumer.database.statementTimeoutMs
    "DB_LOCK_TIMEOUT_MS" .Values.consumer.database.lockTimeoutMs
    "DB_TRANSACTION_TIMEOUT_MS" .Values.consumer.database.transactionTimeoutMs) }}
{{- end }}

{{/* The migrations Job's mounts: /tmp and the extra ones (a CA bundle of
  the database, say); no Kafka CA, it does not talk to Kafka. */}}
{{- define "pubsubkafka.migrationVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* DATABASE_MIGRATE of the services that migrate: migrations.onStart. */}}
{{- define "pubsubkafka.databaseMigrate" -}}
{{- ternary "true" "false" .Values.migrations.onStart }}
{{- end }}

{{/* The console's sign-in token, as "SECRET KEY": console.apiToken's Secret,
  else producer.apiToken's; empty when neither is set. */}}
{{- define "pubsubkafka.consoleTokenSecret" -}}
{{- with .Values.console.apiToken.existingSecret }}{{ . }} {{ $.Values.console.apiToken.secretKey }}
{{- else }}{{ with include "pubsubkafka.apiTokenSecret" . }}{{ . }} {{ $.Values.producer.apiToken.secretKey }}{{ end }}
{{- end }}
{{- end }}

{{/* The key of kafkaUsers the console logs in as: its own when it may
  replay (the lag exporter's rights and the replay job's), else the lag
  exporter's (reads only). */}}
{{- define "pubsubkafka.consoleKafkaUser" -}}
{{- ternary "console" "lagExporter" .Values.console.allowReplay }}
{{- end }}
