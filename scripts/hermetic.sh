#!/usr/bin/env bash
# Runs a command so that nothing an earlier run or the machine's own Open vSwitch left
# behind can leak into it (a test that leans on such state then fails here, as it would on
# a fresh machine):
# - a private mount namespace: an empty /run (so no /run/openvswitch, /var/run/openvswitch,
#   sockets or network namespaces of earlier runs), a fresh private TMPDIR (a tmpfs of its
#   own: /tmp itself stays, since the checkout may live there), and OVS's other default
#   directories (/etc/openvswitch, /var/lib/openvswitch, /var/log/openvswitch) covered by
#   empty read-only mounts where they exist;
# - a private PID namespace: no daemon of an earlier run is visible, and every process the
#   command leaves behind is killed when it ends;
# - a private network namespace with only loopback: tests can reach nothing but 127.0.0.1
#   and the namespaces they make, and tap devices OVS creates go away with it;
# - a fresh HOME, no KUBECONFIG, no OVS_* variables; cargo runs offline (fetch first).
# Usage: scripts/hermetic.sh COMMAND [ARGS...]   (as root)
set -euo pipefail

if [ "${1:-}" != "--inside" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "hermetic.sh: needs root (mount, PID and network namespaces)" >&2; exit 1; }
  # Keep the toolchain where it is before HOME changes.
  export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
  exec unshare --mount --pid --net --fork --kill-child --mount-proc --propagation private \
    -- "$0" --inside "$@"
fi
shift

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
if [ -d /var/run ] && [ ! -L /var/run ]; then
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/run
fi
mkdir -p /run/lock
for d in /etc/openvswitch /var/lib/openvswitch /var/log/openvswitch; do
  if [ -d "$d" ]; then mount -t tmpfs -o ro,mode=0755 tmpfs "$d"; fi
done
scratch=$(mktemp -d /tmp/rdo-hermetic.XXXXXX)
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$scratch"
ip link set lo up

HOME=$(mktemp -d "$scratch/home.XXXXXX")
export HOME TMPDIR=$scratch CARGO_NET_OFFLINE=true
unset KUBECONFIG XDG_CONFIG_HOME XDG_CACHE_HOME XDG_DATA_HOME XDG_RUNTIME_DIR
unset OVS_RUNDIR OVS_LOGDIR OVS_DBDIR OVS_SYSCONFDIR OVS_PKGDATADIR OVS_BINDIR OVS_SCRIPTDIR

for d in /run/openvswitch /var/run/openvswitch; do
  if [ -e "$d" ]; then echo "hermetic.sh: $d is still visible" >&2; exit 1; fi
done
echo "hermetic: private mount, PID and network namespaces; empty /run; TMPDIR=$TMPDIR; HOME=$HOME" >&2

# This shell is PID 1 of the namespace: it stays to reap the daemons tests leave orphaned
# (a zombie still answers `kill -0`), and everything left is killed when it exits.
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
status=0
wait "$child" || status=$?
# The tmpfs dies with the namespace; its empty mount point is left on the host's /tmp.
umount -l "$scratch" 2>/dev/null || true
rmdir "$scratch" 2>/dev/null || true
exit "$status"
