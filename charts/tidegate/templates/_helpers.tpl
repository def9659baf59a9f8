{{/* Labels every object of the chart carries. */}}
{{- define "tidegate.labels" -}}
app.kubernetes.io/name: tidegate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The controller's pods. */}}
{{- define "tidegate.selector" -}}
app.kubernetes.io/name: tidegate
app.kubernetes.io/component: controller
{{- end }}

{{/* The controller image: by digest when one is given, else by tag. */}}
{{- define "tidegate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
The RBAC, the admission policies and the approval policy name the controller's ServiceAccount
tidegate-system/tidegate-controller (the policies trust that user): the chart installs there only.
*/}}
{{- define "tidegate.namespaceGuard" -}}
{{- if ne .Release.Namespace "tidegate-system" -}}
{{- fail (printf "install Tidegate into namespace tidegate-system (helm install ... -n tidegate-system --create-namespace), not %q: its RBAC and admission policies name the ServiceAccount tidegate-system/tidegate-controller" .Release.Namespace) -}}
{{- end -}}
{{- end }}

{{/* "true" when the controller signs in to Azure with AKS workload identity, else empty. */}}
{{- define "tidegate.azureWorkloadIdentity" -}}
{{- if and .Values.azure.enabled (eq .Values.azure.credential "workloadIdentity") -}}
true
{{- end -}}
{{- end }}
