{{/* Chart name, cut to 63 characters. */}}
{{- define "tso.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name plus chart name unless the release name already contains it. */}}
{{- define "tso.fullname" -}}
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

{{- define "tso.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "tso.labels" -}}
helm.sh/chart: {{ include "tso.chart" . }}
{{ include "tso.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: thalassa-secrets-operator
{{- end }}

{{/* Selector labels (stable across upgrades). */}}
{{- define "tso.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tso.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "tso.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tso.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tso.hashKeySecret" -}}
{{- default (printf "%s-hash-key" (include "tso.fullname" .)) .Values.hashKeySecret }}
{{- end }}

{{- define "tso.leaseName" -}}
{{- default (printf "%s-leader" (include "tso.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "tso.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where credential files are mounted. */}}
{{- define "tso.credentialsDir" -}}/var/run/secrets/thalassa/credentials{{- end }}
{{- define "tso.subjectTokenDir" -}}/var/run/secrets/thalassa/serviceaccount{{- end }}

{{/* The key of credentials.existingSecret that is mounted, by credentials.type. */}}
{{- define "tso.credentialsKey" -}}
{{- $c := .Values.credentials }}
{{- if eq $c.type "token" }}{{ $c.tokenKey }}
{{- else if eq $c.type "personalAccessToken" }}{{ $c.personalAccessTokenKey }}
{{- else if eq $c.type "clientCredentials" }}{{ $c.clientSecretKey }}
{{- else }}{{ fail (printf "credentials.type must be token, personalAccessToken or clientCredentials, got %q" $c.type) }}
{{- end }}
{{- end }}

{{/* The RBAC rules the operator needs in every namespace it watches. Least privilege: no
delete, no wildcard. Secrets: get/list/watch (label-selected watch of managed Secrets), create
(server-side apply creating a Secret is authorised as create; also the hash-key Secret), patch
(server-side apply; merge patch on adoption). Events: the kube-rs Recorder creates and patches
event series. */}}
{{- define "tso.watchRules" -}}
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["thalassasecrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["thalassasecrets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# templateFrom: a label-selected watch of template ConfigMaps (secrets.thalassa.cloud/template=true).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch"]
# rolloutRestartTargets: read a workload, patch its pod template annotation.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "patch"]
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["thalassasecretstores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["thalassasecretstores/status"]
  verbs: ["patch"]
# Workload identity of stores: tokens only for the one ServiceAccount name tenants are told to
# use, never for any other ServiceAccount.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
  resourceNames: [{{ .Values.stores.serviceAccountName | quote }}]
# ThalassaPushSecrets: watch them, patch their status, and patch them to add or remove the
# cleanup finalizer (deletionPolicy: Delete). Their Secrets are read with the get above.
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["thalassapushsecrets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["thalassapushsecrets/status"]
  verbs: ["patch"]
{{- end }}

{{- define "tso.clusterRules" -}}
# Cluster mode only: cluster stores, and namespace labels for their namespaceSelector.
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["clusterthalassasecretstores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["clusterthalassasecretstores/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# ClusterThalassaSecrets: read them, write their status, and create, update and delete the
# ThalassaSecret copies they own (server-side apply creates with create+patch).
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["clusterthalassasecrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["clusterthalassasecrets/status"]
  verbs: ["patch"]
- apiGroups: ["secrets.thalassa.cloud"]
  resources: ["thalassasecrets"]
  verbs: ["create", "patch", "delete"]
{{- end }}

{{/* The Thalassa API URLs stores may use (ALLOWED_API_URLS): `stores.allowedApiUrls`, or the
public Thalassa API when empty, and always `thalassa.apiUrl`. */}}
{{- define "tso.allowedApiUrls" -}}
{{- $urls := .Values.stores.allowedApiUrls | default (list "https://api.thalassa.cloud") }}
{{- append $urls .Values.thalassa.apiUrl | uniq | join "," }}
{{- end }}

{{/* The allowed URLs as CEL map literals {scheme, host, port, path} (path without a trailing
/; empty allows every path), for the store-URL admission policy. */}}
{{- define "tso.allowedApiUrlsCel" -}}
{{- $entries := list }}
{{- range splitList "," (include "tso.allowedApiUrls" .) }}
{{- $u := urlParse . }}
{{- $scheme := lower $u.scheme }}
{{- $host := lower $u.hostname }}
{{- $port := trimPrefix ":" (trimPrefix $u.hostname $u.host) }}
{{- if not $port }}{{ $port = ternary "443" "80" (eq $scheme "https") }}{{ end }}
{{- $path := trimSuffix "/" $u.path }}
{{- $entries = append $entries (printf "{'scheme': '%s', 'host': '%s', 'port': '%s', 'path': '%s'}" $scheme $host $port $path) }}
{{- end }}
{{- printf "[%s]" (join ", " $entries) }}
{{- end }}
