#!/usr/bin/env bash
# Assembles routerd's OCI image without a container registry: the files come
# from the package's staging root and, for the shared libraries, the CA
# bundle and the OS identity, from the installed Debian packages. Writes an
# OCI image layout as a tar and an SPDX 2.3 SBOM naming each Debian package
# that contributed files. Called by scripts/package.sh.
# Usage: build-image.sh STAGING_ROOT WORK_DIR OUT_DIR VERSION REVISION CREATED
set -euo pipefail
[[ $# -eq 6 ]] || { echo "usage: build-image.sh ROOT WORK OUT VERSION REVISION CREATED" >&2; exit 64; }
root=$1 work=$2 out=$3 version=$4 revision=$5 created=$6
: "${SOURCE_DATE_EPOCH:?}"
export LC_ALL=C
umask 022
uid=10001 # fixed, so that runAsNonRoot can verify it without /etc/passwd
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

rm -rf "$work"
fs=$work/rootfs
blobs=$work/layout/blobs/sha256
# proc, sys and dev are mount points for the container runtime.
mkdir -p "$fs"/{dev,etc,proc,sys,tmp,var/lib/routerd,usr/bin,usr/lib/"$multiarch",usr/lib64,usr/share/doc} "$blobs"
ln -s usr/bin "$fs/bin"
ln -s usr/lib "$fs/lib"
ln -s usr/lib64 "$fs/lib64"

cp -a "$root/usr/bin/routerd" "$fs/usr/bin/"
cp -a "$root/usr/lib/routerd" "$fs/usr/lib/"
cp -a "$root/etc/routerd" "$fs/etc/"
mkdir -p "$fs/usr/share/doc/routerd"
cp "$root/usr/share/doc/routerd/copyright" "$fs/usr/share/doc/routerd/"

# Host file -> image. Every file taken from the host is recorded with the
# Debian package that owns it, for the SBOM.
declare -A pkg_files=() owners=()
candidates() { # PATH -> the spellings dpkg may know it by (usrmerge)
    printf '%s\n' "$1" "$(readlink -f "$1")" "${1#/usr}" "/usr$1"
}
lookup_owners() { # PATH... -> fills owners[] in one dpkg-query run
    local line path pk
    while IFS= read -r line; do
        [[ $line == diversion* ]] && continue
        path=${line##*: } pk=${line%: *}
        pk=${pk%%,*}
        owners[$path]=${pk%%:*}
    done < <(for p in "$@"; do candidates "$p"; done | sort -u | xargs dpkg-query -S 2>/dev/null || true)
}
owner() {
    local c
    while read -r c; do
        if [[ -n ${owners[$c]:-} ]]; then
            echo "${owners[$c]}"
            return
        fi
    done < <(candidates "$1")
    echo "package.sh: no Debian package owns $1" >&2
    return 1
}
take() { # HOST_PATH IMAGE_PATH [PACKAGE]
    local pkg=${3:-}
    [[ -n $pkg ]] || pkg=$(owner "$1")
    mkdir -p "$(dirname "$fs$2")"
    cp -L "$1" "$fs$2"
    pkg_files[$pkg]+="$2 "
}

mapfile -t elves < <(find "$fs/usr/bin" "$fs/usr/lib/routerd" -type f | sort)
mapfile -t libs < <(for e in "${elves[@]}"; do ldd "$e"; done |
    awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
lookup_owners "${libs[@]}" /usr/lib/os-release
for l in "${libs[@]}"; do
    dest=/usr${l#/usr}
    take "$l" "$dest"
done
take /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt ca-certificates
take /usr/lib/os-release /usr/lib/os-release
ln -s ../usr/lib/os-release "$fs/etc/os-release"
for pkg in "${!pkg_files[@]}"; do
    if [[ -f /usr/share/doc/$pkg/copyright ]]; then
        mkdir -p "$fs/usr/share/doc/$pkg"
        cp /usr/share/doc/"$pkg"/copyright "$fs/usr/share/doc/$pkg/"
    fi
done

printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nrouterd:x:%d:%d:routerd:/var/lib/routerd:/usr/sbin/nologin\n' \
    "$uid" "$uid" >"$fs/etc/passwd"
printf 'root:x:0:\nrouterd:x:%d:\n' "$uid" >"$fs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$fs/etc/nsswitch.conf"

find "$fs" -type d -exec chmod 0755 {} +
find "$fs" -type f -exec chmod go-w {} +
chmod 1777 "$fs/tmp"
chmod 0700 "$fs/var/lib/routerd"

# One layer, members in a fixed order with fixed times and owners; the state
# directory belongs to the routerd user.
layer=$work/layer.tar
tar_opts=(--format=gnu --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --no-recursion)
(cd "$fs" && find . -mindepth 1 ! -path ./var/lib/routerd | sort) >"$work/members"
tar -C "$fs" -cf "$layer" "${tar_opts[@]}" --owner=0 --group=0 -T "$work/members"
tar -C "$fs" -rf "$layer" "${tar_opts[@]}" --owner="$uid" --group="$uid" ./var/lib/routerd
diff_id=$(sha256sum "$layer" | cut -d' ' -f1)
gzip -9n <"$layer" >"$work/layer.tar.gz"

blob() { # FILE -> prints digest, moves the file into blobs/
    local d
    d=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$blobs/$d"
    echo "$d"
}
layer_digest=$(blob "$work/layer.tar.gz")
layer_size=$(stat -c %s "$blobs/$layer_digest")

labels=$(jq -cn --arg v "$version" --arg r "$revision" --arg c "$created" '{
    "org.opencontainers.image.title": "routerd",
    "org.opencontainers.image.description": "Chat router between Telegram bots and AI agents (A2A)",
    "org.opencontainers.image.version": $v,
    "org.opencontainers.image.revision": $r,
    "org.opencontainers.image.created": $c}')
jq -cnS --arg c "$created" --arg arch "$arch" --arg d "sha256:$diff_id" --arg u "$uid:$uid" \
    --argjson labels "$labels" '{
    created: $c, architecture: $arch, os: "linux",
    config: {
        User: $u,
        Entrypoint: ["/usr/bin/routerd"],
        Env: ["PATH=/usr/bin",
              "ROUTERD_CONFIG=/etc/routerd/production.ini",
              "ROUTERD_STATE_DIR=/var/lib/routerd",
              "ROUTERD_ADMIN_LISTEN=0.0.0.0:9464"],
        WorkingDir: "/var/lib/routerd",
        ExposedPorts: {"9464/tcp": {}},
        Volumes: {"/var/lib/routerd": {}, "/tmp": {}},
        StopSignal: "SIGTERM",
        Labels: $labels},
    rootfs: {type: "layers", diff_ids: [$d]},
    history: [{created: $c, created_by: "scripts/package.sh"}]}' >"$work/config.json"
config_digest=$(blob "$work/config.json")
config_size=$(stat -c %s "$blobs/$config_digest")

jq -cnS --arg cd "sha256:$config_digest" --argjson cs "$config_size" \
    --arg ld "sha256:$layer_digest" --argjson ls "$layer_size" --argjson labels "$labels" '{
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}],
    annotations: $labels}' >"$work/manifest.json"
manifest_digest=$(blob "$work/manifest.json")
manifest_size=$(stat -c %s "$blobs/$manifest_digest")

lay=$work/layout
jq -cnS --arg d "sha256:$manifest_digest" --argjson s "$manifest_size" --arg v "$version" '{
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
                 annotations: {"org.opencontainers.image.ref.name": $v}}]}' >"$lay/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"
