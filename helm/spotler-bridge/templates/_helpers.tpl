{{/*
Names, labels and shared pod pieces for spotler-bridge.
*/}}

{{- define "spotler-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name, at most 52 characters so "<fullname>-ingress-<hash>-<id>" stays under 63. */}}
{{- define "spotler-bridge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "spotler-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spotler-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spotler-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "spotler-bridge.labels" -}}
helm.sh/chart: {{ include "spotler-bridge.chart" . }}
{{ include "spotler-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spotler-bridge
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: call with (dict "root" $ "component" "ingress"). */}}
{{- define "spotler-bridge.componentLabels" -}}
{{ include "spotler-bridge.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spotler-bridge.componentSelectorLabels" -}}
{{ include "spotler-bridge.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spotler-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "spotler-bridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "spotler-bridge.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "spotler-bridge.kafkaCaFile" -}}
/etc/spotler-bridge/kafka-ca/{{ .Values.kafka.tls.caKey }}
{{- end -}}

{{/*
Checks that JSON Schema cannot express; `helm template`/`helm install` stop with the message.
*/}}
{{- define "spotler-bridge.validate" -}}
{{- $v := .Values -}}
{{- if not (or $v.ingress.enabled $v.egress.enabled) -}}
{{- fail "ingress.enabled and egress.enabled are both false: nothing to deploy" -}}
{{- end -}}
{{- $need := addf $v.shutdownTimeout 5 -}}
{{- if $v.ingress.enabled -}}
{{- $need = addf $need $v.ingress.preStopSleepSeconds -}}
{{- end -}}
{{- if lt (float64 $v.terminationGracePeriodSeconds) (float64 $need) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be at least shutdownTimeout + 5%s = %v, or Kubernetes kills the bridge before it has spooled or committed its in-flight work" $v.terminationGracePeriodSeconds (ternary " + ingress.preStopSleepSeconds" "" $v.ingress.enabled) $need) -}}
{{- end -}}
{{- if and $v.egress.enabled (ge (float64 $v.egress.circuitOpenSeconds) (float64 $v.shutdownTimeout)) -}}
{{- fail (printf "egress.circuitOpenSeconds (%v) must be shorter than shutdownTimeout (%v): a breaker open that long outlasts a graceful stop" $v.egress.circuitOpenSeconds $v.shutdownTimeout) -}}
{{- end -}}
{{- if and $v.ingress.enabled (eq $v.webhook.auth "token") (not $v.secrets.webhookTokens.name) -}}
{{- fail "secrets.webhookTokens.name is required for ingress (or set webhook.auth=none to accept unauthenticated webhooks on purpose)" -}}
{{- end -}}
{{- if and $v.egress.enabled (not $v.secrets.apiKey.name) -}}
{{- fail "secrets.apiKey.name is required for egress" -}}
{{- end -}}
{{- range $c := list "ingress" "egress" -}}
{{- $a := (index $v $c).autoscaling -}}
{{- if and (index $v $c).enabled $a.enabled -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $c $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- if and (not $a.targetCPUUtilizationPercentage) (not $a.targetMemoryUtilizationPercentage) -}}
{{- fail (printf "%s.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $ir := $v.ingress.ingressResource -}}
{{- if and $v.ingress.enabled $ir.enabled (not $ir.tls) (not $ir.tlsTerminatedUpstream) -}}
{{- fail "ingress.ingressResource.tls is required when the Ingress is enabled: the platform calls only HTTPS URLs and the bearer token must not travel in clear (set ingress.ingressResource.tlsTerminatedUpstream=true if TLS ends in front of the Ingress)" -}}
{{- end -}}
{{- if and $v.ingress.enabled (eq $v.ingress.spool.medium "Memory") (ne $v.ingress.spool.type "emptyDir") -}}
{{- fail "ingress.spool.medium applies to emptyDir only" -}}
{{- end -}}
{{- if and $v.ingress.enabled (eq $v.ingress.spool.type "shared") (not $v.ingress.spool.shared.claimName) -}}
{{- fail "ingress.spool.shared.claimName is required with ingress.spool.type=shared: an existing ReadWriteMany claim that every ingress pod mounts" -}}
{{- end -}}
{{- if and $v.ingress.enabled (ne $v.ingress.spool.type "shared") $v.ingress.spool.shared.claimName -}}
{{- fail "ingress.spool.shared.claimName applies to ingress.spool.type=shared only" -}}
{{- end -}}
{{- end -}}

{{/*
Pod template shared by both workloads. Call with
(dict "root" $ "component" "ingress|egress" "values" .Values.ingress).
*/}}
{{- define "spotler-bridge.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $w := .values -}}
{{- $component := .component -}}
metadata:
  labels:
    {{- include "spotler-bridge.componentLabels" (dict "root" $root "component" $component) | nindent 4 }}
    {{- with $w.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- with $w.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "spotler-bridge.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  enableServiceLinks: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $w.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: bridge
      image: {{ include "spotler-bridge.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        - {{ $component }}
      ports:
        {{- if eq $component "ingress" }}
        - name: http
          containerPort: {{ $v.ports.http }}
          protocol: TCP
        {{- end }}
        - name: ops
          containerPort: {{ $v.ports.ops }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "spotler-bridge.fullname" $root }}
      env:
        {{- if eq $component "ingress" }}
        - name: BRIDGE_SPOOL_DIR
          value: {{ $w.spool.mountPath | quote }}
        - name: BRIDGE_INSTANCE
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if $v.secrets.webhookTokens.name }}
        - name: BRIDGE_WEBHOOK_TOKENS
          valueFrom:
            secretKeyRef:
              name: {{ $v.secrets.webhookTokens.name }}
              key: {{ $v.secrets.webhookTokens.key }}
        {{- end }}
        {{- else }}
        - name: BRIDGE_SPOTLER_API_KEY
          valueFrom:
            secretKeyRef:
              name: {{ $v.secrets.apiKey.name }}
              key: {{ $v.secrets.apiKey.key }}
        {{- end }}
        {{- if hasPrefix "SASL_" $v.kafka.securityProtocol }}
        - name: BRIDGE_KAFKA_SASL_USERNAME
          valueFrom:
            secretKeyRef:
              name: {{ $v.kafka.sasl.existingSecret }}
              key: {{ $v.kafka.sasl.usernameKey }}
        - name: BRIDGE_KAFKA_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ $v.kafka.sasl.existingSecret }}
              key: {{ $v.kafka.sasl.passwordKey }}
        {{- end }}
        {{- with $w.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if and (eq $component "ingress") (gt (int $w.preStopSleepSeconds) 0) }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", "{{ $w.preStopSleepSeconds }}"]
      {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: ops
        {{- toYaml $v.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: ops
        {{- toYaml $v.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: ops
        {{- toYaml $v.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $w.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if eq $component "ingress" }}
        - name: spool
          mountPath: {{ $w.spool.mountPath }}
        {{- end }}
        {{- if $v.kafka.tls.caSecret }}
        - name: kafka-ca
          mountPath: /etc/spotler-bridge/kafka-ca
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $v.tmpSizeLimit }}
    {{- if and (eq $component "ingress") (eq $w.spool.type "shared") }}
    - name: spool
      persistentVolumeClaim:
        claimName: {{ $w.spool.shared.claimName }}
    {{- end }}
    {{- if and (eq $component "ingress") (eq $w.spool.type "emptyDir") }}
    - name: spool
      emptyDir:
        {{- with $w.spool.medium }}
        medium: {{ . }}
        {{- end }}
        sizeLimit: {{ $w.spool.sizeLimit }}
    {{- end }}
    {{- if $v.kafka.tls.caSecret }}
    - name: kafka-ca
      {{- if eq $v.kafka.tls.caKind "ConfigMap" }}
      configMap:
        name: {{ $v.kafka.tls.caSecret }}
      {{- else }}
      secret:
        secretName: {{ $v.kafka.tls.caSecret }}
      {{- end }}
        items:
          - key: {{ $v.kafka.tls.caKey }}
            path: {{ $v.kafka.tls.caKey }}
    {{- end }}
  {{- with $w.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $w.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $w.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  topologySpreadConstraints:
    {{- if $w.topologySpreadConstraints }}
    {{- toYaml $w.topologySpreadConstraints | nindent 4 }}
    {{- else }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "spotler-bridge.componentSelectorLabels" (dict "root" $root "component" $component) | nindent 10 }}
    {{- end }}
{{- end -}}

{{/*
A number as an env var string: integral values without an exponent (YAML numbers reach templates
as float64, which print as 1e+06), others as they are.
*/}}
{{- define "spotler-bridge.num" -}}
{{- if eq (float64 .) (float64 (int64 .)) -}}
{{- int64 . | quote -}}
{{- else -}}
{{- . | toString | quote -}}
{{- end -}}
{{- end -}}

{{/*
The public URL of POST /webhooks derived from the chart's Ingress: https://<first host><first
path>, or "" when no Ingress is rendered (then set platform.publicUrl).
*/}}
{{- define "spotler-bridge.publicUrl" -}}
{{- $r := .Values.ingress.ingressResource -}}
{{- if and .Values.ingress.enabled $r.enabled $r.hosts -}}
{{- $h := first $r.hosts -}}
{{- if $h.host -}}
{{- $path := "/webhooks" -}}
{{- with $h.paths }}{{ $path = (first .).path }}{{ end -}}
https://{{ $h.host }}{{ $path }}
{{- end -}}
{{- end -}}
{{- end -}}
