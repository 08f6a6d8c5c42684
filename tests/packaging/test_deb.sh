#!/usr/bin/env bash
# The .deb: cpack builds it from this build tree; unpacked into a scratch root, its CLI reports its version and
# runs a forward pass and an analysis on the installed demo checkpoint, the workbench draws a figure headlessly,
# and the desktop entry, AppStream metadata and man pages are valid.
# usage: test_deb.sh BUILD_DIR WORKDIR
set -uo pipefail
build=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
fail=0
cpack -G DEB -B "$work/pkg" --config "$build/CPackConfig.cmake" > "$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/pkg/mechscope_*_amd64.deb)
# (outputs are captured before matching: with pipefail, `cmd | grep -q` fails when grep exits early)
info=$(dpkg-deb -I "$deb")
[[ "$info" == *"Depends:"*"libtorch"* ]] || { echo "FAIL: Depends lacks libtorch: $info"; fail=1; }
root=$work/root
dpkg-deb -x "$deb" "$root"
bin=$root/usr/bin
models=$root/usr/share/mechscope/models
out=$("$bin/mechscope-cli" --version 2>&1)
[[ "$out" == *"mechscope 0.1.0"* ]] || { echo "FAIL: --version from the package: $out"; fail=1; }
out=$("$bin/mechscope-cli" forward -c "$models/mqar-attn.h5" --example 1 --topk 1 2>&1)
[[ "$out" == *"(target v"* ]] || { echo "FAIL: forward: $out"; fail=1; }
plugins=$("$bin/mechscope-cli" plugins 2>&1)
[[ "$plugins" == *"provides task phonebook"* ]] || { echo "FAIL: the packaged plugins do not load: $plugins"; fail=1; }
"$bin/mechscope-cli" analyze patching -c "$models/mqar-attn.h5" -n 8 --out "$work/p.h5" --quiet > /dev/null || { echo "FAIL: analyze"; fail=1; }
XDG_RUNTIME_DIR=$work QT_QPA_PLATFORM=offscreen "$bin/mechscope" --render "$work/p.h5" --out "$work/p.svg" > /dev/null 2>&1 \
  && grep -q "<svg" "$work/p.svg" || { echo "FAIL: mechscope --render from the package"; fail=1; }
out=$("$bin/mechscope-cli" grid "$root/usr/share/mechscope/grids/mqar-pairs.toml" --folder "$work/g" --dry-run 2>&1)
[[ "$out" == *"18 tasks"* ]] || { echo "FAIL: the packaged grid manifest: $out"; fail=1; }
out=$(ldd "$bin/mechscope-cli")
[[ "$out" == *"libmechscope_core.so.0 => $root/usr/"* ]] || { echo "FAIL: the CLI does not find the package's libmechscope_core: $out"; fail=1; }
desktop=$root/usr/share/applications/io.mechscope.MechScope.desktop
[ -f "$desktop" ] || { echo "FAIL: no desktop entry"; fail=1; }
if command -v desktop-file-validate > /dev/null; then desktop-file-validate "$desktop" || { echo "FAIL: desktop entry"; fail=1; }; fi
if command -v appstreamcli > /dev/null; then
  appstreamcli validate --no-net --pedantic "$root/usr/share/metainfo/io.mechscope.MechScope.metainfo.xml" > "$work/as.log" 2>&1 \
    || grep -q "Validation was successful" "$work/as.log" || { cat "$work/as.log"; echo "FAIL: AppStream"; fail=1; }
fi
# Launch as the desktop entry does (its Exec line, %F = a demo checkpoint) under Xvfb; --screenshots makes it quit.
if command -v xvfb-run > /dev/null && [ -f "$desktop" ]; then
  exec_line=$(sed -n 's/^Exec=//p' "$desktop" | head -1)
  program=${exec_line%% *}
  [[ "$exec_line" == *"%F"* || "$exec_line" == *"%f"* ]] || { echo "FAIL: the desktop entry takes no files: $exec_line"; fail=1; }
  XDG_RUNTIME_DIR=$work timeout 300 xvfb-run -a -s "-screen 0 1600x1000x24" "$bin/$program" --screenshots "$work/shots" \
    "$models/mqar-attn.h5" > "$work/launch.log" 2>&1 || { cat "$work/launch.log"; echo "FAIL: launching $exec_line"; fail=1; }
  [ -s "$work/shots/window.png" ] || { echo "FAIL: the launched workbench drew no window"; fail=1; }
fi
[ -f "$root/usr/share/icons/hicolor/scalable/apps/io.mechscope.MechScope.svg" ] || { echo "FAIL: icon"; fail=1; }
[ -f "$root/usr/include/mechscope/core/plugin/plugin.h" ] || { echo "FAIL: the plugin SDK header"; fail=1; }
[ -f "$root/usr/include/mechscope/app/panel_plugin.h" ] || { echo "FAIL: the panel interface header"; fail=1; }
[[ "$plugins" == *"provides analysis residual-stream"* ]] || { echo "FAIL: the panel plugin is not packaged: $plugins"; fail=1; }
[ -f "$root/usr/lib/cmake/MechScope/MechScopeConfig.cmake" ] || { echo "FAIL: the SDK's CMake package"; fail=1; }
for page in mechscope mechscope-cli; do
  man=$(zcat "$root/usr/share/man/man1/$page.1.gz")
  [[ "$man" == *".SH NAME"* ]] || { echo "FAIL: man page $page"; fail=1; }
done
[ $fail -eq 0 ] && echo "deb: $(basename "$deb") $(stat -c %s "$deb") bytes, all checks passed"
exit $fail
