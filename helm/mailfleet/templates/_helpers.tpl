{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "mailfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; each component appends "-<component>". */}}
{{- define "mailfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mailfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mailfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: mailfleet
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector of one component: pass (dict "root" $ "name" "smtp-gateway"). */}}
{{- define "mailfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailfleet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "mailfleet.credentialsSecret" -}}
{{- printf "%s-credentials" (include "mailfleet.fullname" .) -}}
{{- end -}}

{{/*
The services: values key, name (= binary), protocol ports (service port,
container port, setting, whether it is implicit TLS) and which secrets each
needs (least privilege: only mailstore sees the database URL).
*/}}
{{- define "mailfleet.components" -}}
items:
  - key: mailstore
    name: mailstore
    grpc: true
    needs: [database, amqp, s3, admin]
    ports: []
  - key: smtpGateway
    name: smtp-gateway
    needs: [amqp, s3]
    ports:
      - { name: smtp, port: 25, containerPort: 2525, setting: SMTP_LISTEN, tls: false }
      - { name: submission, port: 587, containerPort: 2587, setting: SUBMISSION_LISTEN, tls: false }
      - { name: submissions, port: 465, containerPort: 2465, setting: SUBMISSIONS_LISTEN, tls: true }
  - key: deliveryWorker
    name: delivery-worker
    needs: [amqp, s3]
    ports: []
  - key: imapFrontend
    name: imap-frontend
    needs: [amqp]
    ports:
      - { name: imap, port: 143, containerPort: 1143, setting: IMAP_LISTEN, tls: false }
      - { name: imaps, port: 993, containerPort: 1993, setting: IMAPS_LISTEN, tls: true }
      - { name: sieve, port: 4190, containerPort: 4190, setting: SIEVE_LISTEN, tls: false }
  - key: pop3Frontend
    name: pop3-frontend
    needs: [s3]
    ports:
      - { name: pop3, port: 110, containerPort: 1110, setting: POP3_LISTEN, tls: false }
      - { name: pop3s, port: 995, containerPort: 1995, setting: POP3S_LISTEN, tls: true }
{{- end -}}

{{/* A secret-backed variable: (dict "env" NAME "secret" S "key" K). */}}
{{/*
The Secret holding rspamd's controller password: rspamd.existingSecret, or
the one the chart makes (templates/rspamd.yaml).
*/}}
{{- define "mailfleet.rspamdSecret" -}}
{{- .Values.rspamd.existingSecret | default (printf "%s-rspamd" (include "mailfleet.fullname" .)) -}}
{{- end -}}

{{- define "mailfleet.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end -}}

{{/*
SIGTERM starts the services' drain (config.shutdown_grace); Kubernetes kills
the pod terminationGracePeriodSeconds after the preStop hook began. Refuse a
grace period that would cut the drain short.
*/}}
{{- define "mailfleet.validateGrace" -}}
{{- $g := toString (default "30s" .Values.config.shutdown_grace) -}}
{{- $secs := 0 -}}
{{- if hasSuffix "ms" $g -}}
{{- $secs = 1 -}}
{{- else if hasSuffix "s" $g -}}
{{- $secs = trimSuffix "s" $g | float64 | ceil | int -}}
{{- else if hasSuffix "m" $g -}}
{{- $secs = mul (trimSuffix "m" $g | float64 | ceil | int) 60 -}}
{{- else if hasSuffix "h" $g -}}
{{- $secs = mul (trimSuffix "h" $g | float64 | ceil | int) 3600 -}}
{{- else -}}
{{- $secs = $g | float64 | ceil | int -}}
{{- end -}}
{{- $need := add $secs (int .Values.preStopSleepSeconds) 5 -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $need) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least config.shutdown_grace (%s) + preStopSleepSeconds (%d) + 5 = %d" (int .Values.terminationGracePeriodSeconds) $g (int .Values.preStopSleepSeconds) (int $need)) -}}
{{- end -}}
{{- end -}}
