{{/* Labels every object gets, as the kustomize base sets them, plus helm's own. */}}
{{- define "guard.labels" -}}
app.kubernetes.io/name: apiserver-tls-guard
app.kubernetes.io/part-of: apiserver-tls-guard
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "guard.selector" -}}
app.kubernetes.io/component: webhook
app.kubernetes.io/name: apiserver-tls-guard
{{- end }}

{{/* The policy file, from the values; `apiserver-tls-guard serve` refuses anything it cannot use. */}}
{{- define "guard.policy" -}}
mode: {{ .Values.mode }}
cisVersion: {{ .Values.cisVersion | quote }}
{{- with .Values.controls }}
controls:
{{ toYaml . | indent 2 }}
{{- end }}
exemptions: {{ if .Values.exemptions }}
{{ toYaml .Values.exemptions | indent 2 }}
{{- else }}{}{{ end }}
{{- end }}

{{- define "guard.failurePolicy" -}}
{{- if .Values.failurePolicy }}{{ .Values.failurePolicy }}{{ else if eq .Values.mode "enforce" }}Fail{{ else }}Ignore{{ end }}
{{- end }}

{{- define "guard.selfManaged" -}}
{{- if eq .Values.certificates.source "self-managed" }}true{{ end }}
{{- end }}
