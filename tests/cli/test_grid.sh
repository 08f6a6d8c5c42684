#!/usr/bin/env bash
# Grids with the local executor (docs/cluster.md): manifest mistakes refused by name, task ids that do not move when
# an axis grows, failed and killed tasks run again (a killed training resumes from its checkpoint and ends where an
# uninterrupted one does), a tampered table no longer counts as done, TOML and JSON manifests alike, and an ablation
# sweep sharded in four collecting to the unsharded table.
# usage: test_grid.sh MECHSCOPE_CLI WORKDIR DEMO_MODELS_DIR
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/checks.sh"  # ok, bad, expect_ok, expect_err, contains
cli=$1; work=$2; demos=$3
rm -rf "$work"; mkdir -p "$work"; cd "$work"
export MECHSCOPE_NUM_THREADS=1

# --- manifests that are refused, each by name
TRAIN='"command": ["train", "--task", "mqar", "--task-set", "vocab_size=64", "--task-set", "seq_len=32", "--task-set", "num_pairs=4", "--preset", "mamba2", "--set", "d_model=32", "--train-set", "batch=16", "--train-set", "eval_every=100", "--train-set", "eval_examples=64", "--train-set", "checkpoint_every=50"'
m() { echo "{$2}" > "$1"; }
m bad1.json "$TRAIN], \"axes\": {\"seed\": [1]}, \"colour\": 3";   expect_err "unknown key" 'unknown key "colour"' "$cli" grid bad1.json
m bad2.json '"command": ["forward"], "axes": {"seed": [1]}';     expect_err "command" "'forward' cannot run in a grid" "$cli" grid bad2.json
m bad3.json '"command": ["eval", "-c", "m.h5", "--csv", "x.csv"], "axes": {"seed": [1]}'
expect_err "grid flag" "--csv is chosen by the grid" "$cli" grid bad3.json
m bad4.json "$TRAIN], \"axes\": {\"seed\": [1, 1]}";               expect_err "duplicate value" "lists 1 twice" "$cli" grid bad4.json
m bad5.json "$TRAIN], \"axes\": {\"seed\": []}";                   expect_err "empty axis" "non-empty list" "$cli" grid bad5.json
m bad6.json "$TRAIN], \"axes\": {\"Seed!\": [1]}";                 expect_err "axis name" "is not a flag name" "$cli" grid bad6.json
m bad7.json "$TRAIN], \"axes\": {\"seed\": [1]}, \"shards\": 2";   expect_err "shards" "only an \`analyze ablation\` sweep" "$cli" grid bad7.json
m bad8.json "$TRAIN], \"axes\": {\"seed\": [1]}, \"resources\": {\"cpu\": 2}"; expect_err "resources key" "unknown key resources.cpu" "$cli" grid bad8.json
m bad9.json "$TRAIN, \"--colour\", \"red\"], \"axes\": {\"seed\": [1]}"; expect_err "preflight" "--colour" "$cli" grid bad9.json
expect_err "preflight of a dry run" "not expected: red --colour" "$cli" grid bad9.json --folder dry9.grid --dry-run
[ ! -e dry9.grid ] && ok || bad "a dry run made its grid folder"
echo '{"command": ' > bad10.json;                                  expect_err "JSON syntax" "not valid JSON" "$cli" grid bad10.json
printf 'command = ["train"\n' > bad11.toml;                        expect_err "TOML syntax" "TOML error at line" "$cli" grid bad11.toml
python3 -c "open('bad13.json','w').write('{\"command\": ' + '[' * 100000 + ']' * 100000 + '}')"
expect_err "nesting" "nested deeper than 256" "$cli" grid bad13.json
m bad14.json '"command": "eval -c \"my model.h5\"", "axes": {"seed": [1]}'; expect_err "quoted one-string command" "write it as a list" "$cli" grid bad14.json
m str.json '"command": "eval -c m.h5  --examples 8", "axes": {"seed": [1]}'
out=$("$cli" grid str.json --dry-run 2>&1); contains "one-string command" "mechscope-cli eval -c m.h5 --examples 8 --seed 1 --csv" "$out"
echo 'x' > bad12.yaml;                                             expect_err "extension" "a .json or .toml file" "$cli" grid bad12.yaml
[ ! -e bad9.grid/tasks ] || [ -z "$(ls bad9.grid/tasks/*/result.json 2>/dev/null)" ] && ok || bad "a refused grid ran tasks"

