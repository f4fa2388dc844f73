{{- define "auth-sidecar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "auth-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "auth-sidecar.labels" -}}
{{ include "auth-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "auth-sidecar.listen" -}}
{{- if eq .Values.mode "sidecar" -}}
unix:{{ .Values.app.socketDir }}/sidecar.sock
{{- else -}}
0.0.0.0:{{ .Values.grpc.port }}
{{- end -}}
{{- end -}}

{{/* The gRPC health probe, with the TLS flags the listener needs. */}}
{{- define "auth-sidecar.probeCommand" -}}
- auth-sidecar
- health
{{- if ne .Values.mode "sidecar" }}
- --target=127.0.0.1:{{ .Values.grpc.port }}
{{- end }}
{{- if .Values.tls.enabled }}
- --ca-file=/etc/auth-sidecar/tls/ca.crt
- --server-name={{ .Values.tls.serverName | default (include "auth-sidecar.fullname" .) }}
{{- if .Values.tls.clientAuth }}
- --cert-file=/etc/auth-sidecar/tls/tls.crt
- --key-file=/etc/auth-sidecar/tls/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{- define "auth-sidecar.probe" -}}
{{- if eq .probes.type "http" }}
httpGet:
  path: {{ .path }}
  port: metrics
{{- else }}
exec:
  command:
    {{- include "auth-sidecar.probeCommand" .root | nindent 4 }}
{{- end }}
periodSeconds: {{ .probes.periodSeconds }}
timeoutSeconds: {{ .probes.timeoutSeconds }}
{{- end -}}
