#!/usr/bin/env bash
# End to end on kind: nodes with Open vSwitch, the image built and loaded, the chart
# installed, the example RemoteDevice applied, one Ready TunnelPort per node and its port in
# each node's OVS, the agents held to their own node by the admission policy; then the
# device deleted and every TunnelPort and OVS port gone.
#
# Needs docker, kind, kubectl and helm (scripts/install-helm.sh). Cannot run on the
# development machines of this project (no Docker engine); CI runs it (.github/workflows/e2e.yml).
#
#   hack/kind-e2e.sh                 # creates and deletes the cluster rdo-e2e
#   KEEP_CLUSTER=1 hack/kind-e2e.sh  # leaves it running for a look around
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CLUSTER=${CLUSTER:-rdo-e2e}
IMAGE=${IMAGE:-remote-device-operator:e2e}
NAMESPACE=${NAMESPACE:-remote-device-operator}
RELEASE=${RELEASE:-rdo}
DEVICE=${DEVICE:-examples/remote-device.yaml}
TIMEOUT=${TIMEOUT:-180}
HELM=${HELM:-$(command -v helm || echo "$root/.tools/bin/helm")}

log() { printf '\n== %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# Polls "$@" every 2 s until it succeeds or TIMEOUT seconds pass.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for: $what"
    sleep 2
  done
}

diagnose() {
  log "diagnostics"
  kubectl get nodes -o wide || true
  kubectl -n "$NAMESPACE" get pods -o wide || true
  kubectl get remotedevices -A -o wide || true
  kubectl get tunnelports -o wide || true
  kubectl describe tunnelports || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -n 40 || true
  kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/component=controller --tail=100 --prefix || true
  kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/component=agent --tail=100 --prefix || true
  for node in $(kind get nodes --name "$CLUSTER"); do
    echo "--- $node"; docker exec "$node" ovs-vsctl show || true
  done
}

cleanup() {
  local status=$?
  ((status == 0)) || diagnose
  if [[ -z ${KEEP_CLUSTER:-} ]]; then
    kind delete cluster --name "$CLUSTER" || true
  fi
  exit "$status"
}

log "kind cluster $CLUSTER"
# The trap first, so a half-created cluster is removed too.
trap cleanup EXIT
kind create cluster --name "$CLUSTER" --config hack/kind-config.yaml --wait 120s
nodes=$(kind get nodes --name "$CLUSTER")

log "Open vSwitch on every node (userspace datapath: no kernel module needed on the host)"
for node in $nodes; do
  docker exec -i "$node" bash < hack/kind-node-ovs.sh
done

log "image $IMAGE"
docker build -t "$IMAGE" --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "helm install"
"$HELM" install "$RELEASE" charts/remote-device-operator \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --wait --timeout 5m
"$HELM" test "$RELEASE" --namespace "$NAMESPACE" --logs
kubectl get validatingadmissionpolicy "$RELEASE-remote-device-operator-agent-own-node" >/dev/null \
  || fail "the agent's node-restriction policy is not installed"

log "apply $DEVICE"
# The example's namespace is the tenant; create it in case the example does not.
awk '$1 == "namespace:" {print $2}' "$DEVICE" | sort -u | while read -r namespace; do
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
done
kubectl apply -f "$DEVICE"

node_count=$(kubectl get nodes --no-headers | wc -l)
# One line per TunnelPort: node, Ready status, OVS interface, ofport, remote VTEP.
tunnel_ports() {
  kubectl get tunnelports -o jsonpath='{range .items[*]}{.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status} {.status.interfaceName} {.status.ofport} {.spec.remoteIP}{"\n"}{end}'
}
every_node_ready() {
  local ready
  ready=$(tunnel_ports | awk '$2 == "True"' | cut -d' ' -f1 | sort -u | wc -l)
  [[ $ready -eq $node_count ]]
}

log "waiting for a Ready TunnelPort on each of $node_count nodes"
wait_for "every node's TunnelPort Ready" every_node_ready
kubectl get tunnelports -o wide

