#!/usr/bin/env bash
# fetch-runsc.sh SUITE
#
# Extract Debian's runsc package of another suite (trixie/sid: gVisor
# 2024-07-29) into .work/runsc/SUITE/ (or $AGENTBOX_WORK/runsc/SUITE) for
# comparison in `make bench-workload`, without installing or replacing the
# system's runsc: apt runs with a throw-away sources list, list dir and cache,
# `apt-get download` fetches the .deb and `dpkg -x` unpacks it (as
# fetch-containerd.sh does). Idempotent: a finished extract is kept.
set -euo pipefail

suite="${1:?usage: $0 trixie|sid|SUITE}"
here="$(cd "$(dirname "$0")/.." && pwd)"
work="${AGENTBOX_WORK:-$here/.work}"
dest="$work/runsc/$suite"

mkdir -p "$work/runsc"
exec 9>"$work/runsc/.lock"
flock -w 600 9
if [[ -f "$dest/.complete" && -x "$dest/usr/bin/runsc" ]]; then
  echo "fetch-runsc: $suite already at $dest ($(cat "$dest/.complete"))"
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
[[ -n "$mirror" ]] || { echo "fetch-runsc: no Debian mirror found in /etc/apt sources" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

tmp="$(mktemp -d /tmp/fetch-runsc.XXXXXX)"
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
echo "fetch-runsc: apt-get update for $suite (private lists in $tmp)"
apt-get "${apt_opts[@]}" -qq update
ver="$(apt-cache "${apt_opts[@]}" show runsc 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -n1)"
[[ -n "$ver" ]] || { echo "fetch-runsc: no runsc package in $suite" >&2; exit 1; }
echo "fetch-runsc: runsc $ver from $suite"
(cd "$tmp/debs" && apt-get "${apt_opts[@]}" -qq download "runsc=$ver")

rm -rf "$dest.partial"
mkdir -p "$dest.partial"
for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$dest.partial"; done
"$dest.partial/usr/bin/runsc" --version
echo "runsc $ver" > "$dest.partial/.complete"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "fetch-runsc: $suite -> $dest"
