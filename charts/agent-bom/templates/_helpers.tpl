{{/* Names. */}}
{{- define "agent-bom.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agent-bom.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
agent-bom/mode: {{ .Values.mode }}
{{- end -}}

{{/* Selector labels of one component: include with (list $ "api"). */}}
{{- define "agent-bom.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "agent-bom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "agent-bom.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "agent-bom.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "agent-bom.uiImage" -}}
{{- printf "%s:%s" .Values.uiImage.repository (default .Chart.AppVersion .Values.uiImage.tag) -}}
{{- end -}}

{{/* Pod security: non-root, the runtime's default seccomp profile. */}}
{{- define "agent-bom.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security: read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "agent-bom.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The database URL, from its Secret. */}}
{{- define "agent-bom.databaseEnv" -}}
- name: AGENT_BOM_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgres.existingSecret }}
      key: {{ .Values.postgres.secretKey }}
{{- end -}}

{{/* The data directory: a writable emptyDir with the shared PKI files mounted into it. */}}
{{- define "agent-bom.dataVolumes" -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
- name: pki
  secret:
    secretName: {{ .Values.pki.existingSecret }}
    defaultMode: 0440
{{- end -}}

{{- define "agent-bom.dataMounts" -}}
- name: data
  mountPath: /var/lib/agent-bom
- name: tmp
  mountPath: /tmp
{{- range list "ca.crt" "ca.key" "export-signing.pk8" "export-signing.pub" }}
- name: pki
  mountPath: /var/lib/agent-bom/{{ . }}
  subPath: {{ . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The collector Service type: the explicit one, else by mode. */}}
{{- define "agent-bom.collectorServiceType" -}}
{{- if .Values.collector.service.type -}}
{{- .Values.collector.service.type -}}
{{- else if eq .Values.mode "hybrid" -}}
LoadBalancer
{{- else -}}
ClusterIP
{{- end -}}
{{- end -}}

{{/* Egress every workload that opens the store needs: DNS and Postgres. */}}
{{- define "agent-bom.egressDnsAndPostgres" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
- to:
    - ipBlock:
        cidr: {{ .Values.postgres.cidr }}
  ports:
    - {port: {{ .Values.postgres.port }}, protocol: TCP}
{{- end -}}

{{/* Ingress to the operations listener, when it is on. */}}
{{- define "agent-bom.metricsIngress" -}}
{{- if .Values.metrics.enabled -}}
- ports:
    - {port: {{ .Values.metrics.port }}, protocol: TCP}
  {{- with .Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* The Secret with the dashboard's session key (key `session-key`), shared by the UI replicas
and the API's own dashboard. */}}
{{- define "agent-bom.uiSessionSecret" -}}
{{- default (printf "%s-ui-session" (include "agent-bom.fullname" .)) .Values.ui.sessionKeySecret -}}
{{- end -}}

{{/* Where the session key is mounted. */}}
{{- define "agent-bom.uiSessionKeyFile" -}}
/etc/agent-bom/ui-session/session-key
{{- end -}}
