{{/*
Names, labels and the pieces every StashQ pod shares. A component's templates call
these with a dict: (dict "root" $ "component" "worker").
*/}}

{{- define "stashq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name: "<release>-stashq", or the release alone if it
says stashq already. 40 characters leave room for "-watcher" and the like. */}}
{{- define "stashq.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "stashq.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "stashq.componentName" -}}
{{- printf "%s-%s" (include "stashq.fullname" .root) .component -}}
{{- end -}}

{{- define "stashq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stashq.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "stashq.labels" -}}
{{ include "stashq.selectorLabels" . }}
app.kubernetes.io/part-of: stashq
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of objects that belong to the release rather than to one component. */}}
{{- define "stashq.commonLabels" -}}
app.kubernetes.io/name: {{ include "stashq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: stashq
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "stashq.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount name of a component (the chart creates it when rbac.create). */}}
{{- define "stashq.serviceAccountName" -}}
{{- include "stashq.componentName" . -}}
{{- end -}}

{{/* --- Redis ------------------------------------------------------------------------ */}}

{{- define "stashq.redis.host" -}}
{{- if .Values.redis.bundled.enabled -}}
{{- include "stashq.componentName" (dict "root" . "component" "redis") -}}
{{- else -}}
{{- .Values.redis.external.host -}}
{{- end -}}
{{- end -}}

{{- define "stashq.redis.port" -}}
{{- if .Values.redis.bundled.enabled -}}6379{{- else -}}{{ .Values.redis.external.port }}{{- end -}}
{{- end -}}

{{/* The Secret and key holding the Redis password; empty name: no password. */}}
{{- define "stashq.redis.passwordSecretName" -}}
{{- $bundled := .Values.redis.bundled -}}
{{- if $bundled.enabled -}}
{{- if $bundled.auth.enabled -}}
{{- default (include "stashq.componentName" (dict "root" . "component" "redis")) $bundled.auth.existingSecret -}}
{{- end -}}
{{- else -}}
{{- .Values.redis.external.passwordSecret.name -}}
{{- end -}}
{{- end -}}

{{- define "stashq.redis.passwordSecretKey" -}}
{{- if .Values.redis.bundled.enabled -}}
{{- .Values.redis.bundled.auth.passwordKey -}}
{{- else -}}
{{- .Values.redis.external.passwordSecret.key -}}
{{- end -}}
{{- end -}}

{{- define "stashq.redis.tls" -}}
{{- if and (not .Values.redis.bundled.enabled) .Values.redis.external.tls.enabled -}}true{{- end -}}
{{- end -}}

{{- define "stashq.redis.caPath" -}}/etc/stashq/redis-tls/ca.crt{{- end -}}

{{/* A Redis URL for db .db. The password is "$(REDIS_PASSWORD)", which the kubelet
replaces with the value of that variable (from the Secret), so the password is in no
manifest and on no command line. */}}
{{- define "stashq.redis.url" -}}
{{- $root := .root -}}
{{- $external := $root.Values.redis.external -}}
{{- $tls := include "stashq.redis.tls" $root -}}
{{- $user := ternary "" $external.username $root.Values.redis.bundled.enabled -}}
{{- $auth := "" -}}
{{- if include "stashq.redis.passwordSecretName" $root -}}
{{- $auth = printf "%s:$(REDIS_PASSWORD)@" $user -}}
{{- else if $user -}}
{{- $auth = printf "%s@" $user -}}
{{- end -}}
{{- $query := "" -}}
{{- if $tls -}}
{{- $query = printf "?ssl_cert_reqs=%s" $external.tls.certReqs -}}
{{- if $external.tls.caSecret.name -}}
{{- $query = printf "%s&ssl_ca_certs=%s" $query (include "stashq.redis.caPath" $root) -}}
{{- end -}}
{{- end -}}
{{- printf "%s://%s%s:%s/%d%s" (ternary "rediss" "redis" (eq $tls "true")) $auth (include "stashq.redis.host" $root) (include "stashq.redis.port" $root) (int .db) $query -}}
{{- end -}}

{{/* Environment of a process that talks to Redis: the password first (a later value
may refer to an earlier variable only), then the two URLs. */}}
{{- define "stashq.redis.env" -}}
{{- $secret := include "stashq.redis.passwordSecretName" . -}}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "stashq.redis.passwordSecretKey" . }}
{{- end }}
- name: STASHQ_BROKER_URL
  value: {{ include "stashq.redis.url" (dict "root" . "db" .Values.redis.brokerDb) | quote }}
- name: STASHQ_REDIS_URL
  value: {{ include "stashq.redis.url" (dict "root" . "db" .Values.redis.stateDb) | quote }}
{{- end -}}

{{- define "stashq.redis.volumes" -}}
{{- if and (include "stashq.redis.tls" .) .Values.redis.external.tls.caSecret.name }}
- name: redis-tls
  secret:
    secretName: {{ .Values.redis.external.tls.caSecret.name }}
    items:
      - key: {{ .Values.redis.external.tls.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "stashq.redis.volumeMounts" -}}
{{- if and (include "stashq.redis.tls" .) .Values.redis.external.tls.caSecret.name }}
- name: redis-tls
  mountPath: /etc/stashq/redis-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* --- What every StashQ container shares ------------------------------------------ */}}

{{/* STASHQ_* settings of a process that reads the Kubernetes store. */}}
{{- define "stashq.kubeEnv" -}}
- name: STASHQ_STORE
  value: kubernetes
- name: STASHQ_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# Where the locks' Lease objects live: the namespace the chart's Roles grant them in.
- name: STASHQ_LEASE_NAMESPACE
  value: {{ .Release.Namespace | quote }}
{{- end -}}

{{/* Settings every process that talks to the broker shares: the visibility timeout
must be the same wherever the Celery app is built. */}}
{{- define "stashq.settingsEnv" -}}
- name: STASHQ_VISIBILITY_TIMEOUT_S
  value: {{ .Values.settings.visibilityTimeoutSeconds | quote }}
{{- end -}}

{{/* The global then the component's extra variables: a later one of the same name wins. */}}
{{- define "stashq.extraEnv" -}}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod-level fields every pod shares: scheduling (the component's own value, else
the top-level default), pull secrets, priority, security context. */}}
{{- define "stashq.podSpec" -}}
{{- $root := .root -}}
{{- /* No *_SERVICE_HOST variables for every Service in the namespace: StashQ reads none. */}}
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with (default $root.Values.nodeSelector .values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.tolerations .values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.affinity .values.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "stashq.podMetadata" -}}
metadata:
  labels:
    {{- include "stashq.selectorLabels" . | nindent 4 }}
    {{- with .values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* A writable /tmp on a read-only root filesystem: the 0600 client defaults files,
temporary work dirs. */}}
{{- define "stashq.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- with .sizeLimit }}
    sizeLimit: {{ . }}
    {{- else }}
    sizeLimit: 64Mi
    {{- end }}
{{- end -}}

{{- define "stashq.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}
