{{/* Name of every object of the release: the release name when it already
     says predastore-operator, else "<release>-predastore-operator". */}}
{{- define "predastore-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: stable across upgrades. */}}
{{- define "predastore-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "predastore-operator.fullname" . }}
app.kubernetes.io/instance: {{ include "predastore-operator.fullname" . }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "predastore-operator.labels" -}}
{{ include "predastore-operator.selectorLabels" . }}
app.kubernetes.io/part-of: predastore
{{- end -}}
