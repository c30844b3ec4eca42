#!/usr/bin/env bash
# Builds etcd from Go modules when none is installed (Debian's etcd-server
# is the usual source) and prints the binary's path. Cached outside the
# clone: ${PREDASTORE_K8S_CACHE:-$HOME/.cache/predastore/k8s}/etcd-<version>.
set -euo pipefail
ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"
cache="${PREDASTORE_K8S_CACHE:-$HOME/.cache/predastore/k8s}/etcd-$ETCD_VERSION"
if [ ! -x "$cache/etcd" ]; then
  mkdir -p "$cache"
  echo "build-etcd.sh: building etcd $ETCD_VERSION" >&2
  CGO_ENABLED=0 GOBIN="$cache" GOFLAGS=-trimpath go install "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  mv "$cache/server" "$cache/etcd"
fi
echo "$cache/etcd"
