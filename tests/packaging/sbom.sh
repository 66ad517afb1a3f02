#!/usr/bin/env bash
# The SPDX SBOM beside the image names, with its installed version, every
# Debian package that owns a file in the image, and routerd itself; its
# structure is SPDX 2.3 (ids unique and well formed, every package related
# to the image, the image's manifest digest recorded).
set -euo pipefail
src=$1 work=$2
. "$(dirname "$0")/common.sh"
v=$(kit_version "$src")
image=$work/a/dist/routerd-$v-oci.tar
sbom=$work/a/dist/routerd-$v-oci.spdx.json
[[ -f $sbom ]] || fail "$sbom missing (kit_package fixture)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

jq -e '.spdxVersion == "SPDX-2.3" and .dataLicense == "CC0-1.0" and .SPDXID == "SPDXRef-DOCUMENT"
       and (.documentNamespace | startswith("https://")) and (.creationInfo.created | test("Z$"))' \
    "$sbom" >/dev/null || fail "document fields"
jq -e '[.packages[].SPDXID] | (length == (unique | length)) and all(test("^SPDXRef-[A-Za-z0-9.-]+$"))' \
    "$sbom" >/dev/null || fail "SPDX ids not unique or malformed"
jq -e '[.packages[] | select(.SPDXID != "SPDXRef-Image") | .SPDXID] - [.relationships[]
       | select(.spdxElementId == "SPDXRef-Image" and .relationshipType == "CONTAINS")
       | .relatedSpdxElement] == []' "$sbom" >/dev/null || fail "a package is not related to the image"

mkdir -p "$tmp/l"
tar -C "$tmp/l" -xf "$image"
mdigest=$(jq -r '.manifests[0].digest' "$tmp/l/index.json")
jq -e --arg m "${mdigest#sha256:}" '.packages[] | select(.SPDXID == "SPDXRef-Image")
       | .checksums[0].checksumValue == $m' "$sbom" >/dev/null || fail "image digest not in the SBOM"
jq -e --arg v "$v" 'any(.packages[]; .name == "routerd" and .versionInfo == $v)' "$sbom" >/dev/null ||
    fail "routerd $v not in the SBOM"

# Each file the image took from the system, found by its own owner lookup.
manifest=$tmp/l/blobs/sha256/$(jq -r '.manifests[0].digest' "$tmp/l/index.json" | cut -d: -f2)
mkdir -p "$tmp/root"
for d in $(jq -r '.layers[].digest' "$manifest"); do tar -C "$tmp/root" -xzf "$tmp/l/blobs/sha256/${d#sha256:}"; done
# One dpkg-query run for every spelling of every path (usrmerge: /lib and
# /usr/lib are the same folder, dpkg knows each file under one of them).
(cd "$tmp/root" && find . -type f | sed 's|^\./||' | sort) >"$tmp/files"
declare -A own=()
while IFS= read -r line; do
    [[ $line == diversion* ]] && continue
    p=${line%: *}
    own[${line##*: }]=${p%%[:,]*}
done < <(while read -r f; do printf '/%s\n/%s\n%s\n' "$f" "${f#usr/}" "$(readlink -f "/$f")"; done <"$tmp/files" |
    sort -u | xargs dpkg-query -S 2>/dev/null || true)
n=0
while read -r f; do
    case $f in
    usr/bin/routerd | usr/lib/routerd/* | etc/routerd/* | etc/passwd | etc/group | etc/nsswitch.conf) continue ;;
    usr/share/doc/*/copyright) continue ;; # each package's own, checked below
    etc/ssl/certs/ca-certificates.crt) pkg=ca-certificates ;; # generated from that package's files
    *)
        pkg=
        for c in "/$f" "/${f#usr/}" "$(readlink -f "/$f")"; do
            pkg=${own[$c]:-}
            [[ -n $pkg ]] && break
        done
        [[ -n $pkg ]] || fail "/$f in the image belongs to no Debian package"
        ;;
    esac
    ver=$(dpkg-query -W -f='${Version}' "$pkg")
    jq -e --arg p "$pkg" --arg v "$ver" --arg f "/$f" \
        'any(.packages[]; .name == $p and .versionInfo == $v and (.comment | contains($f)))' "$sbom" >/dev/null ||
        fail "SBOM lacks $pkg $ver (for /$f)"
    n=$((n + 1))
done <"$tmp/files"
[[ $n -gt 5 ]] || fail "only $n system files checked"
for d in "$tmp"/root/usr/share/doc/*/; do
    p=$(basename "$d")
    [[ $p == routerd ]] || jq -e --arg p "$p" 'any(.packages[]; .name == $p)' "$sbom" >/dev/null ||
        fail "copyright of $p shipped but $p not in the SBOM"
done
for p in libc6 libcurl4 libssl3 libcjson1 libinih1 libmicrohttpd12 libsqlite3-0 ca-certificates; do
    jq -e --arg p "$p" 'any(.packages[]; .name == $p)' "$sbom" >/dev/null || fail "$p not in the SBOM"
done
echo "sbom: $n system files, $(jq '.packages | length' "$sbom") packages: ok"
