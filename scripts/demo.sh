#!/usr/bin/env bash
# The demo: the operator at work on this machine, no cluster needed.
#
# Starts a throw-away Open vSwitch (userspace, dummy datapath) in a temp dir, runs the
# operator in standalone mode as node "kind-worker" of examples/nodes/, and shows:
#   1. the tunnel ports and OpenFlow rules it creates for the example RemoteDevices;
#   2. what happens when the last device behind a VTEP is deleted (its port and rules go);
#   3. an OVS port deleted behind its back is put back.
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
operator_pid=
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
  for daemon in ovs-vswitchd ovsdb-server; do
    [ -f "$work/$daemon.pid" ] && kill "$(cat "$work/$daemon.pid")" 2>/dev/null
  done
  sleep 0.3
  rm -rf "$work"
}
trap cleanup EXIT

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

echo "== remote-device-operator standalone -f $work/manifests --node-name kind-worker"
"$bin" standalone -f "$work/manifests" --node-name kind-worker --ovsdb "unix:$work/db.sock" \
  --ovs-rundir "$work" --poll 200ms 2>"$work/operator.log" &
operator_pid=$!

wait_for() { # wait_for DESCRIPTION COMMAND...: up to 10 s
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what; operator log:" >&2; cat "$work/operator.log" >&2; exit 1
}
flows() { ovs-ofctl dump-flows "unix:$work/br-int.mgmt" cookie=0x52444f4600000000/0xffffffff00000000 | grep -c cookie= || true; }

wait_for "three tunnel ports" bash -c "[ \$(ovs-vsctl --db=unix:$work/db.sock list-ports br-int | wc -l) -eq 3 ]"
sleep 1.5
echo
echo "== OVS now (ovs-vsctl show):"
vsctl show | sed -n '/Bridge br-int/,$p'
echo "== owned OpenFlow rules on br-int: $(flows)"

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
echo "== done; stopping the operator (OVS is left as it is) and removing the sandbox"