# --- the manifests we ship parse and expand (P3's AR grid, the MQAR pairs grid in TOML with bundles)
res=$(cd "$demos/../grids" && pwd)
out=$("$cli" grid "$res/ar-widths.json" --folder ar.grid --dry-run 2>&1); contains "ar-widths" "60 tasks" "$out"
out=$("$cli" grid "$res/mqar-pairs.toml" --folder mq.grid --dry-run 2>&1); contains "mqar-pairs" "18 tasks" "$out"
contains "TOML bundle flags" "--preset transformer --set attn_cfg.num_heads=1" "$out"
for f in "$res"/*.json "$res"/*.toml; do  # every manifest we ship goes through the option parser (--dry-run)
  out=$("$cli" grid "$f" --folder "shipped-$(basename "$f").grid" --dry-run 2>&1) && ok || bad "$(basename "$f"): $out"
done

# --- a training grid: two seeds, run, collected; the same command again runs nothing
m g.json "$TRAIN, \"--train-set\", \"steps=60\"], \"then\": [\"eval\", \"--examples\", \"64\"], \"axes\": {\"seed\": [1, 2]}"
expect_ok "grid run" "$cli" grid g.json
out=$("$cli" grid status g.json); contains "status all done" "2 tasks, 2 done" "$out"
out=$("$cli" grid g.json); contains "rerun skips done tasks" "2 done, 0 queued or running, 0 to run" "$out"
out=$("$cli" collect g.json 2>&1) && ok || bad "collect: $out"
# the figure is drawn by the workbench beside the CLI where it is built
if [ -x "$(dirname "$cli")/mechscope" ]; then
  [ -s g.grid/collected.png ] && [ -s g.grid/collected.svg ] && ok || bad "no figure: $out"
else
  contains "no workbench, no figure" "no figure" "$out"
fi
head -1 g.grid/collected.csv | grep -q '^task,seed,seeds,examples,accuracy_mean' && ok || bad "collected header: $(head -1 g.grid/collected.csv)"
[ "$(wc -l < g.grid/collected.csv)" = 3 ] && ok || bad "collected rows: $(cat g.grid/collected.csv)"
python3 - g.grid/collected.h5 <<'EOF' && ok || bad "collected HDF5 is not readable by h5py"
import sys
try:
    import h5py
except ImportError:
    sys.exit(0)
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == "mechscope-grid-table"
names = [f[k].attrs["name"] for k in sorted(f.keys())]
assert names[:2] == ["task", "seed"], names
EOF
# a grown axis keeps the finished tasks' ids: one new task only
m g.json "$TRAIN, \"--train-set\", \"steps=60\"], \"then\": [\"eval\", \"--examples\", \"64\"], \"axes\": {\"seed\": [1, 2, 3]}"
out=$("$cli" grid g.json --dry-run); contains "grown axis" "2 done, 0 queued or running, 1 to run" "$out"
# a table changed after its task finished breaks the seal: the task is failed, and runs again
first=$(ls g.grid/tasks | head -1)
echo "tampered" >> "g.grid/tasks/$first/result.csv"
out=$("$cli" grid status g.json); contains "seal" "does not match the record's seal" "$out"
expect_err "collect refuses an unfinished grid" "not done" "$cli" collect g.json
expect_ok "collect --partial" "$cli" collect g.json --partial --out partial
expect_ok "rerun" "$cli" grid g.json
out=$("$cli" grid status g.json); contains "all done again" "3 tasks, 3 done" "$out"
# a record that is not one (garbage, or nested a million deep) is not trusted: the task is failed, and runs again
head -c 3000 /dev/urandom > "g.grid/tasks/$first/result.json"
out=$("$cli" grid status g.json); contains "garbage record" "unreadable record" "$out"
python3 -c "open('g.grid/tasks/$first/result.json','w').write('[' * 1000000 + ']' * 1000000)"
out=$("$cli" grid status g.json); contains "deep record" "nested deeper than 256" "$out"
expect_ok "rerun after a bad record" "$cli" grid g.json
out=$("$cli" grid status g.json); contains "all done a third time" "3 tasks, 3 done" "$out"

# --- TOML gives the same tasks as JSON
cat > g.toml <<'EOF'
name = "g"
out = "g.grid"
command = ["train", "--task", "mqar", "--task-set", "vocab_size=64", "--task-set", "seq_len=32", "--task-set", "num_pairs=4", "--preset", "mamba2", "--set", "d_model=32", "--train-set", "batch=16", "--train-set", "eval_every=100", "--train-set", "eval_examples=64", "--train-set", "checkpoint_every=50", "--train-set", "steps=60"]
then = ["eval", "--examples", "64"]
[axes]
seed = [1, 2, 3]
EOF
out=$("$cli" grid status g.toml); contains "TOML manifest, same ids" "3 tasks, 3 done" "$out"

# --- a killed training: the task is failed without a record, and the next run resumes it from its checkpoint to the
# result an uninterrupted run gives (training at one thread is deterministic)
m k.json "$TRAIN, \"--train-set\", \"steps=1500\"], \"then\": [\"eval\", \"--examples\", \"128\"], \"axes\": {\"seed\": [5]}"
m ref.json "$TRAIN, \"--train-set\", \"steps=1500\"], \"then\": [\"eval\", \"--examples\", \"128\"], \"axes\": {\"seed\": [5]}"
"$cli" grid k.json > k.out 2>&1 &
gridpid=$!
for _ in $(seq 1 600); do [ -n "$(ls k.grid/tasks/*/model.h5 2>/dev/null)" ] && break; sleep 0.1; done
sleep 1
pkill -KILL -f "grid task $work/k.grid" ; pkill -KILL -f "$work/k.grid/tasks/.*/model.h5"
wait $gridpid
out=$("$cli" grid status k.json); contains "killed task" "stopped without a record" "$out"
expect_ok "rerun after kill" "$cli" grid k.json
grep -q -- "train --resume" k.grid/tasks/*/log.txt && ok || bad "the killed training was not resumed: $(grep '==' k.grid/tasks/*/log.txt)"
expect_ok "reference grid" "$cli" grid ref.json
expect_ok "collect k" "$cli" collect k.json
expect_ok "collect ref" "$cli" collect ref.json
cmp -s k.grid/collected.csv ref.grid/collected.csv && ok || bad "resumed != uninterrupted: $(cat k.grid/collected.csv ref.grid/collected.csv)"

