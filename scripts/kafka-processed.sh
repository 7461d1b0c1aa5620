#!/usr/bin/env bash
# Processed events/s through Kafka, as recorded in BENCHMARKS.md ("Kafka mode").
#
#   scripts/kafka-processed.sh OSPREY_BIN INGEST_URL PROCESSOR_URL DSN_KEY ADMIN_TOKEN EVENTS SEED
#
# Runs `osprey loadgen` against a `--role ingest` node, then sends one marker event and polls the
# `--role processor` node's event API for it. The loadgen sends to project 1, whose records stay
# on one partition and are processed in order, so the marker being served means every event
# before it was processed. Use a fresh SEED per run: the same seed repeats event ids, and
# repeats are dropped as duplicates.
set -euo pipefail
bin=$1 ingest=$2 processor=$3 key=$4 token=$5 events=$6 seed=$7
host=${ingest#http://}
t0=$(date +%s.%N)
"$bin" loadgen --dsn "http://$key@$host/1" --events "$events" --concurrency 16 --mix errors \
    --seed "$seed" --quiet
t1=$(date +%s.%N)
id=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '{"event_id":"%s"}\n{"type":"event"}\n{"event_id":"%s","message":"marker","level":"error"}\n' \
    "$id" "$id" | curl -sf -o /dev/null -XPOST --data-binary @- \
    "$ingest/api/1/envelope/?sentry_key=$key"
for _ in $(seq 1 6000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
        "$processor/api/0/projects/default/default/events/$id/")
    [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || { echo "marker not processed within 600 s" >&2; exit 1; }
t2=$(date +%s.%N)
awk -v n="$events" -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
    printf "load done after %.1f s; marker processed after %.1f s; processed %.0f events/s\n",
        b - a, c - a, n / (c - a) }'
