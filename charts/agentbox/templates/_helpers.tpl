{{/* Names */}}
{{- define "agentbox.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentbox.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agentbox.uninstallName" -}}
{{- printf "%s-uninstall" (include "agentbox.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentbox.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentbox.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Standard labels */}}
{{- define "agentbox.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agentbox.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentbox
{{- end }}

{{- define "agentbox.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentbox.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentbox.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Enabled handlers, sorted by key: a list of dicts with .key added. */}}
{{- define "agentbox.enabledHandlers" -}}
{{- $out := list }}
{{- range $key := keys .Values.handlers | sortAlpha }}
{{- $h := get $.Values.handlers $key }}
{{- if $h.enabled }}
{{- $out = append $out (merge (dict "key" $key) $h) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
containerd runtime handler fragment for config schema 2 or 3 (dict "root" $
"schema" 2). The node agent adds it to containerd's config; by hand, merge it
into /etc/containerd/config.toml (see runtimeclass/).
*/}}
{{- define "agentbox.fragment" -}}
{{- $root := .root -}}
{{- $plugin := ternary "io.containerd.grpc.v1.cri" "io.containerd.cri.v1.runtime" (eq (int .schema) 2) }}
{{- if eq (int .schema) 2 -}}
# containerd 1.6 / 1.7 (config version 2): the agentbox runtime handlers.
# Merge into /etc/containerd/config.toml and restart containerd (the node agent does this).
{{- else -}}
# containerd 2.x (config version 3): the agentbox runtime handlers.
# agentbox runs under CRI's default `podsandbox` sandbox controller (containerd
# calls the shim's `start` for every container); do not set `sandboxer = "shim"`.
{{- end }}
# `pod_annotations` lets pods tighten the policy with agentbox.dev/ annotations.
{{- range (include "agentbox.enabledHandlers" $root | fromJsonArray) }}

[plugins.{{ $plugin | quote }}.containerd.runtimes.{{ .handler }}]
  runtime_type = "io.containerd.agentbox.v1"
  runtime_path = {{ printf "%s/bin/containerd-shim-agentbox-v1" $root.Values.paths.installDir | toJson }}
  pod_annotations = {{ .podAnnotations | toJson }}
  {{- range $k, $v := .extraRuntimeConfig }}
  {{ $k }} = {{ $v | toJson }}
  {{- end }}
  [plugins.{{ $plugin | quote }}.containerd.runtimes.{{ .handler }}.options]
    ConfigPath = {{ printf "%s/%s.toml" $root.Values.paths.configDir .key | toJson }}
{{- end }}
{{ end }}

{{/* Host paths the agent needs, as "name hostPath" pairs: one volume each. */}}
{{- define "agentbox.hostDirs" -}}
{{- $cfgDir := dir .Values.containerd.config }}
{{- $dirs := list (dict "name" "host-install" "path" .Values.paths.installDir "type" "DirectoryOrCreate") (dict "name" "host-agentbox-config" "path" .Values.paths.configDir "type" "DirectoryOrCreate") (dict "name" "host-containerd-config" "path" $cfgDir "type" "DirectoryOrCreate") }}
{{- if not (hasPrefix (printf "%s/" $cfgDir) (printf "%s/" .Values.containerd.dropinDir)) }}
{{- $dirs = append $dirs (dict "name" "host-containerd-dropin" "path" .Values.containerd.dropinDir "type" "DirectoryOrCreate") }}
{{- end }}
{{- $dirs = append $dirs (dict "name" "host-containerd-socket" "path" (dir .Values.containerd.socket) "type" "Directory") }}
{{- with .Values.containerd.shimLinkDir }}
{{- $dirs = append $dirs (dict "name" "host-shim-link" "path" . "type" "DirectoryOrCreate") }}
{{- end }}
{{- toJson $dirs }}
{{- end }}

{{/* The agent container's args shared by install and uninstall. */}}
{{- define "agentbox.nodeArgs" -}}
- --host-root=/host
- {{ printf "--install-dir=%s" .Values.paths.installDir | quote }}
- {{ printf "--config-dir=%s" .Values.paths.configDir | quote }}
- {{ printf "--containerd-config=%s" .Values.containerd.config | quote }}
- {{ printf "--containerd-dropin-dir=%s" .Values.containerd.dropinDir | quote }}
- {{ printf "--containerd-socket=%s" .Values.containerd.socket | quote }}
- {{ printf "--shim-link-dir=%s" .Values.containerd.shimLinkDir | quote }}
- {{ printf "--restart-command=%s" (toJson .Values.containerd.restart.command) | quote }}
- {{ printf "--restart-namespaces-of=%v" (ternary .Values.containerd.restart.hostPid 0 .Values.containerd.restart.hostNamespaces) | quote }}
- {{ printf "--ready-timeout=%v" .Values.containerd.restart.readyTimeoutSeconds | quote }}
- --ready-file=/run/agentbox-node/ready
{{- if .Values.labelNode }}
{{- range (include "agentbox.enabledHandlers" . | fromJsonArray) }}
- {{ printf "--label=%s=true" .nodeLabel | quote }}
{{- end }}
{{- end }}
- --stay
{{- end }}

{{/* The agent pod spec shared by the installer and the uninstall hook (dict "root" $ "args" list). */}}
{{- define "agentbox.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "agentbox.serviceAccountName" $root }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
hostPID: {{ $root.Values.containerd.restart.hostNamespaces }}
priorityClassName: {{ $root.Values.agent.priorityClassName | quote }}
terminationGracePeriodSeconds: 10
{{- with $root.Values.agent.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.agent.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.agent.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "agentbox.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: ["/usr/local/bin/agentbox-node"]
    args:
      {{- .args | nindent 6 }}
    env:
      - name: NODE_NAME
        valueFrom:
          fieldRef:
            fieldPath: spec.nodeName
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef:
            fieldPath: metadata.namespace
    readinessProbe:
      exec:
        command: ["/usr/local/bin/agentbox-node", "is-ready"]
      periodSeconds: 5
    securityContext:
      # setns(2) into the host's namespaces for the restart, root-owned host files
      privileged: true
      readOnlyRootFilesystem: true
      runAsUser: 0
    resources:
      {{- toYaml $root.Values.agent.resources | nindent 6 }}
    volumeMounts:
      {{- range (include "agentbox.hostDirs" $root | fromJsonArray) }}
      - name: {{ .name }}
        mountPath: {{ printf "/host%s" .path }}
      {{- end }}
      - name: source
        mountPath: /etc/agentbox-node
        readOnly: true
      - name: run
        mountPath: /run/agentbox-node
volumes:
  {{- range (include "agentbox.hostDirs" $root | fromJsonArray) }}
  - name: {{ .name }}
    hostPath:
      path: {{ .path }}
      type: {{ .type }}
  {{- end }}
  - name: source
    configMap:
      name: {{ include "agentbox.fullname" $root }}
  - name: run
    emptyDir:
      medium: Memory
      sizeLimit: 1Mi
{{- end }}
