#!/usr/bin/env bash
# fetch-containerd.sh SUITE
#
# Extract Debian's containerd package of another suite (trixie: containerd 1.7.x,
# sid: containerd 2.x) into /work/main/.work/containerd/SUITE/ (or
# $AGENTBOX_WORK/containerd/SUITE) for the e2e harness, without installing or
# replacing anything of the system: apt runs with a throw-away sources list,
# list dir and cache, `apt-get download` fetches the .deb and `dpkg -x` unpacks it.
# The mirror is the one this machine's apt already uses (first non-security
# URI in its sources). Idempotent: a finished extract (marker file) is kept.
set -euo pipefail

suite="${1:?usage: $0 trixie|sid|SUITE}"
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${AGENTBOX_WORK:-$here/.work}"
dest="$work/containerd/$suite"

mkdir -p "$work/containerd"
# one fetch at a time (parallel tests may ask for the same suite)
exec 9>"$work/containerd/.lock"
flock -w 600 9
if [[ -f "$dest/.complete" && -x "$dest/usr/bin/containerd" ]]; then
  echo "fetch-containerd: $suite already at $dest ($(cat "$dest/.complete"))"
  exit 0
fi

mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] || continue
  while read -r key val _; do
    if [[ "$key" == "URIs:" && "$val" != *security* && "$val" == *debian* ]]; then
      mirror="$val"; break 2
    fi
  done < "$f"
done
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
  mirror="$(awk '$1=="deb" && $2 !~ /security/ && $2 ~ /debian/ {print $2; exit}' /etc/apt/sources.list)"
  [[ "$mirror" == \[* ]] && mirror="$(awk '$1=="deb" && $3 !~ /security/ && $3 ~ /debian/ {print $3; exit}' /etc/apt/sources.list)"
fi
[[ -n "$mirror" ]] || { echo "fetch-containerd: no Debian mirror found in /etc/apt sources" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

tmp="$(mktemp -d /tmp/fetch-containerd.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs" "$tmp/prefs.d"
echo "deb [signed-by=$keyring] $mirror $suite main" > "$tmp/sources.list"
apt_opts=(
  -o "Dir::Etc::sourcelist=$tmp/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$tmp/lists"
  -o "Dir::Cache=$tmp/cache"
  -o "Dir::Etc::preferencesparts=$tmp/prefs.d"
  -o "APT::Sandbox::User=root"
  -o "APT::Get::List-Cleanup=0"
  -o "Acquire::Languages=none"
)
echo "fetch-containerd: apt-get update for $suite (private lists in $tmp)"
apt-get "${apt_opts[@]}" -qq update

pkgver() { # newest version of $1 in the private lists ("" if none)
  apt-cache "${apt_opts[@]}" show "$1" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -n1
}
ver="$(pkgver containerd)"
[[ -n "$ver" ]] || { echo "fetch-containerd: no containerd package in $suite" >&2; exit 1; }
echo "fetch-containerd: containerd $ver from $suite"
(cd "$tmp/debs" && apt-get "${apt_opts[@]}" -qq download "containerd=$ver")

rm -rf "$dest.partial"
mkdir -p "$dest.partial"
for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$dest.partial"; done
# ctr / the runc shim may be split into their own packages in some suites.
for bin in ctr containerd-shim-runc-v2; do
  if [[ ! -x "$dest.partial/usr/bin/$bin" ]]; then
    for pkg in "containerd-$bin" "$bin" golang-github-containerd-containerd-ctr; do
      v="$(pkgver "$pkg")"
      if [[ -n "$v" ]]; then
        (cd "$tmp/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" -qq download "$pkg=$v")
        for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$dest.partial"; done
        break
      fi
    done
  fi
  [[ -x "$dest.partial/usr/bin/$bin" ]] || echo "fetch-containerd: warning: $bin not found for $suite" >&2
done
"$dest.partial/usr/bin/containerd" --version
echo "containerd $ver" > "$dest.partial/.complete"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "fetch-containerd: $suite -> $dest"
