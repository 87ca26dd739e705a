# syntax=docker/dockerfile:1
# One image for both components: `remote-device-operator controller` and `... agent`.
# Build: docker build -t remote-device-operator:dev .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build: the release binary, exactly the versions in Cargo.lock ---
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# A multi-platform build (.github/workflows/release.yml) runs this stage once per platform:
# one target cache per architecture, or the two builds would share one target/ directory.
ARG TARGETARCH
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=rdo-cargo-target-${TARGETARCH},target=/src/target \
    cargo build --release --locked --bin remote-device-operator \
 && install -D -m 0755 target/release/remote-device-operator /out/remote-device-operator

# --- ovs-tools: Debian's ovs-ofctl, the agent's OpenFlow client. The package would also
# pull in python3 and ovsdb-server; the runtime takes only the binary. ---
FROM debian:${DEBIAN_RELEASE}-slim AS ovs-tools
RUN apt-get update \
 && apt-get install -y --no-install-recommends openvswitch-common \
 && rm -rf /var/lib/apt/lists/*

# --- runtime ---
FROM debian:${DEBIAN_RELEASE}-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="remote-device-operator" \
      org.opencontainers.image.description="Kubernetes operator that tunnels Open vSwitch nodes to devices behind remote VTEPs" \
      org.opencontainers.image.source="https://github.com/remote-device-operator/remote-device-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# The shared libraries ovs-ofctl links (ldd on bookworm's openvswitch-common 3.1); the ldd
# check fails the build if a newer release needs one more.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libbpf1 libcap-ng0 libelf1 libevent-2.1-7 libnuma1 libssl3 libunbound8 libxdp1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=ovs-tools /usr/bin/ovs-ofctl /usr/bin/ovs-ofctl
RUN ! ldd /usr/bin/ovs-ofctl | grep 'not found' && ovs-ofctl --version
COPY --from=build /out/remote-device-operator /usr/local/bin/remote-device-operator
# The controller runs as this user. The agent's pod overrides it with uid 0 and no
# capabilities, because OVS's sockets are root:root 0750 (see the chart's DaemonSet).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/remote-device-operator"]