# --- two runners on one grid (two terminals): each task runs once, the second runner leaves what the first started
m two.json "$TRAIN, \"--train-set\", \"steps=300\"], \"then\": [\"eval\", \"--examples\", \"64\"], \"axes\": {\"seed\": [1, 2, 3, 4]}"
"$cli" grid two.json --jobs 1 > two-a.out 2>&1 &
a=$!
"$cli" grid two.json --jobs 1 > two-b.out 2>&1
wait $a
out=$("$cli" grid status two.json); contains "two runners: all done" "4 tasks, 4 done" "$out"
for log in two.grid/tasks/*/log.txt; do
  [ "$(grep -c '^== ' "$log")" = 2 ] && ok || bad "two runners: a task ran twice: $(grep '^== ' "$log")"
done

# --- an ablation sweep in four shards collects to the unsharded sweep's table. Each shard batches fewer variants
# than the whole sweep, so BLAS could round differently: compared to 1e-6 relative (on this machine it is equal).
for n in 1 4; do
  m abl$n.json "\"name\": \"abl$n\", \"command\": [\"analyze\", \"ablation\", \"-c\", \"$demos/mqar-hybrid.h5\", \"-n\", \"32\"], \"axes\": {\"ablation\": [\"zero\", \"mean\"]}, \"shards\": $n"
  expect_ok "ablation grid $n" "$cli" grid abl$n.json
  expect_ok "collect ablation $n" "$cli" collect abl$n.json
done
python3 - abl1.grid/collected.csv abl4.grid/collected.csv <<'EOF' && ok || bad "sharded ablation table differs from the unsharded one"
import csv, sys
a = list(csv.reader(open(sys.argv[1]))); b = list(csv.reader(open(sys.argv[2])))
assert len(a) == len(b) == 11 and a[0] == b[0], (len(a), len(b), a[0], b[0])
for ra, rb in zip(a[1:], b[1:]):
    assert ra[:3] == rb[:3], (ra, rb)
    for x, y in zip(ra[3:], rb[3:]):
        assert abs(float(x) - float(y)) <= 1e-6 * max(1.0, abs(float(x))), (ra, rb)
EOF
expect_err "shard past the heads" "the sweep has only 5 heads" "$cli" analyze ablation -c "$demos/mqar-hybrid.h5" -n 4 --shard 0/9
expect_err "shard syntax" "give I/N" "$cli" analyze ablation -c "$demos/mqar-hybrid.h5" -n 4 --shard 4/4

echo "test_grid: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
