#!/bin/sh
# certctl [report] notify example: mail the JSON document on stdin through a
# sendmail-compatible command (postfix, exim, msmtp, nullmailer...).
#   notify = ["/bin/sh", "/usr/share/doc/certctl/notify/sendmail.sh", "oncall@example.org"]
# (through /bin/sh: the Debian package installs documentation files 0644;
# or copy it to /usr/local/bin and name it alone).
# The recipient is the first argument, or $CERTCTL_MAIL_TO; the sender
# $CERTCTL_MAIL_FROM (default certctl@<host>); the command $SENDMAIL
# (default /usr/sbin/sendmail). The subject says the kind: a failure notice
# (CERTCTL_NOTIFY_KIND=failure) or a report (CERTCTL_NOTIFY_KIND=report).
# A failing sendmail exits non-zero: certctl logs it and counts it in
# certctl_notify_failures_total (the run itself does not fail).
set -eu
to=${1:-${CERTCTL_MAIL_TO:-}}
if [ -z "$to" ]; then
    echo "sendmail.sh: give the recipient as the first argument or in CERTCTL_MAIL_TO" >&2
    exit 2
fi
host=$(cat /proc/sys/kernel/hostname 2>/dev/null || echo localhost)
from=${CERTCTL_MAIL_FROM:-certctl@$host}
case ${CERTCTL_NOTIFY_KIND:-report} in
    failure) subject="certctl on $host: a renewal or deployment FAILED" ;;
    *) subject="certctl on $host: certificate report needs attention" ;;
esac
{
    printf 'From: %s\nTo: %s\nSubject: %s\nContent-Type: application/json; charset=utf-8\nX-Certctl-Notify-Kind: %s\n\n' \
        "$from" "$to" "$subject" "${CERTCTL_NOTIFY_KIND:-report}"
    cat
} | "${SENDMAIL:-/usr/sbin/sendmail}" -i -f "$from" -- "$to"
