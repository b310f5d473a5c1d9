{{/* The chart's name, cut to DNS label length. */}}
{{- define "sower-follower.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's objects' name: the release name, with the chart's name
appended unless the release name already holds it. */}}
{{- define "sower-follower.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "sower-follower.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sower-follower.selectorLabels" . }}
app.kubernetes.io/version: {{ include "sower-follower.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: follower
app.kubernetes.io/part-of: sower
{{- end -}}

{{/* Labels that select the Follower pods (never change them on upgrade). */}}
{{- define "sower-follower.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sower-follower.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sower-follower.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sower-follower.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sower-follower.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* image "sower" gives <repository>/sower:<tag>. */}}
{{- define "sower-follower.image" -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.repository) .name (include "sower-follower.tag" .root) -}}
{{- end -}}

{{/* The Follower's DNS names: the values', else the Service's. */}}
{{- define "sower-follower.hostnames" -}}
{{- if .Values.follower.hostnames -}}
{{- join "," .Values.follower.hostnames -}}
{{- else -}}
{{- $svc := include "sower-follower.fullname" . -}}
{{- printf "%s.%s.svc.cluster.local,%s.%s.svc" $svc .Release.Namespace $svc .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The Leader's URL without a trailing slash. */}}
{{- define "sower-follower.leaderURL" -}}
{{- trimSuffix "/" .Values.leader.url -}}
{{- end -}}
