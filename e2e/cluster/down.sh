#!/usr/bin/env bash
# Stops what e2e/cluster/up.sh DIR started (state stays under DIR).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir="$1"
stop_order=(kube-scheduler kube-controller-manager kube-apiserver etcd)
for p in "${stop_order[@]}"; do
  f="$dir/$p.pid"
  [ -f "$f" ] || continue
  pid="$(cat "$f")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
done
