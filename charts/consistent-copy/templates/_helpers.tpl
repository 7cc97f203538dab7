{{/* Labels on every object of the release. */}}
{{- define "consistent-copy.labels" -}}
app.kubernetes.io/name: consistent-copy
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
consistentcopy.io/site: {{ .Values.site }}
{{- end -}}

{{/*
The name of one of the release's objects, "<release>-<suffix>", at most `max` characters
(default 63, the DNS label a name must fit; 52 for a StatefulSet, which labels its Pods
"<name>-<revision hash>"). A longer one keeps its suffix, so it still says what it is, and
cuts the release's name, followed by 8 hex digits of the whole name's SHA-256 so that two
releases cut alike stay apart. (A bare cut to 63 would give csi-addons-sidecar and
csi-addons-auth one name after a release name of 53, which helm allows.) Every object that
names another one asks here too.
Call: include "consistent-copy.name" (dict "root" $ "suffix" "controller").
*/}}
{{- define "consistent-copy.name" -}}
{{- $whole := printf "%s-%s" .root.Release.Name .suffix -}}
{{- $max := .max | default 63 | int -}}
{{- if le (len $whole) $max -}}
{{ $whole }}
{{- else -}}
{{- $keep := sub $max (add (len .suffix) 10) | int -}}
{{- if lt $keep 1 -}}
{{- fail (printf "consistent-copy.name: the suffix %s leaves no room for the release's name" .suffix) -}}
{{- end -}}
{{ printf "%s-%s-%s" (.root.Release.Name | trunc $keep | trimSuffix "-") ($whole | sha256sum | trunc 8) .suffix }}
{{- end -}}
{{- end -}}

{{/* The in-cluster array's Service, StatefulSet and PodDisruptionBudget. */}}
{{- define "consistent-copy.arrayName" -}}
{{ include "consistent-copy.name" (dict "root" . "suffix" "array" "max" 52) }}
{{- end -}}

{{/* The one image of every ccopy role. */}}
{{- define "consistent-copy.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The array's management API as every ccopy process dials it. */}}
{{- define "consistent-copy.arrayAddress" -}}
{{- if .Values.array.inCluster.enabled -}}
{{- if .Values.array.address -}}
{{- fail (printf "array.address=%s and array.inCluster.enabled=true: choose one (the in-cluster array is dialled at its Service)" .Values.array.address) -}}
{{- end -}}
{{ include "consistent-copy.arrayName" . }}.{{ .Release.Namespace }}.svc:50051
{{- else -}}
{{ required "array.address is required: the HOST:PORT of the site's array management API (or array.inCluster.enabled=true)" .Values.array.address }}
{{- end -}}
{{- end -}}

{{/* Environment every ccopy process of the release shares: its array, the driver's name, the log level. */}}
{{- define "consistent-copy.commonEnv" -}}
- name: CCOPY_ARRAY
  value: {{ include "consistent-copy.arrayAddress" . | quote }}
- name: CCOPY_DRIVER_NAME
  value: {{ .Values.driverName | quote }}
- name: CCOPY_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- if .Values.array.tlsSecret }}
- name: CCOPY_CA
  value: /etc/ccopy/array/ca.crt
- name: CCOPY_CERT
  value: /etc/ccopy/array/tls.crt
- name: CCOPY_KEY
  value: /etc/ccopy/array/tls.key
{{- end }}
{{- end -}}

{{/* The array client certificate's mount, where array.tlsSecret names one. */}}
{{- define "consistent-copy.arrayTlsMount" -}}
{{- if .Values.array.tlsSecret -}}
- name: array-tls
  mountPath: /etc/ccopy/array
  readOnly: true
{{- end -}}
{{- end -}}

{{- define "consistent-copy.arrayTlsVolume" -}}
{{- if .Values.array.tlsSecret -}}
- name: array-tls
  secret:
    secretName: {{ .Values.array.tlsSecret }}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component's Pods. */}}
{{- define "consistent-copy.selector" -}}
app.kubernetes.io/name: consistent-copy
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* What every container of ours runs as where the role allows: no root, nothing writable but its volumes. */}}
{{/* The user and group every unprivileged container runs as (the image's own user). */}}
{{- define "consistent-copy.nonrootId" -}}65532{{- end -}}

{{- define "consistent-copy.unprivileged" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ include "consistent-copy.nonrootId" . }}
  runAsGroup: {{ include "consistent-copy.nonrootId" . }}
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* Root without a capability, for a container that must write into a root-owned folder: the
kubelet makes its plugin registry (where node-driver-registrar puts its socket) root's, mode 0750. */}}
{{- define "consistent-copy.rootWithoutCapabilities" -}}
securityContext:
  runAsNonRoot: false
  runAsUser: 0
  runAsGroup: 0
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* The Pod's pull Secrets, where the values name any. */}}
{{- define "consistent-copy.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end -}}
{{- end -}}
