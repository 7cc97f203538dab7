{{/* Labels on every object of the release. */}}
{{- define "consistent-copy.labels" -}}
app.kubernetes.io/name: consistent-copy
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
consistentcopy.io/site: {{ .Values.site }}
{{- end -}}
