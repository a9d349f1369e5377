#!/usr/bin/env bash
# Fetch Prometheus 2.53.3 (Debian trixie's package, built with kubernetes_sd) into a cache
# directory without installing anything, and print the binary's path. Repeated runs reuse
# the cached binary. Override the cache with CLYMENE_TEST_CACHE.
set -euo pipefail
cache="${CLYMENE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clymene-test}"
bin="$cache/prometheus-trixie/usr/bin/prometheus"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
apt_dir="$cache/apt-trixie"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc"
# The system's own Debian mirror and keyring, suite trixie.
uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
if [ -z "$uri" ]; then  # the one-line format
  uri="$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
fi
if [ -z "$uri" ]; then
  echo "get_prometheus_k8s.sh: no Debian mirror found in the system's apt sources" >&2
  exit 1
fi
cat > "$apt_dir/etc/trixie.sources" <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/etc"
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
      -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${opts[@]}" update -qq >&2
(cd "$apt_dir/cache/archives" && apt-get "${opts[@]}" download prometheus >&2)
deb="$(ls "$apt_dir"/cache/archives/prometheus_*.deb | head -n1)"
rm -rf "$cache/prometheus-trixie"
dpkg-deb -x "$deb" "$cache/prometheus-trixie"
"$bin" --version >&2
echo "$bin"
