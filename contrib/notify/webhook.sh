#!/bin/sh
# certctl [report] notify example: POST the JSON document on stdin to a
# webhook.
#   notify = ["/bin/sh", "/usr/share/doc/certctl/notify/webhook.sh", "https://hooks.example/certctl"]
# (through /bin/sh: the Debian package installs documentation files 0644;
# or copy it to /usr/local/bin and name it alone).
# The URL is the first argument, or $CERTCTL_WEBHOOK_URL. The document is a
# report (CERTCTL_NOTIFY_KIND=report, schema certctl.report/v1) or a failure
# notice (CERTCTL_NOTIFY_KIND=failure, schema certctl.failure/v1); the kind
# is sent as the X-Certctl-Notify-Kind header too.
# An HTTP error or a timeout exits non-zero: certctl logs it and counts it in
# certctl_notify_failures_total (the run itself does not fail).
set -eu
url=${1:-${CERTCTL_WEBHOOK_URL:-}}
if [ -z "$url" ]; then
    echo "webhook.sh: give the URL as the first argument or in CERTCTL_WEBHOOK_URL" >&2
    exit 2
fi
exec curl --silent --show-error --fail \
    --connect-timeout 10 --max-time 30 \
    --retry 2 --retry-delay 2 \
    -H 'Content-Type: application/json' \
    -H "X-Certctl-Notify-Kind: ${CERTCTL_NOTIFY_KIND:-report}" \
    --data-binary @- \
    -o /dev/null \
    "$url"