log "the ports in OVS"
while read -r node _ready iface ofport remote; do
  [[ -n $node ]] || continue
  actual_ofport=$(docker exec "$node" ovs-vsctl get Interface "$iface" ofport)
  actual_remote=$(docker exec "$node" ovs-vsctl get Interface "$iface" options:remote_ip | tr -d '"')
  [[ $actual_ofport == "$ofport" && $actual_ofport -gt 0 ]] \
    || fail "$node: $iface has ofport $actual_ofport in OVS, status says $ofport"
  [[ $actual_remote == "$remote" ]] || fail "$node: $iface points at $actual_remote, not $remote"
  echo "$node: $iface ofport $actual_ofport remote_ip $actual_remote"
done < <(tunnel_ports)
kubectl wait remotedevices --all -A --for=condition=Ready --timeout="${TIMEOUT}s"

log "the node-restriction policy, with an agent's own pod-bound token"
# Only the token (no admin client certificate), so the API server sees the agent.
work=$(mktemp -d)
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' \
  | base64 -d > "$work/ca.crt"
as_agent_of() {
  local node=$1 pod token
  shift
  pod=$(kubectl -n "$NAMESPACE" get pods -l app.kubernetes.io/component=agent \
    --field-selector spec.nodeName="$node" -o jsonpath='{.items[0].metadata.name}')
  token=$(kubectl -n "$NAMESPACE" create token "$RELEASE-remote-device-operator-agent" \
    --bound-object-kind Pod --bound-object-name "$pod" --duration 10m)
  kubectl --kubeconfig=/dev/null --server="$server" --certificate-authority="$work/ca.crt" \
    --token="$token" "$@"
}
port_of() {
  local names
  names=$(kubectl get tunnelports -o jsonpath="{.items[?(@.spec.nodeName==\"$1\")].metadata.name}")
  echo "${names%% *}"
}
mapfile -t node_list <<<"$nodes"
node_a=${node_list[0]}
node_b=${node_list[1]}
port_a=$(port_of "$node_a")
port_b=$(port_of "$node_b")
[[ -n $port_a && -n $port_b ]] || fail "no TunnelPort found for $node_a or $node_b"
# Allowed: its own TunnelPort's finalizers (re-set to what they are).
finalizers=$(kubectl get tunnelport "$port_a" -o jsonpath='{.metadata.finalizers}')
[[ $finalizers == *'"remotedevice.io/ovs-cleanup"'* ]] || fail "$port_a lacks the agent's finalizer: $finalizers"
as_agent_of "$node_a" patch tunnelport "$port_a" --type=merge -p "{\"metadata\":{\"finalizers\":$finalizers}}"
# Refused by the policy: another node's status, and its own TunnelPort's spec.
expect_refused() {
  local out
  if out=$("$@" 2>&1); then fail "allowed, should be refused: ${*: -4}"; fi
  grep -q 'agent-own-node' <<<"$out" || fail "refused, but not by the policy: $out"
  echo "refused as expected: $(tail -n 1 <<<"$out")"
}
expect_refused as_agent_of "$node_a" patch tunnelport "$port_b" --subresource=status --type=merge \
  -p '{"status":{"message":"written by another node'"'"'s agent"}}'
expect_refused as_agent_of "$node_a" patch tunnelport "$port_a" --type=merge -p '{"spec":{"devices":[]}}'
rm -rf "$work"

log "delete $DEVICE"
remotes=$(tunnel_ports | awk '{print $5}' | sort -u)
kubectl delete -f "$DEVICE" --wait
no_tunnel_ports() { [[ -z $(kubectl get tunnelports -o name) ]]; }
wait_for "every TunnelPort gone" no_tunnel_ports
no_ovs_ports() {
  local node remote
  for node in $nodes; do
    for remote in $remotes; do
      [[ -z $(docker exec "$node" ovs-vsctl --bare --columns=name find Interface "options:remote_ip=\"$remote\"") ]] || return 1
    done
  done
}
wait_for "every OVS tunnel port gone" no_ovs_ports

log "PASS"
