#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback, with its state under
# DIR: etcd, kube-apiserver (real certificates, RBAC, a ServiceAccount
# issuer), kube-controller-manager (garbage collector, namespace, StatefulSet
# and token controllers) and kube-scheduler. Writes DIR/kubeconfig
# (cluster-admin) and returns once the API server is ready.
#   e2e/cluster/up.sh DIR      then      e2e/cluster/down.sh DIR
# Binaries: e2e/cluster/build.sh (pinned, built from Go modules, cached;
# kubectl of the same version is built beside them, in $(build.sh));
# etcd: the one on PATH (Debian's etcd-server), else built from Go modules.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
if [ -f "$dir/kube-apiserver.pid" ] && kill -0 "$(cat "$dir/kube-apiserver.pid")" 2>/dev/null; then
  echo "up.sh: a control plane already runs under $dir" >&2
  exit 1
fi
bin="$("$here/build.sh")"
etcd_bin="$(command -v etcd || "$here/build-etcd.sh")"
pki="$dir/pki"
mkdir -p "$pki" "$dir/logs"

# Free loopback ports, chosen by the kernel.
read -r etcd_port etcd_peer api_port kcm_port sched_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

# --- certificates -----------------------------------------------------------
ssl() { openssl "$@" 2>/dev/null; }
if [ ! -f "$pki/ca.crt" ]; then
  ssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=predastore-e2e-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt"
  ssl genrsa -out "$pki/sa.key" 2048
  ssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
fi
# cert NAME SUBJECT [SANs]: a key pair signed by the CA.
cert() {
  local name="$1" subj="$2" san="${3:-}" ext="$pki/$1.ext"
  [ -f "$pki/$name.crt" ] && return
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  ssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$pki/$name.key" -out "$pki/$name.csr"
  ssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$ext" -out "$pki/$name.crt"
}
cert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=predastore-e2e-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"

server="https://127.0.0.1:$api_port"
kubeconfig() { # NAME -> DIR/NAME.kubeconfig (admin -> DIR/kubeconfig)
  local out="$dir/$1.kubeconfig"
  [ "$1" = admin ] && out="$dir/kubeconfig"
  cat >"$out" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: predastore-e2e
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $pki/$1.crt
    client-key: $pki/$1.key
contexts:
- name: predastore-e2e
  context: {cluster: predastore-e2e, user: $1}
current-context: predastore-e2e
YAML
}
kubeconfig admin
kubeconfig controller-manager
kubeconfig scheduler

# start NAME COMMAND...: in its own session, so it outlives this script.
start() {
  local name="$1"
  shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

start etcd "$etcd_bin" --name e2e --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "e2e=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --quota-backend-bytes 2147483648

start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --allow-privileged \
  --service-cluster-ip-range 10.0.0.0/24 \
  --endpoint-reconciler-type none

# wait_for WHAT PROCESSES COMMAND...: polls COMMAND for 120 s while the
# PROCESSES run; on failure prints the log of the one that died.
wait_for() {
  local what="$1" procs="$2"
  shift 2
  for _ in $(seq 1 240); do
    for p in $procs; do
      if ! kill -0 "$(cat "$dir/$p.pid")" 2>/dev/null; then
        echo "up.sh: $p exited; the end of $dir/logs/$p.log:" >&2
        tail -n 30 "$dir/logs/$p.log" >&2
        "$here/down.sh" "$dir" || true
        exit 1
      fi
    done
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "up.sh: $what not ready after 120 s; logs under $dir/logs" >&2
  "$here/down.sh" "$dir" || true
  exit 1
}
k() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

# The controller-manager and scheduler read their RBAC and the
# authentication ConfigMap at start: the API server must be ready first.
wait_for "the API server" "etcd kube-apiserver" k get --raw /readyz

start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials --controllers '*'

start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false

# Ready once the controller-manager works: it made the default
# ServiceAccount.
wait_for "the controller-manager" "etcd kube-apiserver kube-controller-manager kube-scheduler" \
  k -n default get serviceaccount default
echo "up.sh: API server ready at $server; kubeconfig: $dir/kubeconfig" >&2
