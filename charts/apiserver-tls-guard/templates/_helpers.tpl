{{/* Labels every object gets: the kustomize base's, helm's own, and the release's instance and version. */}}
{{- define "guard.labels" -}}
app.kubernetes.io/name: apiserver-tls-guard
app.kubernetes.io/part-of: apiserver-tls-guard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The Deployment's selector: never changed by an upgrade (a Deployment's selector is immutable). */}}
{{- define "guard.selector" -}}
app.kubernetes.io/component: webhook
app.kubernetes.io/name: apiserver-tls-guard
{{- end }}

{{/* The mode as the server reads it: case does not matter (webhook.core.policy). */}}
{{- define "guard.mode" -}}
{{- .Values.mode | lower }}
{{- end }}

{{/* The policy file, from the values; `apiserver-tls-guard serve` refuses anything it cannot use. */}}
{{- define "guard.policy" -}}
mode: {{ include "guard.mode" . }}
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
{{- if .Values.failurePolicy }}{{ .Values.failurePolicy }}{{ else if eq (include "guard.mode" .) "enforce" }}Fail{{ else }}Ignore{{ end }}
{{- end }}

{{- define "guard.selfManaged" -}}
{{- if eq .Values.certificates.source "self-managed" }}true{{ end }}
{{- end }}

{{/* registry/repository:tag, and @digest when one is given (the tag stays, for people to read). */}}
{{- define "guard.image" -}}
{{- $image := .Values.image }}
{{- $name := $image.repository }}
{{- if $image.registry }}{{ $name = printf "%s/%s" $image.registry $image.repository }}{{ end }}
{{- $name = printf "%s:%s" $name ($image.tag | default .Chart.AppVersion) }}
{{- if $image.digest }}{{ $name = printf "%s@%s" $name $image.digest }}{{ end }}
{{- $name }}
{{- end }}

{{/* `off` unquoted is YAML's false: read it as the word it was meant to be. */}}
{{- define "guard.policyReports" -}}
{{- if eq (toString .Values.audit.policyReports) "false" }}off{{ else }}{{ .Values.audit.policyReports }}{{ end }}
{{- end }}

{{/* Pods the chart's hooks run: our own image, non-root, read-only, nothing to escalate. */}}
{{- define "guard.hookPodSpec" -}}
restartPolicy: Never
serviceAccountName: apiserver-tls-guard-hooks
automountServiceAccountToken: true
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "guard.hookContainer" -}}
image: {{ include "guard.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
resources:
  requests: {cpu: 10m, memory: 64Mi}
  limits: {cpu: 500m, memory: 128Mi}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities: {drop: [ALL]}
  seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* The PodDisruptionBudget's pods that may be down at once, or "" when none may: then no drain can finish.
Percentages are rounded as the disruption controller rounds them (up; intstr.GetScaledValueFromIntOrPercent). */}}
{{- define "guard.pdbAllowed" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- $replicas := int .Values.replicas }}
{{- if not (kindIs "invalid" $pdb.maxUnavailable) }}
{{- $max := $pdb.maxUnavailable }}
{{- if kindIs "string" $max }}{{ $max = divf (mulf $replicas (trimSuffix "%" $max | float64)) 100 | ceil | int }}{{ end }}
{{- if gt (int $max) 0 }}{{ int $max }}{{ end }}
{{- else }}
{{- $min := $pdb.minAvailable }}
{{- if kindIs "string" $min }}{{ $min = divf (mulf $replicas (trimSuffix "%" $min | float64)) 100 | ceil | int }}{{ end }}
{{- if lt (int $min) $replicas }}{{ sub $replicas (int $min) }}{{ end }}
{{- end }}
{{- end }}
