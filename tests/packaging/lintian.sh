#!/usr/bin/env bash
# The .deb: lintian reports no errors; it holds the binary, every plugin,
# the header and pkg-config file, the systemd unit and sysusers file, the
# /etc/routerd conffiles, docs, copyright and changelog; its ELF files are
# hardened (PIE, full RELRO, BIND_NOW, stack protector, fortify) and carry
# no build paths.
set -euo pipefail
src=$1 work=$2
. "$(dirname "$0")/common.sh"
v=$(kit_version "$src")
deb=$work/a/dist/routerd_${v}_$(dpkg --print-architecture).deb
[[ -f $deb ]] || fail "$deb missing (kit_package fixture)"

out=$(lintian --fail-on error --tag-display-limit 0 "$deb" 2>&1) || {
    echo "$out"
    fail "lintian reports errors"
}
echo "$out"
grep -q "no-manual-page" <<<"$out" && fail "lintian: no-manual-page"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"
dpkg-deb -e "$deb" "$tmp/ctl"
want=(usr/bin/routerd usr/include/routerd/plugin.h lib/systemd/system/routerd.service
      usr/lib/sysusers.d/routerd.conf usr/share/doc/routerd/copyright usr/share/doc/routerd/changelog.gz
      usr/share/man/man8/routerd.8.gz
      etc/routerd/dev.ini etc/routerd/staging.ini etc/routerd/production.ini etc/routerd/routerd.env.example)
for f in "${want[@]}"; do [[ -f $tmp/root/$f ]] || fail "the .deb lacks /$f"; done
for so in "$work"/a/build/plugins/*.so; do
    [[ -f $tmp/root/usr/lib/routerd/$(basename "$so") ]] || fail "the .deb lacks plugin $(basename "$so")"
done
[[ -n $(find "$tmp/root/usr/lib" -name routerd-plugin.pc) ]] || fail "the .deb lacks routerd-plugin.pc"
for f in dev staging production; do
    grep -qx "/etc/routerd/$f.ini" "$tmp/ctl/conffiles" || fail "/etc/routerd/$f.ini is not a conffile"
done
grep -q '^Depends:.*libcurl4' "$tmp/ctl/control" || fail "Depends lacks libcurl4"
cmp -s "$src/packaging/systemd/routerd.service" "$tmp/root/lib/systemd/system/routerd.service" ||
    fail "the unit in the .deb differs from packaging/systemd/routerd.service"

# Debian's hardening flags reached the binaries (outputs captured first:
# grep -q would end a pipe early under pipefail).
for elf in "$tmp/root/usr/bin/routerd" "$tmp/root"/usr/lib/routerd/*.so; do
    dyn=$(readelf -dW "$elf")
    grep -q 'BIND_NOW\|FLAGS.*NOW' <<<"$dyn" || fail "$elf: no BIND_NOW"
    hdr=$(readelf -lW "$elf")
    grep -q GNU_RELRO <<<"$hdr" || fail "$elf: no RELRO"
done
syms=$(readelf -sW --dyn-syms "$tmp/root/usr/bin/routerd")
grep -q '__stack_chk_fail' <<<"$syms" || fail "routerd: no stack protector"
grep -q '_chk@' <<<"$syms" || fail "routerd: no fortified calls"
hdr=$(readelf -hW "$tmp/root/usr/bin/routerd")
grep -q 'Type:.*DYN' <<<"$hdr" || fail "routerd is not PIE"
# No build or source paths inside (the unstripped build output too).
for elf in "$tmp/root/usr/bin/routerd" "$tmp/root"/usr/lib/routerd/*.so "$work/a/build/routerd" \
    "$work"/a/build/plugins/*.so; do
    if grep -qaF -e "$src" -e "$work" "$elf"; then fail "$elf contains a build path"; fi
done
echo "deb: ok"
