{{/* Names and labels. */}}
{{- define "leash.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "leash.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "leash.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "leash.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "leash.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leash.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "leash.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "leash.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "leash.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "leash.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "leash.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* What the deployment shape depends on, with Leash's own defaults. */}}
{{- define "leash.settings" -}}
{{- $cfg := default (dict) .Values.config -}}
{{- toJson (default (dict) $cfg.settings) -}}
{{- end -}}

{{- define "leash.storeKind" -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- default "sqlite" (default (dict) $s.store).kind -}}
{{- end -}}

{{- define "leash.keysBackend" -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- default "local" (default (dict) $s.keys).backend -}}
{{- end -}}

{{- define "leash.vaultAuthMethod" -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- if $s.vault -}}
{{- default "token" (default (dict) $s.vault.auth).method -}}
{{- end -}}
{{- end -}}

{{/* SQLite or local keys: files on a volume, which only one pod may own. */}}
{{- define "leash.needsDataVolume" -}}
{{- if or (eq (include "leash.storeKind" .) "sqlite") (eq (include "leash.keysBackend" .) "local") -}}true{{- end -}}
{{- end -}}

{{/* settings.shutdown_grace, with Leash's default (10 s). */}}
{{- define "leash.shutdownGrace" -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- if hasKey $s "shutdown_grace" -}}{{- int $s.shutdown_grace -}}{{- else -}}10{{- end -}}
{{- end -}}

{{- define "leash.vaultTokenPath" -}}/var/run/secrets/vault/token{{- end -}}

{{/* Refusals: a setup that cannot work fails the install, not the pods. */}}
{{- define "leash.checks" -}}
{{- $replicas := int .Values.replicas -}}
{{- if gt $replicas 1 -}}
{{- if eq (include "leash.storeKind" .) "sqlite" -}}
{{- fail (printf "replicas is %d but config.settings.store.kind is sqlite: SQLite is one pod's file. Use store.kind redis for several replicas, or replicas: 1" $replicas) -}}
{{- end -}}
{{- if eq (include "leash.keysBackend" .) "local" -}}
{{- fail (printf "replicas is %d but config.settings.keys.backend is local: local keys are one pod's files. Use keys.backend vault-kv or vault-transit for several replicas, or replicas: 1" $replicas) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.existingConfigMap -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- $_ := required "config.settings.issuer is required: the public https URL of this broker" $s.issuer -}}
{{- $store := default (dict) $s.store -}}
{{- if and $store.url (regexMatch "^rediss?://[^/@]*:[^/@]*@" (toString $store.url)) -}}
{{- fail "config.settings.store.url holds a password: give it with secretEnv.LEASH_REDIS_PASSWORD (a Secret) instead" -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.managementPort) (int .Values.containerPort) -}}
{{- fail (printf "managementPort and containerPort are both %d: /healthz, /readyz and /metrics have a port of their own" (int .Values.containerPort)) -}}
{{- end -}}
{{- $grace := include "leash.shutdownGrace" . | int -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (add (int .Values.preStopSleepSeconds) $grace) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d) plus config.settings.shutdown_grace (%d): the kubelet would kill Leash while requests in flight are still finishing" (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) $grace) -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.serviceMonitor.enabled (not .Values.networkPolicy.metricsFrom) -}}
{{- fail "serviceMonitor.enabled with networkPolicy.enabled needs networkPolicy.metricsFrom (the Prometheus pods), or nothing may scrape the management port" -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if and (hasKey . "value") (regexMatch "(?i)(token|secret|password|passwd|key)" .name) -}}
{{- fail (printf "extraEnv %s has a literal value but looks like a secret: use secretEnv (a Secret reference)" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Leash config file: `config` plus what the chart decides (listen, data paths, Vault token path). */}}
{{- define "leash.configFile" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) -}}
{{- $s := default (dict) $cfg.settings -}}
{{- $_ := set $s "listen" (dict "host" "0.0.0.0" "port" (int .Values.containerPort)) -}}
{{- $_ := set $s "management" (dict "listen" (dict "host" "0.0.0.0" "port" (int .Values.managementPort))) -}}
{{- if eq (include "leash.storeKind" .) "sqlite" -}}
{{- $store := default (dict) $s.store -}}
{{- if not $store.path -}}{{- $_ := set $store "path" "/var/lib/leash/leash.db" -}}{{- end -}}
{{- $_ := set $s "store" $store -}}
{{- end -}}
{{- if eq (include "leash.keysBackend" .) "local" -}}
{{- $keys := default (dict) $s.keys -}}
{{- if not $keys.dir -}}{{- $_ := set $keys "dir" "/var/lib/leash/keys" -}}{{- end -}}
{{- $_ := set $s "keys" $keys -}}
{{- end -}}
{{- if eq (include "leash.vaultAuthMethod" .) "kubernetes" -}}
{{- $auth := $s.vault.auth -}}
{{- if not $auth.jwt_file -}}{{- $_ := set $auth "jwt_file" (include "leash.vaultTokenPath" .) -}}{{- end -}}
{{- end -}}
{{- $_ := set $cfg "settings" $s -}}
{{- toYaml $cfg -}}
{{- end -}}
