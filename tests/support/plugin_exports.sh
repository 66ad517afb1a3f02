#!/bin/sh
# plugin_exports.sh NM DIR: every plugin in DIR exports exactly the
# descriptor symbol the loader looks up, and nothing of the code it links in.
set -eu
nm=$1
dir=$2
n=0
for so in "$dir"/*.so; do
    syms=$("$nm" -D --defined-only "$so" | awk '{print $NF}')
    if [ "$syms" != routerd_plugin_v1 ]; then
        echo "$so exports:" $syms
        exit 1
    fi
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "no plugins in $dir"; exit 1; }
echo "$n plugins export only routerd_plugin_v1"
