#!/usr/bin/env bash
# Runs INSIDE a kind node (docker exec -i <node> bash < hack/kind-node-ovs.sh): installs
# Debian's Open vSwitch and starts it with the userspace datapath, so the host needs no
# openvswitch kernel module; then creates br-int. Idempotent.
set -euo pipefail

if ! command -v ovs-vswitchd >/dev/null; then
  # The package would start its services through systemd and load the kernel module:
  # keep it from starting anything; the daemons are started below.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openvswitch-switch >/dev/null
fi

mkdir -p /var/run/openvswitch /etc/openvswitch /var/log/openvswitch
[[ -f /etc/openvswitch/conf.db ]] \
  || ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
if ! ovs-appctl -t ovsdb-server version >/dev/null 2>&1; then
  ovsdb-server /etc/openvswitch/conf.db --remote=punix:/var/run/openvswitch/db.sock \
    --pidfile --detach --log-file
fi
ovs-vsctl --no-wait init
if ! ovs-appctl -t ovs-vswitchd version >/dev/null 2>&1; then
  ovs-vswitchd --disable-system --pidfile --detach --log-file
fi
ovs-vsctl --may-exist add-br br-int -- set Bridge br-int datapath_type=netdev fail-mode=secure
ls -l /var/run/openvswitch/db.sock /var/run/openvswitch/br-int.mgmt
