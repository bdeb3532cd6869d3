#!/usr/bin/env bash
# build-node-image.sh BIN_DIR IMAGE OUT.tar
#
# Builds the node agent image (node-agent/Dockerfile) with buildah from the
# binaries in BIN_DIR (a cargo profile folder: agentbox-node,
# containerd-shim-agentbox-v1, agentbox-policy), debug info stripped, and
# writes it as an OCI archive. buildah's storage is private (.work/buildah,
# vfs), never the system's.
set -euo pipefail

bin="${1:?usage: $0 BIN_DIR IMAGE OUT.tar}"
image="${2:?usage: $0 BIN_DIR IMAGE OUT.tar}"
out="${3:?usage: $0 BIN_DIR IMAGE OUT.tar}"
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${AGENTBOX_WORK:-$here/.work}"
store="$work/buildah"
mkdir -p "$store"
exec 9>"$store/.lock"
flock -w 600 9

ctx="$(mktemp -d "$store/ctx.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/opt/agentbox-node/bin" "$root/run/agentbox-node" "$root/etc/agentbox-node" "$root/host"
objcopy --strip-debug "$bin/agentbox-node" "$root/usr/local/bin/agentbox-node"
for b in containerd-shim-agentbox-v1 agentbox-policy; do
  objcopy --strip-debug "$bin/$b" "$root/opt/agentbox-node/bin/$b"
done
# the shared libraries (and loader) agentbox-node needs, at their paths
for lib in $(ldd "$bin/agentbox-node" | awk '/=>/ {print $3} !/=>/ && $1 ~ /^\// {print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp "$here/node-agent/Dockerfile" "$ctx/Dockerfile"

b=(buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs)
"${b[@]}" bud --quiet --layers=false -f "$ctx/Dockerfile" -t "$image" "$ctx" >/dev/null
rm -f "$out.partial"
"${b[@]}" push --quiet "$image" "oci-archive:$out.partial:${image##*:}"
"${b[@]}" rmi --force "$image" >/dev/null
mv "$out.partial" "$out"
echo "build-node-image: $image -> $out ($(du -h "$out" | cut -f1))"
