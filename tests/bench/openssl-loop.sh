#!/bin/sh
# The scan benchmark's baseline: one endpoint after another, what a cron job
# around openssl does. Prints each endpoint's notAfter line.
#
#   sh tests/bench/openssl-loop.sh LIST CAFILE    (LIST: `host:port sni` a line)
set -u
while read -r addr sni; do
    printf '%s %s ' "$addr" "$sni"
    openssl s_client -connect "$addr" -servername "$sni" -CAfile "$2" </dev/null 2>/dev/null |
        openssl x509 -noout -enddate
done <"$1"
