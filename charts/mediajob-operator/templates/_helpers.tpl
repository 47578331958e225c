{{/* Name of the chart, overridable. */}}
{{- define "mediajob-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "mediajob-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mediajob-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mediajob-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mediajob-operator.labels" -}}
{{ include "mediajob-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: mediajob-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "mediajob-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mediajob-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret with DOLBYIO_APP_KEY and DOLBYIO_APP_SECRET. */}}
{{- define "mediajob-operator.mediaApiSecretName" -}}
{{- if .Values.mediaApi.existingSecret }}
{{- .Values.mediaApi.existingSecret }}
{{- else }}
{{- printf "%s-dolbyio" (include "mediajob-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The Secret whose key `key` signs callback URLs' tokens. */}}
{{- define "mediajob-operator.callbackKeySecretName" -}}
{{- if .Values.callbacks.existingKeySecret }}
{{- .Values.callbacks.existingKeySecret }}
{{- else }}
{{- printf "%s-callback-key" (include "mediajob-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* With a selector, the default Lease name carries a hash of it: releases that split the
MediaJobs never share a Lease, even when their names are alike. */}}
{{- define "mediajob-operator.leaseName" -}}
{{- if .Values.leaderElection.leaseName }}
{{- .Values.leaderElection.leaseName }}
{{- else if .Values.selector }}
{{- printf "%s-%s" (include "mediajob-operator.fullname" . | trunc 54 | trimSuffix "-") (sha256sum .Values.selector | trunc 8) }}
{{- else }}
{{- include "mediajob-operator.fullname" . }}
{{- end }}
{{- end }}

{{- define "mediajob-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Rules the operator needs wherever it watches MediaJobs (tests/operator-api-calls.yaml is the list;
tests/packaging.rs checks the rendered RBAC against it).
*/}}
{{- define "mediajob-operator.watchRules" -}}
- apiGroups: ["mediajob.io"]
  resources: ["mediajobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["mediajob.io"]
  resources: ["mediajobs/status"]
  verbs: ["patch"]
- apiGroups: ["mediajob.io"]
  resources: ["mediajobsets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["mediajob.io"]
  resources: ["mediajobsets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* PromQL label matchers for this release's operator series (alert rules). */}}
{{- define "mediajob-operator.metricSelector" -}}
{{- if .Values.prometheusRule.metricSelector }}
{{- .Values.prometheusRule.metricSelector }}
{{- else }}
{{- printf "namespace=%q,job=\"%s-metrics\"" .Release.Namespace (include "mediajob-operator.fullname" .) }}
{{- end }}
{{- end }}
