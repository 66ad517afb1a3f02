#!/usr/bin/env bash
# The OCI image: layout, digests and sizes consistent; non-root user, exec
# form entrypoint, version/revision labels, state and /tmp volumes; and the
# binary runs from the image's root: --version, --check-config with the
# example env, and (as root) a session on a read-only root with only the
# state directory and /tmp writable.
set -euo pipefail
src=$1 work=$2
. "$(dirname "$0")/common.sh"
kit_identity "$src" "$work"
v=$(kit_version "$src")
image=$work/a/dist/routerd-$v-oci.tar
[[ -f $image ]] || fail "$image missing (kit_package fixture)"
tmp=$(mktemp -d)
cleanup() {
    # A failed run may leave mounts behind in the test's namespace only.
    rm -rf "$tmp"
}
trap cleanup EXIT
lay=$tmp/layout
mkdir -p "$lay"
tar -C "$lay" -xf "$image"
[[ $(jq -r .imageLayoutVersion "$lay/oci-layout") == 1.0.0 ]] || fail "oci-layout"

blob() { # DIGEST -> path, checking the digest
    local d=${1#sha256:}
    [[ -f $lay/blobs/sha256/$d ]] || fail "blob $d missing"
    [[ $(sha256sum "$lay/blobs/sha256/$d" | cut -d' ' -f1) == "$d" ]] || fail "blob $d: wrong digest"
    echo "$lay/blobs/sha256/$d"
}
sized() { # DESCRIPTOR_JSON
    local p
    p=$(blob "$(jq -r .digest <<<"$1")")
    [[ $(stat -c %s "$p") == $(jq -r .size <<<"$1") ]] || fail "blob $p: wrong size"
    echo "$p"
}
[[ $(jq '.manifests | length' "$lay/index.json") == 1 ]] || fail "index.json: not one manifest"
mdesc=$(jq -c '.manifests[0]' "$lay/index.json")
[[ $(jq -r .mediaType <<<"$mdesc") == application/vnd.oci.image.manifest.v1+json ]] || fail "manifest type"
manifest=$(sized "$mdesc")
config=$(sized "$(jq -c .config "$manifest")")
[[ $(jq -r .config.mediaType "$manifest") == application/vnd.oci.image.config.v1+json ]] || fail "config type"
[[ $(jq '.layers | length' "$manifest") == $(jq '.rootfs.diff_ids | length' "$config") ]] || fail "layers vs diff_ids"

# Runtime configuration.
user=$(jq -r .config.User "$config")
uid=${user%%:*}
[[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || fail "User '$user' is not a numeric non-root uid"
[[ $(jq -c .config.Entrypoint "$config") == '["/usr/bin/routerd"]' ]] || fail "Entrypoint is not exec-form routerd"
[[ $(jq -r '.config.Labels["org.opencontainers.image.version"]' "$config") == "$v" ]] || fail "version label"
[[ $(jq -r '.config.Labels["org.opencontainers.image.revision"]' "$config") == "$ROUTERD_BUILD_SHA" ]] ||
    fail "revision label is not $ROUTERD_BUILD_SHA"
jq -e '.config.Volumes | has("/var/lib/routerd") and has("/tmp")' "$config" >/dev/null || fail "Volumes"
mapfile -t env < <(jq -r '.config.Env[]' "$config")

# Unpack the layers (checking each diff_id) into a root.
root=$tmp/root
mkdir -p "$root"
i=0
for d in $(jq -r '.layers[].digest' "$manifest"); do
    l=$(sized "$(jq -c ".layers[$i]" "$manifest")")
    want=$(jq -r ".rootfs.diff_ids[$i]" "$config")
    [[ sha256:$(gzip -dc "$l" | sha256sum | cut -d' ' -f1) == "$want" ]] || fail "layer $d: diff_id"
    tar -C "$root" -xzf "$l" --numeric-owner
    i=$((i + 1))
done
grep -q "^routerd:x:$uid:" "$root/etc/passwd" || fail "/etc/passwd has no routerd with uid $uid"
[[ $(stat -c %u "$root/var/lib/routerd") == "$uid" ]] || fail "state directory not owned by $uid"
[[ -f $root/etc/routerd/routerd.env.example ]] || fail "env example missing"

run_env=(env -i "${env[@]}")
if [[ -z ${KIT_NO_CHROOT:-} && $(id -u) -eq 0 ]] && command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
    # As root: the image's own root, read-only, with tmpfs volumes for the
    # state directory and /tmp, as the image's user.
    cat >"$tmp/inside.sh" <<SH
set -eu
r=$root
mount --bind "\$r" "\$r"
mount -o remount,bind,ro "\$r"
mount -t proc proc "\$r/proc"
mount --rbind /dev "\$r/dev"
mount -t tmpfs -o mode=1777 tmpfs "\$r/tmp"
mount -t tmpfs -o mode=0700,uid=$uid,gid=$uid tmpfs "\$r/var/lib/routerd"
run() { ${run_env[*]} $(command -v chroot) --userspec=$user "\$r" "\$@"; }
run /usr/bin/routerd --version
run /usr/bin/routerd --check-config --env-file /etc/routerd/routerd.env.example
run /usr/bin/routerd -c /etc/routerd/staging.ini --env-file /etc/routerd/routerd.env.example --check-config
if touch "\$r/usr/bin/x" 2>/dev/null; then echo "root is writable"; exit 1; fi
# A session: the console transport and the mock backend, state in the volume.
reply=\$(echo "hello image" | ${run_env[*]} ROUTERD_ADMIN_LISTEN=127.0.0.1:0 $(command -v chroot) \
    --userspec=$user "\$r" /usr/bin/routerd -c /etc/routerd/dev.ini 2>/dev/null)
echo "reply: \$reply"
[ -n "\$reply" ]
ls "\$r/var/lib/routerd/routerd.db" >/dev/null
SH
    out=$(unshare -m --propagation private sh "$tmp/inside.sh" 2>&1) || { echo "$out"; fail "run in the image root"; }
else
    # Not root: the image's loader and libraries, from the unpacked root.
    ld=$root/usr/lib64/ld-linux-x86-64.so.2
    libs=$root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    run() { "${run_env[@]}" "$ld" --library-path "$libs" "$root/usr/bin/routerd" --plugin-dir "$root/usr/lib/routerd" "$@"; }
    out=$( { "${run_env[@]}" "$ld" --library-path "$libs" "$root/usr/bin/routerd" --version &&
        run -c "$root/etc/routerd/staging.ini" --env-file "$root/etc/routerd/routerd.env.example" --check-config; } 2>&1) ||
        { echo "$out"; fail "run from the image root"; }
fi
echo "$out"
grep -q "^routerd $v (build $ROUTERD_BUILD_SHA" <<<"$out" || fail "--version output"
grep -q "^configuration OK: /etc/routerd/staging.ini\|^configuration OK: .*/etc/routerd/staging.ini" <<<"$out" ||
    fail "--check-config of staging.ini"
# The Containerfile (registry base) declares the same runtime settings.
cf=$src/packaging/oci/Containerfile
[[ $(sed -n 's/^USER //p' "$cf") == "$user" ]] || fail "Containerfile USER differs from $user"
[[ $(sed -n 's/^ENTRYPOINT //p' "$cf" | jq -c .) == "$(jq -c .config.Entrypoint "$config")" ]] ||
    fail "Containerfile ENTRYPOINT differs"
[[ $(sed -n 's/^VOLUME //p' "$cf" | jq -c sort) == "$(jq -c '.config.Volumes | keys | sort' "$config")" ]] ||
    fail "Containerfile VOLUME differs"
for e in "${env[@]}"; do
    [[ $e == PATH=* ]] || grep -qx "ENV $e" "$cf" || fail "Containerfile lacks ENV $e"
done
[[ $(grep -c '^ENV ' "$cf") == $((${#env[@]} - 1)) ]] || fail "Containerfile has other ENV lines"
echo "oci image: ok"
