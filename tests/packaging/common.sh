# Shared by the packaging tests: the source tree's build identity, so that
# every package build in a test run (and a copy of the tree without .git)
# gets the same SOURCE_DATE_EPOCH and build SHA.
kit_identity() { # SRC [WORK]: WORK/a/identity, written by the fixture, wins
    local src=$1 work=${2:-}
    if [[ -n $work && -f $work/a/identity ]]; then
        # shellcheck disable=SC1091
        . "$work/a/identity"
    fi
    if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
        SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct 2>/dev/null || echo 1700000000)
    fi
    if [[ -z ${ROUTERD_BUILD_SHA:-} ]]; then
        ROUTERD_BUILD_SHA=$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        if [[ $ROUTERD_BUILD_SHA != unknown && -n $(git -C "$src" status --porcelain --untracked-files=no) ]]; then
            ROUTERD_BUILD_SHA+=-dirty
        fi
    fi
    export SOURCE_DATE_EPOCH ROUTERD_BUILD_SHA
}

# Copies the source tree (tracked and new files, no build output) to DEST.
kit_copy_tree() { # SRC DEST
    local src=$1 dest=$2
    mkdir -p "$dest"
    if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$src" ls-files -z --cached --others --exclude-standard |
            tar -C "$src" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$dest" -xf -
    else
        tar -C "$src" --exclude='./build*' --exclude=./dist -cf - . | tar -C "$dest" -xf -
    fi
}

kit_version() { # SRC
    sed -n 's/^project(routerd VERSION \([0-9][0-9.]*\).*/\1/p' "$1/CMakeLists.txt"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
