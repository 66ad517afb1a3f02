#!/usr/bin/env bash
# The fresh-machine check: apt installs the .deb (pulling its dependencies),
# then `routerd -c /etc/routerd/staging.ini --check-config` with the example
# env passes. It changes the system, so it runs only as root and only when
# asked (CI=true, as .ci/run has, or ROUTERD_TEST_SYSTEM_INSTALL=1); the
# package is purged afterwards. Exit 77 = skipped.
# ROUTERD_TEST_FRESH_ROOT=1 does the same in a new minimal Debian 12 root
# made by mmdebstrap (downloads from the Debian archive, a few minutes),
# so that apt has to fetch every dependency.
set -euo pipefail
src=$1 work=$2
. "$(dirname "$0")/common.sh"
if [[ $(id -u) -ne 0 || (${CI:-} != true && ${ROUTERD_TEST_SYSTEM_INSTALL:-} != 1) ]]; then
    echo "skipped: needs root and CI=true or ROUTERD_TEST_SYSTEM_INSTALL=1"
    exit 77
fi
v=$(kit_version "$src")
deb=$work/a/dist/routerd_${v}_$(dpkg --print-architecture).deb
[[ -f $deb ]] || fail "$deb missing (kit_package fixture)"
deb=$(realpath "$deb") # apt takes a local file only as a path with a slash
if [[ ${ROUTERD_TEST_FRESH_ROOT:-} == 1 ]]; then
    command -v mmdebstrap >/dev/null || fail "ROUTERD_TEST_FRESH_ROOT=1 needs mmdebstrap"
    r=$(mktemp -d)
    trap 'rm -rf "$r"' EXIT
    mmdebstrap --variant=apt --mode=root bookworm "$r/root" >"$r/log" 2>&1 || { tail "$r/log"; fail "mmdebstrap"; }
    cp "$deb" "$r/root/root/"
    cp /etc/resolv.conf "$r/root/etc/resolv.conf"
    out=$(unshare -m --propagation private sh -c "mount -t proc proc '$r/root/proc' && mount --rbind /dev '$r/root/dev' &&
        chroot '$r/root' sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /root/$(basename "$deb") >/dev/null 2>&1 &&
        cd / && routerd -c /etc/routerd/staging.ini --env-file /etc/routerd/routerd.env.example --check-config &&
        getent passwd routerd'" 2>&1) || { echo "$out"; fail "install in a fresh Debian root"; }
    echo "$out"
    grep -q "^configuration OK: /etc/routerd/staging.ini" <<<"$out" || fail "no OK line"
    echo "fresh install (new Debian root): ok"
    exit 0
fi
if dpkg-query -W -f='${Status}' routerd 2>/dev/null | grep -q 'install ok installed'; then
    echo "skipped: a routerd package is already installed here"
    exit 77
fi
trap 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq routerd >/dev/null 2>&1 || true' EXIT
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$deb" >/dev/null || fail "apt install $deb"
[[ $(command -v routerd) == /usr/bin/routerd ]] || fail "routerd is not /usr/bin/routerd"
out=$(cd / && routerd -c /etc/routerd/staging.ini --env-file /etc/routerd/routerd.env.example --check-config) ||
    fail "routerd -c /etc/routerd/staging.ini --check-config failed"
echo "$out"
grep -q "^configuration OK: /etc/routerd/staging.ini" <<<"$out" || fail "no OK line"
printed=$(cd / && routerd -c /etc/routerd/staging.ini --env-file /etc/routerd/routerd.env.example --print-config)
grep -qx "; plugin_dir in use: /usr/lib/routerd" <<<"$printed" || fail "plugins not from /usr/lib/routerd"
getent passwd routerd >/dev/null || fail "postinst did not create the routerd user"
routerd --version
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 purge -y -qq routerd >/dev/null || fail "apt purge"
[[ ! -e /usr/bin/routerd && ! -e /etc/routerd/staging.ini ]] || fail "purge left files behind"
trap - EXIT
echo "fresh install: ok"
