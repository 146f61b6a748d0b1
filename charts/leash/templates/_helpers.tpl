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
{{- if and (not .Values.existingConfigMap) (not .Values.usagePort.enabled) -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- if and $s.usage (hasKey $s.usage "listen") -}}
{{- fail "config.settings.usage.listen is set: the chart sets it from usagePort (enable usagePort instead), so the Service and NetworkPolicy know the port" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.usagePort.enabled (or (eq (int .Values.usagePort.containerPort) (int .Values.containerPort)) (eq (int .Values.usagePort.containerPort) (int .Values.managementPort))) -}}
{{- fail (printf "usagePort.containerPort %d is also the API or management port: usage reports have a port of their own" (int .Values.usagePort.containerPort)) -}}
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
{{- if and .Values.ingress.enabled .Values.networkPolicy.enabled .Values.networkPolicy.ingressFrom (not .Values.networkPolicy.ingressControllerFrom) -}}
{{- fail "ingress.enabled with networkPolicy.enabled and a non-empty networkPolicy.ingressFrom needs networkPolicy.ingressControllerFrom (the Ingress controller's pods), or the NetworkPolicy blocks the Ingress from the API port" -}}
{{- end -}}
{{- include "leash.tlsChecks" . -}}
{{- include "leash.ingressChecks" . -}}
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
{{- if .Values.usagePort.enabled -}}
{{- $usage := default (dict) $s.usage -}}
{{- $_ := set $usage "listen" (dict "host" "0.0.0.0" "port" (int .Values.usagePort.containerPort) "workers" (int .Values.usagePort.workers)) -}}
{{- $_ := set $s "usage" $usage -}}
{{- end -}}
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
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" (include "leash.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "leash.tlsDir" .)) "client_auth" .Values.tls.clientAuth "min_version" .Values.tls.minVersion -}}
{{- if include "leash.clientCA" . -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/%s" (include "leash.clientCADir" .) .Values.tls.clientCA.key) -}}
{{- end -}}
{{- $_ := set $s "tls" $tls -}}
{{- end -}}
{{- $_ := set $cfg "settings" $s -}}
{{- toYaml $cfg -}}
{{- end -}}


{{/* TLS on the API port: where the Secrets are mounted, and what must hold. */}}
{{- define "leash.tlsDir" -}}/etc/leash-tls{{- end -}}
{{- define "leash.clientCADir" -}}/etc/leash-client-ca{{- end -}}
{{- define "leash.clientCA" -}}
{{- if or .Values.tls.clientCA.configMapName .Values.tls.clientCA.secretName -}}true{{- end -}}
{{- end -}}

{{- define "leash.tlsChecks" -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- if and (not .Values.existingConfigMap) (hasKey $s "tls") -}}
{{- fail "config.settings.tls names files the pod does not have: use the chart's tls values (tls.enabled, tls.secretName, tls.clientAuth, tls.clientCA), which mount the Secret and set settings.tls" -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $_ := required "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret with tls.crt and tls.key)" .Values.tls.secretName -}}
{{- if and .Values.tls.clientCA.configMapName .Values.tls.clientCA.secretName -}}
{{- fail "tls.clientCA: give configMapName or secretName, not both" -}}
{{- end -}}
{{- if and (include "leash.clientCA" .) (eq .Values.tls.clientAuth "none") -}}
{{- fail "tls.clientCA is set but tls.clientAuth is none: the CA bundle only applies when client certificates are asked for (optional or required)" -}}
{{- end -}}
{{- if not (default (dict) .Values.podSecurityContext).fsGroup -}}
{{- fail "tls.enabled needs podSecurityContext.fsGroup: the certificate Secret is mounted with mode 0440, readable by Leash through that group" -}}
{{- end -}}
{{- else if include "leash.clientCA" . -}}
{{- fail "tls.clientCA is set but tls.enabled is false: client certificates need TLS on the API port" -}}
{{- end -}}
{{- end -}}

{{/* The Ingress: its host (ingress.host, or the issuer's) and scheme. */}}
{{- define "leash.ingressHost" -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- if .Values.ingress.host -}}
{{- lower .Values.ingress.host -}}
{{- else if $s.issuer -}}
{{- lower (urlParse (toString $s.issuer)).hostname -}}
{{- else -}}
{{- fail "ingress.host is required when config.settings.issuer is not given (existingConfigMap): the Ingress needs the issuer's host" -}}
{{- end -}}
{{- end -}}

{{- define "leash.ingressScheme" -}}
{{- if or .Values.ingress.tls.secretName .Values.ingress.tls.external -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* The Ingress must publish Leash at the URL its tokens and discovery advertise. */}}
{{- define "leash.ingressChecks" -}}
{{- if .Values.ingress.enabled -}}
{{- $host := include "leash.ingressHost" . -}}
{{- if or (regexMatch "^[0-9.]+$" $host) (contains ":" $host) -}}
{{- fail (printf "ingress: the Ingress host would be %s, an IP address; an Ingress host is a DNS name: use a DNS name in config.settings.issuer" $host) -}}
{{- end -}}
{{- $scheme := include "leash.ingressScheme" . -}}
{{- $s := include "leash.settings" . | fromJson -}}
{{- if $s.issuer -}}
{{- $issuer := toString $s.issuer -}}
{{- $u := urlParse $issuer -}}
{{- $issuerHost := lower $u.hostname -}}
{{- $hostOK := eq $issuerHost $host -}}
{{- if hasPrefix "*." $host -}}
{{- $hostOK = regexMatch (printf "^[^.]+%s$" (trimPrefix "*" $host | replace "." "\\.")) $issuerHost -}}
{{- end -}}
{{- if not $hostOK -}}
{{- fail (printf "ingress: config.settings.issuer is %s (host %s) but the Ingress serves host %s (ingress.host): tokens and discovery would advertise a URL this Ingress does not serve. Make them agree (an empty ingress.host takes the issuer's)" $issuer $issuerHost $host) -}}
{{- end -}}
{{- if ne $u.scheme $scheme -}}
{{- if eq $scheme "http" -}}
{{- fail (printf "ingress: config.settings.issuer is %s but the Ingress serves http (no ingress.tls.secretName): set ingress.tls.secretName, or ingress.tls.external: true when TLS is terminated for it elsewhere (a load balancer certificate, the controller's default certificate)" $issuer) -}}
{{- else -}}
{{- fail (printf "ingress: config.settings.issuer is %s but the Ingress serves https (ingress.tls): use the https issuer, or drop ingress.tls" $issuer) -}}
{{- end -}}
{{- end -}}
{{- $port := trimPrefix ":" (regexFind ":[0-9]+$" $u.host) -}}
{{- if and $port (ne $port (ternary "443" "80" (eq $scheme "https"))) -}}
{{- fail (printf "ingress: config.settings.issuer is %s, on port %s, but an Ingress serves %s on port %s: drop the port from the issuer, or publish Leash another way" $issuer $port $scheme (ternary "443" "80" (eq $scheme "https"))) -}}
{{- end -}}
{{- $path := printf "%s/" (trimSuffix "/" $u.path) -}}
{{- $covered := false -}}
{{- range .Values.ingress.paths -}}
{{- if and (ne .pathType "Exact") (hasPrefix (printf "%s/" (trimSuffix "/" .path)) $path) -}}
{{- $covered = true -}}
{{- end -}}
{{- end -}}
{{- if not $covered -}}
{{- fail (printf "ingress: config.settings.issuer is %s but no Prefix path in ingress.paths covers %s: the token, JWKS and discovery URLs under the issuer would not reach Leash" $issuer (default "/" $u.path)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Worker processes per pod (`leash serve --workers`): `workers` when set, else the
container's CPU limit rounded down ("2" -> 2, "1500m" -> 1, "500m" -> 1), at least 1;
no CPU limit: 1 (the node's cores are not the pod's to take).
*/}}
{{- define "leash.workers" -}}
{{- if .Values.workers -}}
{{- int .Values.workers -}}
{{- else -}}
{{- $cpu := toString (dig "limits" "cpu" "" (.Values.resources | default dict)) -}}
{{- $n := 1 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $n = div (int (trimSuffix "m" $cpu)) 1000 -}}
{{- else if $cpu -}}
{{- $n = int (floor (float64 $cpu)) -}}
{{- end -}}
{{- max 1 $n -}}
{{- end -}}
{{- end -}}