# docker load reads manifest.json (the docker-archive index) beside the layout.
jq -cn --arg c "blobs/sha256/$config_digest" --arg l "blobs/sha256/$layer_digest" --arg v "$version" \
    '[{Config: $c, RepoTags: ["routerd:" + $v], Layers: [$l]}]' >"$lay/manifest.json"
image=$out/routerd-$version-oci.tar
(cd "$lay" && find . -mindepth 1 | sort) >"$work/layout-members"
tar -C "$lay" -cf "$image" "${tar_opts[@]}" --owner=0 --group=0 -T "$work/layout-members"

# ---- SBOM (SPDX 2.3) of the image ------------------------------------------
os_id=$(. /usr/lib/os-release && echo "$ID-$VERSION_ID")
{
    printf 'routerd\t%s\t%s\t\t%s\n' "$version" "$arch" \
        "/usr/bin/routerd $(cd "$fs" && find usr/lib/routerd etc/routerd -type f | sort | sed 's|^|/|' | tr '\n' ' ')"
    for pkg in $(printf '%s\n' "${!pkg_files[@]}" | sort); do
        v=$(dpkg-query -W -f='${Version}\t${Architecture}\t${source:Package}' "$pkg")
        printf '%s\t%s\t%s\n' "$pkg" "$v" "${pkg_files[$pkg]}"
    done
} | jq -R -s -S --arg v "$version" --arg c "$created" --arg os "$os_id" --arg m "$manifest_digest" '
    [split("\n")[] | select(length > 0) | split("\t")
     | {name: .[0], version: .[1], arch: .[2], source: .[3], files: (.[4] | rtrimstr(" "))}] as $p
    | {
        spdxVersion: "SPDX-2.3",
        dataLicense: "CC0-1.0",
        SPDXID: "SPDXRef-DOCUMENT",
        name: ("routerd-" + $v + "-oci"),
        documentNamespace: ("https://spdx.org/spdxdocs/routerd-" + $v + "-oci-" + $m),
        creationInfo: {created: $c, creators: ["Tool: routerd scripts/package.sh"]},
        documentDescribes: ["SPDXRef-Image"],
        packages: ([{
            name: "routerd-image", SPDXID: "SPDXRef-Image", versionInfo: $v,
            downloadLocation: "NOASSERTION", filesAnalyzed: false,
            licenseConcluded: "NOASSERTION", licenseDeclared: "NOASSERTION", copyrightText: "NOASSERTION",
            primaryPackagePurpose: "CONTAINER",
            checksums: [{algorithm: "SHA256", checksumValue: $m}],
            comment: "OCI image manifest digest"}]
          + [$p[] | {
            name: .name,
            SPDXID: ("SPDXRef-Package-deb-" + (.name | gsub("[^A-Za-z0-9.-]"; "-"))),
            versionInfo: .version,
            supplier: (if .name == "routerd" then "Organization: routerd authors" else "Organization: Debian" end),
            downloadLocation: "NOASSERTION", filesAnalyzed: false,
            licenseConcluded: "NOASSERTION", licenseDeclared: "NOASSERTION", copyrightText: "NOASSERTION",
            sourceInfo: (if .source != "" then "Debian source package " + .source else "built from this repository" end),
            externalRefs: [{referenceCategory: "PACKAGE-MANAGER", referenceType: "purl",
                referenceLocator: ("pkg:deb/" + (if .name == "routerd" then "routerd" else "debian" end) + "/"
                    + .name + "@" + (.version | @uri) + "?arch=" + .arch + "&distro=" + $os)}],
            comment: ("files in the image: " + .files)}]),
        relationships: [$p[] | {spdxElementId: "SPDXRef-Image", relationshipType: "CONTAINS",
            relatedSpdxElement: ("SPDXRef-Package-deb-" + (.name | gsub("[^A-Za-z0-9.-]"; "-")))}]
      }' >"$out/routerd-$version-oci.spdx.json"
