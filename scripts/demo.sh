#!/usr/bin/env bash
# The demo: the operator at work on this machine, no cluster needed.
#
# Starts a throw-away Open vSwitch (userspace, dummy datapath) in a temp dir, runs the
# operator in standalone mode as node "kind-worker" of examples/nodes/, and shows:
#   1. the tunnel ports and OpenFlow rules it creates for the example RemoteDevices;
#   2. the remote end too, when ovs-vtep (Debian's openvswitch-vtep) is there: an emulated
#      top-of-rack switch managed through its hardware_vtep OVSDB (examples/vtep-gateway.yaml,
#      over ssl:), programmed once a device is attached to one of its ports, emptied when
#      that device is deleted;
#   3. what happens when the last device behind a VTEP is deleted (its port and rules go);
#   4. an OVS port deleted behind its back is put back.
# Everything (daemons, temp dir) is removed at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
echo "== building"
cargo build --quiet --locked
bin=$PWD/target/debug/remote-device-operator

work=$(mktemp -d /tmp/rdo-demo.XXXXXX)
# RDO_OVS_RUNDIR too: OVS_RUNDIR alone is OVS tools' variable, read by the operator only as a
# deprecated fallback (with a warning).
export RDO_OVS_RUNDIR=$work
export OVS_RUNDIR=$work OVS_LOGDIR=$work OVS_DBDIR=$work OVS_SYSCONFDIR=$work
tor=$work/tor
operator_pid=
# running PID: the process exists and is not a zombie (detached daemons are reparented).
running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
cleanup() {
  if [ -n "$operator_pid" ]; then
    kill "$operator_pid" 2>/dev/null || true
    wait "$operator_pid" 2>/dev/null || true
  fi
  # The switch's daemons, then the node's: each by the pid in its pidfile; waited for
  # (5 s, then SIGKILL) so nothing outlives the demo.
  local pids=() pid
  for pidfile in "$tor/ovs-vtep.pid" "$tor/ovs-vswitchd.pid" "$tor/ovsdb-server.pid" \
    "$work/ovs-vswitchd.pid" "$work/ovsdb-server.pid"; do
    if [ -f "$pidfile" ] && pid=$(cat "$pidfile") && [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # wait_for DESCRIPTION COMMAND...: up to 10 s
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what; operator log:" >&2; cat "$work/operator.log" >&2; exit 1
}

# The switch side needs ovs-vtep and the Python OVS library it runs on (both installed by
# scripts/install-deps.sh).
switch_side=
if command -v vtep-ctl >/dev/null && [ -f /usr/share/openvswitch/scripts/ovs-vtep ] &&
  /usr/bin/python3 -c 'import ovs' 2>/dev/null; then
  switch_side=1
fi
# The switch's own OVS tools: every OVS directory in $tor.
on_tor() { env OVS_RUNDIR="$tor" OVS_LOGDIR="$tor" OVS_DBDIR="$tor" OVS_SYSCONFDIR="$tor" "$@"; }
vtep() { on_tor vtep-ctl --db="unix:$tor/db.sock" "$@"; }
ours() { vtep list-ls | grep -q .; }
# gateway_ready VNIS: the operator's last VtepGateway row says Connected and Ready with VNIS.
gateway_ready() { grep '^tor1 ' "$work/operator.out" | tail -n1 | grep -Eq " $1 +True +True$"; }
none_of_ours() { ! ours; }
has_port_p1() { vtep list-ports tor1 | grep -qx p1; }
show_switch() {
  indent() { sed '/^ *$/d; s/^/   /'; }
  echo "   \$ vtep-ctl list-ls"
  vtep list-ls | indent
  echo "   \$ vtep-ctl list-bindings tor1 p1"
  vtep list-bindings tor1 p1 | indent
  local ls
  for ls in $(vtep list-ls); do
    echo "   \$ vtep-ctl list-remote-macs $ls      (the flood list: this node's VTEP)"
    vtep list-remote-macs "$ls" | indent
    echo "   \$ vtep-ctl list-local-macs $ls       (written by the switch, ovs-vtep)"
    vtep list-local-macs "$ls" | indent
  done
  echo "   Mcast_Macs_Remote rows: $(vtep --columns=_uuid list Mcast_Macs_Remote | grep -c _uuid || true)," \
    "Ucast_Macs_Remote rows: $(vtep --columns=_uuid list Ucast_Macs_Remote | grep -c _uuid || true)"
}

echo "== starting a throw-away Open vSwitch in $work"
ovsdb-tool create "$work/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server "$work/conf.db" --remote="punix:$work/db.sock" --pidfile="$work/ovsdb-server.pid" \
  --unixctl="$work/ovsdb-server.ctl" --log-file="$work/ovsdb-server.log" --detach --no-chdir
ovs-vsctl --db="unix:$work/db.sock" --no-wait init
ovs-vswitchd "unix:$work/db.sock" --enable-dummy=override --disable-system --disable-system-route \
  --pidfile="$work/ovs-vswitchd.pid" --unixctl="$work/ovs-vswitchd.ctl" \
  --log-file="$work/ovs-vswitchd.log" --detach --no-chdir 2>/dev/null
vsctl() { ovs-vsctl --db="unix:$work/db.sock" "$@"; }

mkdir "$work/manifests"
cp examples/remote-device.yaml examples/more-devices.yaml examples/other-cloud-vm.yaml \
  examples/nodes/kind-nodes.yaml "$work/manifests/"

secrets=()
if [ -n "$switch_side" ]; then
  echo "== starting an emulated top-of-rack switch (ovs-vtep) in $tor"
  mkdir -p "$tor/pki" "$work/secrets/tor1-ovsdb-client"
  # A CA, the switch's certificate and the operator's client certificate (X.509 v3).
  pki=$tor/pki
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=rdo demo CA" \
    -keyout "$pki/ca-key.pem" -out "$pki/ca.pem" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$pki/leaf.ext"
  for who in switch client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$pki/$who-key.pem" \
      -out "$pki/$who.csr" 2>/dev/null
    openssl x509 -req -in "$pki/$who.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" \
      -CAcreateserial -days 1 -extfile "$pki/leaf.ext" -out "$pki/$who.pem" 2>/dev/null
  done
  # The Secret of examples/vtep-gateway.yaml, laid out as a mounted Secret.
  cp "$pki/client-key.pem" "$work/secrets/tor1-ovsdb-client/tls.key"
  cp "$pki/client.pem" "$work/secrets/tor1-ovsdb-client/tls.crt"
  cp "$pki/ca.pem" "$work/secrets/tor1-ovsdb-client/ca.crt"
  secrets=(--secrets-dir "$work/secrets")

  # Its own ovsdb-server (Open_vSwitch + hardware_vtep; ssl: on a port the kernel picks) and
  # ovs-vswitchd; a bridge tor1 with the device-facing ports p1, p2; the Physical_Switch
  # with its VTEP address; then ovs-vtep, which publishes the ports and does what the
  # database says.
  on_tor ovsdb-tool create "$tor/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  on_tor ovsdb-tool create "$tor/vtep.db" /usr/share/openvswitch/vtep.ovsschema
  on_tor ovsdb-server "$tor/conf.db" "$tor/vtep.db" --remote="punix:$tor/db.sock" \
    --remote=pssl:0:127.0.0.1 --private-key="$pki/switch-key.pem" \
    --certificate="$pki/switch.pem" --ca-cert="$pki/ca.pem" \
    --pidfile="$tor/ovsdb-server.pid" --unixctl="$tor/ovsdb-server.ctl" \
    --log-file="$tor/ovsdb-server.log" --detach --no-chdir
  ssl_port() { sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$tor/ovsdb-server.log" | tail -n1 | grep .; }
  wait_for "the switch's ssl: port" ssl_port
  endpoint=ssl:127.0.0.1:$(ssl_port)
  on_tor ovs-vsctl --db="unix:$tor/db.sock" --no-wait init
  on_tor ovs-vswitchd "unix:$tor/db.sock" --enable-dummy=override --disable-system \
    --disable-system-route --pidfile="$tor/ovs-vswitchd.pid" --unixctl="$tor/ovs-vswitchd.ctl" \
    --log-file="$tor/ovs-vswitchd.log" --detach --no-chdir 2>/dev/null
  on_tor ovs-vsctl --db="unix:$tor/db.sock" add-br tor1 -- add-port tor1 p1 -- add-port tor1 p2
  vtep add-ps tor1 -- set Physical_Switch tor1 tunnel_ips=192.168.100.2
  on_tor /usr/bin/python3 /usr/share/openvswitch/scripts/ovs-vtep --pidfile="$tor/ovs-vtep.pid" \
    --detach --log-file="$tor/ovs-vtep.log" --no-chdir tor1
  wait_for "ovs-vtep to publish port p1" has_port_p1
  echo "== switch tor1: VTEP 192.168.100.2, ports $(vtep list-ports tor1 | tr '\n' ' ')OVSDB at $endpoint"
  echo "== its client certificate for the operator: $work/secrets/tor1-ovsdb-client/{tls.key,tls.crt,ca.crt}"
  # examples/vtep-gateway.yaml, pointed at this emulator.
  sed "s|^  endpoint: .*|  endpoint: $endpoint|" examples/vtep-gateway.yaml >"$work/manifests/vtep-gateway.yaml"
  echo "== VtepGateway tor1 (examples/vtep-gateway.yaml with endpoint $endpoint)"
else
  echo "== ovs-vtep not installed (scripts/install-deps.sh installs openvswitch-vtep): node side only"
fi

echo "== remote-device-operator standalone -f $work/manifests --node-name kind-worker ${secrets[*]}"
# Its tables go to the terminal and to operator.out (for the waits below).
"$bin" standalone -f "$work/manifests" --node-name kind-worker --ovsdb "unix:$work/db.sock" \
  --ovs-rundir "$work" --poll 200ms "${secrets[@]}" 2>"$work/operator.log" \
  > >(tee "$work/operator.out") &
operator_pid=$!

flows() { ovs-ofctl dump-flows "unix:$work/br-int.mgmt" cookie=0x52444f4600000000/0xffffffff00000000 | grep -c cookie= || true; }

wait_for "three tunnel ports" bash -c "[ \$(ovs-vsctl --db=unix:$work/db.sock list-ports br-int | wc -l) -eq 3 ]"
sleep 1.5
echo
echo "== OVS now (ovs-vsctl show):"
vsctl show | sed -n '/Bridge br-int/,$p'
echo "== owned OpenFlow rules on br-int: $(flows)"

if [ -n "$switch_side" ]; then
  wait_for "the gateway to be Ready" gateway_ready 0
  echo
  echo "== the switch now: connected, nothing of ours (no RemoteDevice is attached to it yet)"
  show_switch
  echo
  echo "== attaching tenant-a/tor-server-1 to port p1 of tor1 (spec.attachment: {port: p1})"
  printf '  attachment:\n    port: p1\n' >>"$work/manifests/remote-device.yaml"
  wait_for "the switch to be programmed" gateway_ready 1
  sleep 2.5 # a poll or two of ovs-vtep, which then adds its own rows
  echo "== the switch, written only by the operator (and ovs-vtep's own local rows):"
  show_switch
  echo
  echo "== deleting RemoteDevice tenant-a/tor-server-1, the only device attached to tor1"
  rm "$work/manifests/remote-device.yaml"
  wait_for "our rows to leave the switch" gateway_ready 0
  wait_for "our rows to leave the switch" none_of_ours
  sleep 1.5
  echo "== the switch holds none of our rows again; the node keeps its tunnel to 192.168.100.2"
  echo "   for tor-server-2 (not attached): $(vsctl list-ports br-int | tr '\n' ' ')"
  show_switch
fi

echo
echo "== deleting RemoteDevice tenant-b/other-cloud-vm, the last device behind fd00:100::5"
rm "$work/manifests/other-cloud-vm.yaml"
wait_for "the IPv6 tunnel to go" bash -c "[ \$(ovs-vsctl --db=unix:$work/db.sock list-ports br-int | wc -l) -eq 2 ]"
sleep 1.5
echo "== ports left: $(vsctl list-ports br-int | tr '\n' ' ')"
echo "== owned OpenFlow rules on br-int: $(flows)"

echo
port=$(vsctl list-ports br-int | head -n1)
echo "== someone deletes $port behind the operator's back (ovs-vsctl del-port)"
vsctl del-port br-int "$port"
wait_for "$port to come back" bash -c "ovs-vsctl --db=unix:$work/db.sock list-ports br-int | grep -qx $port"
echo "== $port is back: $(vsctl list-ports br-int | tr '\n' ' ')"
sleep 1
echo
echo "== done; stopping the operator (OVS and the switch are left as they are) and removing both"
