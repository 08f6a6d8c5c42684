#!/usr/bin/env bash
# The plugin SDK as a user meets it: install MechScope into a scratch prefix, build the template plugin out of
# tree against it with find_package(MechScope), and load it with the installed CLI through MECHSCOPE_PLUGIN_PATH.
# usage: test_sdk.sh BUILD_DIR SOURCE_DIR WORKDIR
set -uo pipefail
build=$1; src=$2; work=$3
rm -rf "$work"; mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
[ -f "$prefix/include/mechscope/core/plugin/plugin.h" ] || { echo "FAIL: SDK header not installed"; exit 1; }
gen=(); command -v ninja > /dev/null && gen=(-G Ninja)
cmake -S "$src/plugins/Template" -B "$work/template" "${gen[@]}" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  > "$work/configure.log" 2>&1 || { cat "$work/configure.log"; echo "FAIL: configure the template against the SDK"; exit 1; }
cmake --build "$work/template" > "$work/build.log" 2>&1 || { tail -30 "$work/build.log"; echo "FAIL: build the template"; exit 1; }
out=$(MECHSCOPE_PLUGIN_PATH="$work/template" "$prefix/bin/mechscope-cli" plugins 2>&1)
[[ "$out" == *"provides analysis embedding-norms"* ]] || { echo "FAIL: the installed CLI does not load it: $out"; exit 1; }
[[ "$out" == *"provides task phonebook"* ]] || { echo "FAIL: the installed plugins: $out"; exit 1; }
"$prefix/bin/mechscope-cli" init --preset transformer --out "$work/m.h5" > /dev/null
out=$(MECHSCOPE_PLUGIN_PATH="$work/template" "$prefix/bin/mechscope-cli" analyze embedding-norms -c "$work/m.h5" --tokens 1,5,6 2>&1) \
  || { echo "FAIL: run the out-of-tree analysis: $out"; exit 1; }
[[ "$out" == *"embedding_norms/norm [3]"* ]] || { echo "FAIL: $out"; exit 1; }
# The installed workbench loads it too (offscreen; its Plugins panel lists the analysis), and the in-tree panel.
if [ -x "$prefix/bin/mechscope" ]; then
  out=$(QT_QPA_PLATFORM=offscreen MECHSCOPE_PLUGIN_PATH="$work/template" "$prefix/bin/mechscope" --list-plugins 2>&1) \
    || { echo "FAIL: the installed workbench: $out"; exit 1; }
  [[ "$out" == *"Plugins panel:"*"embedding-norms"* && "$out" == *"loaded panel: Residual stream"* ]] \
    || { echo "FAIL: the installed workbench does not load the plugins: $out"; exit 1; }
fi
echo "sdk: the template built out of tree against $prefix and loaded"
