#!/usr/bin/env bash
# Installs the Debian 12 packages routerd needs to build and test, if any
# are missing. Usage: scripts/deps.sh [--test [--ci]]
set -euo pipefail

pkgs=(gcc make cmake pkg-config git ca-certificates
      libcurl4-openssl-dev libcjson-dev libinih-dev libmicrohttpd-dev
      libssl-dev libsqlite3-dev libcmocka-dev libmd4c-dev)
# dpkg-dev (dpkg-buildflags, dpkg-shlibdeps) and jq build the .deb, the OCI
# image and its SBOM (scripts/package.sh).
pkgs+=(dpkg-dev jq xz-utils)
# libpq for the postgresql store module (store/store_postgresql.so).
pkgs+=(libpq-dev)
if [[ "${1:-}" == "--test" ]]; then
    # lintian checks the .deb in the packaging tests.
    pkgs+=(lintian)
    # promtool and a Prometheus server for the metrics tests, valgrind and
    # clang-format for CI checks, node for the OTLP and A2A interop checks.
    pkgs+=(prometheus prometheus-alertmanager valgrind clang-format curl)
    # The deployment kit's checks: systemd-analyze, strace for the unit's
    # system call filter, runit for the runit scripts, python3-yaml for the
    # Kubernetes manifests, openssl for the manifest signature, sqlite3 for
    # the restore drill, groff for the man page check.
    pkgs+=(systemd strace runit python3 python3-yaml openssl sqlite3 util-linux procps groff-base)
    # A PostgreSQL server that the HA tests start themselves
    # (tests/support/pg.sh).
    pkgs+=(postgresql)
    # clang and its sanitizer/libFuzzer runtime for the CI builds.
    if [[ "${2:-}" == "--ci" ]]; then pkgs+=(clang libclang-rt-14-dev); fi
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "routerd: installing ${missing[*]}" >&2
sudo=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "routerd: run as root or install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt (unattended-upgrades, a parallel job) may hold the lock: wait
# for it instead of failing (ROUTERD_APT_LOCK_TIMEOUT seconds, default 600).
lock=(-o "DPkg::Lock::Timeout=${ROUTERD_APT_LOCK_TIMEOUT:-600}")
$sudo apt-get "${lock[@]}" update -qq
# The prometheus and postgresql packages start services on install;
# policy-rc.d keeps them off (the tests start their own PostgreSQL).
if [[ (" ${missing[*]} " == *" prometheus"* || " ${missing[*]} " == *" postgresql "*) &&
      ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
