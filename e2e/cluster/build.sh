#!/usr/bin/env bash
# Builds the pinned upstream Kubernetes binaries from Go modules and prints
# the directory that holds them. Cached outside the clone, keyed by version:
#   ${PREDASTORE_K8S_CACHE:-$HOME/.cache/predastore/k8s}/<version>/bin
# Usage: e2e/cluster/build.sh [binary ...]   (default: the control plane and kubectl)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
# The staging modules (k8s.io/api, client-go, ...) are published as
# v0.<minor>.<patch>; k8s.io/kubernetes requires them as v0.0.0 with
# replace lines into its own tree, which do not apply to a dependency, so
# the builder module replaces each with its published release.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
cache="${PREDASTORE_K8S_CACHE:-$HOME/.cache/predastore/k8s}/$K8S_VERSION"
bins=("$@")
[ "${#bins[@]}" -gt 0 ] || bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing=()
for b in "${bins[@]}"; do
  [ -x "$cache/bin/$b" ] || missing+=("$b")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "$cache/bin"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: go is needed to build Kubernetes $K8S_VERSION" >&2; exit 1; }
src="$cache/src"
mkdir -p "$src" "$cache/bin"
pkgs=()
for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
log="$cache/build.log"
# fail STEP: the end of the log, then exit.
fail() { echo "build.sh: $1 failed; the end of $log:" >&2; tail -n 40 "$log" >&2; exit 1; }
echo "build.sh: resolving k8s.io/kubernetes@$K8S_VERSION for ${missing[*]}" >&2
(
  cd "$src"
  if ! grep -q "^replace" go.mod 2>/dev/null; then
    printf 'module predastore.io/k8s-binaries\n\ngo 1.24.0\n' >go.mod
    modfile="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile" | while read -r m; do
      echo "replace $m => $m $STAGING_VERSION" >>go.mod
    done
  fi
  go get "${pkgs[@]/%/@$K8S_VERSION}"
) >"$log" 2>&1 || fail "resolving modules"

ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1"
  ldflags+=" -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
echo "build.sh: building ${missing[*]} ($K8S_VERSION); a cold build takes minutes" >&2
start=$SECONDS
(
  cd "$src"
  CGO_ENABLED=0 go build -trimpath -p "${GO_BUILD_JOBS:-2}" -ldflags "$ldflags" -o "$cache/bin/" "${pkgs[@]}"
) >>"$log" 2>&1 || fail "go build"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$cache/bin"
