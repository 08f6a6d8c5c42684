#!/usr/bin/env bash
# Headless figures from results files: `mechscope --render` draws what `mechscope-cli analyze` wrote, in every
# format, and says what is wrong with a bad request.
# usage: test_render.sh MECHSCOPE_CLI MECHSCOPE MODELS_DIR WORKDIR
set -uo pipefail
cli=$1; gui=$2; models=$3; work=$4
rm -rf "$work"; mkdir -p "$work"; cd "$work"
unset DISPLAY WAYLAND_DISPLAY QT_QPA_PLATFORM
export XDG_RUNTIME_DIR=$work
fail=0
"$cli" analyze patching -c "$models/mqar-attn.h5" -n 16 --out p.h5 --quiet > /dev/null || { echo "FAIL: analyze"; exit 1; }
"$cli" analyze attention -c "$models/mqar-hybrid.h5" --out a.h5 --quiet > /dev/null || { echo "FAIL: analyze attention"; exit 1; }
"$gui" --render p.h5 --tensor patching/score --out f.png --size 900x600 > /dev/null || { echo "FAIL: render png"; fail=1; }
"$gui" --render p.h5 --out f.pdf > /dev/null || { echo "FAIL: render pdf"; fail=1; }
"$gui" --render a.h5 --tensor attention/L0.ssm --index 1 --out f.svg > /dev/null || { echo "FAIL: render svg"; fail=1; }
[ "$(head -c 4 f.png | od -An -c | tr -d ' ')" = "211PNG" ] || { echo "FAIL: png header"; fail=1; }
[ "$(head -c 5 f.pdf)" = "%PDF-" ] || { echo "FAIL: pdf header"; fail=1; }
grep -q "<svg" f.svg || { echo "FAIL: svg"; fail=1; }
out=$("$gui" --render a.h5 --tensor attention/L0.ssm --out x.png 2>&1) && { echo "FAIL: 3-D without --index"; fail=1; }
[[ "$out" == *"--index"* ]] || { echo "FAIL: message lacks --index: $out"; fail=1; }
out=$("$gui" --render p.h5 --tensor patching/scor --out x.png 2>&1) && { echo "FAIL: unknown tensor"; fail=1; }
[[ "$out" == *"patching/score"* ]] || { echo "FAIL: message lacks the tensor names: $out"; fail=1; }
out=$("$gui" --render p.h5 --out x.bmp 2>&1) && { echo "FAIL: bmp"; fail=1; }
[ -e x.png ] || [ -e x.bmp ] && { echo "FAIL: a failed render left a file"; fail=1; }
out=$("$gui" --render "$models/mqar-attn.h5" --out x.png 2>&1) && { echo "FAIL: a checkpoint is not a results file"; fail=1; }
[[ "$out" == *"not a MechScope results file"* ]] || { echo "FAIL: message: $out"; fail=1; }
# A workspace replays headlessly into the same figures.
cat > ws.json <<WS
{"format": "mechscope-workspace", "version": 1, "models": ["$models/mqar-attn.h5", "$models/mqar-hybrid.h5"], "current": 1,
 "task": "", "examples": 16, "seed": 3, "example": 1, "ablated": ["L1.attn.H0"], "ablation": "zero", "site": "resid_pre", "layout": ""}
WS
"$gui" --replay figs ws.json > replay.log 2>&1 || { echo "FAIL: replay: $(cat replay.log)"; fail=1; }
for f in attention heads patching embeddings-pca compare-0 compare-1; do
  [ -s "figs/$f.png" ] && [ -s "figs/$f.svg" ] && [ -s "figs/$f.csv" ] || { echo "FAIL: replay lacks $f"; fail=1; }
done
# Each figure records what it was drawn from (issue 26): the head grid is clean, its crosses the ablated heads; the
# attention map is the clean run's, so the ablation is not listed as if it had shaped it.
grep -q '"marked":\["L1.attn.H0"\]' figs/heads.csv && grep -q '"run":"clean"' figs/heads.csv &&
  ! grep -q '"ablated"' figs/heads.csv || { echo "FAIL: replay provenance: $(head -1 figs/heads.csv)"; fail=1; }
grep -q '"view":"attention"' figs/attention.csv && ! grep -q '"ablated"' figs/attention.csv ||
  { echo "FAIL: attention provenance: $(head -1 figs/attention.csv)"; fail=1; }
# The CLI replays too (through the workbench binary beside it): the same figures, the same numbers.
"$cli" replay ws.json --out figs-cli > replay-cli.log 2>&1 || { echo "FAIL: cli replay: $(cat replay-cli.log)"; fail=1; }
cmp -s figs/heads.csv figs-cli/heads.csv || { echo "FAIL: cli replay differs from the workbench's"; fail=1; }
# A workspace saved with the aligned patching view replays that view.
sed 's/"site": "resid_pre"/"site": "resid_pre", "patching_view": "aligned"/' ws.json > ws-aligned.json
"$gui" --replay figs-aligned ws-aligned.json > replay-aligned.log 2>&1 || { echo "FAIL: aligned replay: $(cat replay-aligned.log)"; fail=1; }
grep -q 'corrupted+1' figs-aligned/patching.csv || { echo "FAIL: aligned replay: $(head -2 figs-aligned/patching.csv)"; fail=1; }
out=$("$cli" replay nothere.json --out x 2>&1) && { echo "FAIL: replay of a missing workspace"; fail=1; }
[[ "$out" == *"no workspace"* ]] || { echo "FAIL: message: $out"; fail=1; }
# The scripted user's session (scripts/screenshots.sh's, offscreen here): every step without an error, the window
# saved at each, every figure exported in every format, the workspace reopened.
imported=$models/../../tests/import/fixtures/hf5/llama_theta500k
QT_QPA_PLATFORM=offscreen "$gui" "$models/mqar-hybrid.h5" "$models/mqar-attn.h5" "$models/kv-hybrid.h5" "$imported" \
  --journey journey > journey.log 2>&1 || { echo "FAIL: journey: $(grep -i error journey.log | head -3)"; fail=1; }
[ "$(ls journey/*.png 2>/dev/null | wc -l)" -ge 9 ] || { echo "FAIL: journey screenshots: $(ls journey)"; fail=1; }
for f in heads attention patching; do
  for x in png pdf svg csv; do [ -s "journey/figures/$f.$x" ] || { echo "FAIL: journey lacks figures/$f.$x"; fail=1; }; done
done
out=$("$gui" "$models/mqar-attn.h5" 2>&1); rc=$?
[ $rc -eq 2 ] && [[ "$out" == *"xvfb-run"* ]] || { echo "FAIL: no display: rc $rc: $out"; fail=1; }
[ $fail -eq 0 ] && echo "render: all passed"
exit $fail
