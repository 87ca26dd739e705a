{{/* Name of the chart, overridable. */}}
{{- define "rdo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name: the release name, plus the chart name unless it is already in it. */}}
{{- define "rdo.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "rdo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "rdo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component (controller or agent). */}}
{{- define "rdo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rdo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rdo.controllerName" -}}
{{ include "rdo.fullname" . }}-controller
{{- end }}

{{- define "rdo.agentName" -}}
{{ include "rdo.fullname" . }}-agent
{{- end }}

{{- define "rdo.leaseName" -}}
{{ default (printf "%s-controller" (include "rdo.fullname" .)) .Values.controller.leaseName }}
{{- end }}

{{/* The image: repository@digest when a digest is given (the tag is then ignored), else repository:tag (default: appVersion). */}}
{{- define "rdo.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end }}
{{- end }}

{{/*
Labels of one component's pods: the chart's labels, the component, then the user's podLabels
(which never override the chart's; the schema refuses the selector labels outright).
*/}}
{{- define "rdo.podLabels" -}}
{{- $labels := merge (dict "app.kubernetes.io/component" .component) (include "rdo.labels" .root | fromYaml) -}}
{{- toYaml (merge $labels .podLabels) }}
{{- end }}

{{/*
Whether to render the agent's node-restriction policy: "true" or "". `auto` follows helm's
capability check (the API server's discovery at install; helm's built-in API list, which
lacks ValidatingAdmissionPolicy, in `helm template` unless --api-versions says otherwise).
The booleans of earlier chart versions read as auto (true) and never (false).
*/}}
{{- define "rdo.nodeRestrictionPolicy" -}}
{{- $mode := .Values.agent.nodeRestrictionPolicy -}}
{{- if kindIs "bool" $mode -}}
{{- $mode = ternary "auto" "never" $mode -}}
{{- end -}}
{{- if eq $mode "always" -}}
true
{{- else if and (eq $mode "auto") (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy") -}}
true
{{- end -}}
{{- end }}

{{/* Whether the controllers' metrics Service exists: asked for, or needed by the ServiceMonitor. */}}
{{- define "rdo.controllerMetricsService" -}}
{{- if or .Values.controller.metricsService .Values.metrics.serviceMonitor.enabled -}}
true
{{- end -}}
{{- end }}

{{/*
Container security context shared by every container that can run as non-root: the
`restricted` Pod Security profile.
*/}}
{{- define "rdo.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
