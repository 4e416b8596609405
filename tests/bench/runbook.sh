#!/bin/sh
# The hand-run deploy runbook, as a script: for each node in turn, copy the new
# version's directory over with scp, point the live link at it with `ln -sfn`,
# validate, reload. No verification, no rollback, one SSH connection per command
# (no ControlMaster), which is how it is done by hand.
#
#   sh tests/bench/runbook.sh NODES STAGE VERSION KEY KNOWN_HOSTS SSH_CONFIG
#
# NODES: one node a line, tab-separated: address, base_dir, validate, reload.
# STAGE/VERSION: a directory holding the four PEM files.
# SSH_CONFIG: the lab's ssh_config (the same key exchange certctl uses).
set -eu

nodes="$1" stage="$2" version="$3" key="$4" known="$5" config="$6"
user=certctl-edge
opts="-F $config -i $key -o UserKnownHostsFile=$known -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10"

tab="$(printf '\t')"
while IFS="$tab" read -r addr base validate reload; do
    # shellcheck disable=SC2086 # $opts is a word list
    scp -q -r -p $opts "$stage/$version" "$user@$addr:$base/archive/www/" </dev/null
    # shellcheck disable=SC2086
    ssh $opts "$user@$addr" "ln -sfn ../archive/www/$version $base/live/www && $validate && $reload" </dev/null
done <"$nodes"
