#!/usr/bin/env bash
# The hostile-input corpus (make_corpus.py) and the careless user's mistakes, run against the CLI and the
# workbench's open paths (docs/robustness.md). Every run must end with an exit status of at most 127 (no crash, no
# kill), within 30 s, with a peak RSS of at most twice its input plus 512 MiB, and every victim file intact.
# usage: run_corpus.sh MECHSCOPE_CLI WORKDIR [MECHSCOPE_GUI]
set -uo pipefail
cli=$1; work=$2; gui=${3:-}
# One engine thread per run: the 30 s bound catches hangs, and ctest runs this beside other tests on a 2-core
# machine, where OpenMP threads waiting on an oversubscribed core made a 7 s eval sweep take over 30 s.
export MECHSCOPE_NUM_THREADS=1
src=$(cd "$(dirname "$0")/../.." && pwd)
demo=$src/resources/models/mqar-hybrid.h5
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
fail=0; runs=0
"$cli" analyze attention -c "$demo" --out results.h5 > /dev/null || { echo "FAIL: cannot make a results file"; exit 1; }
python3 "$src/tests/hostile/make_corpus.py" corpus "$demo" results.h5 "${MECHSCOPE_CORPUS_MUTANTS:-60}" || exit 1

bytes_of() {  # allocated bytes of files or folders (a sparse file counts what it stores)
  local total=0 f
  for f in "$@"; do
    [[ -e "$f" && ! -p "$f" && ! -c "$f" ]] || continue
    total=$((total + $(du -sB1 "$f" | cut -f1)))
  done
  echo "$total"
}

# check LABEL WANT PATTERN INPUT... -- CMD...: WANT is "refused" (exit 1 and PATTERN in stderr), "ok" (exit 0) or "any"
# (0 or 1: a mutant may still load). Always: status <= 127, done in 30 s, RSS bound.
check() {
  local label=$1 want=$2 pattern=$3; shift 3
  local inputs=()
  while [[ $1 != -- ]]; do inputs+=("$1"); shift; done
  shift
  local limit_kb=$(( ($(bytes_of "${inputs[@]}") * 2 + (512 << 20)) / 1024 ))
  /usr/bin/time -o rss.txt -f %M timeout -s KILL 30 "$@" > out.txt 2> err.txt < /dev/null
  local rc=$? rss
  rss=$(tail -1 rss.txt)
  runs=$((runs + 1))
  if (( rc > 127 )); then echo "FAIL $label: exit $rc (crash or over 30 s): $(tail -c 300 err.txt)"; fail=1; return; fi
  if [[ "$rss" =~ ^[0-9]+$ ]] && (( rss > limit_kb )); then
    echo "FAIL $label: peak RSS $((rss / 1024)) MiB over the bound $((limit_kb / 1024)) MiB"; fail=1
  fi
  case $want in
    refused) if (( rc != 1 )) || ! grep -q -- "$pattern" err.txt; then
               echo "FAIL $label: exit $rc, expected a refusal naming '$pattern': $(tail -c 300 err.txt)"; fail=1; fi ;;
    ok) (( rc == 0 )) || { echo "FAIL $label: exit $rc: $(tail -c 300 err.txt)"; fail=1; } ;;
    any) (( rc <= 1 )) || { echo "FAIL $label: exit $rc: $(tail -c 300 err.txt)"; fail=1; } ;;
  esac
}

intact() {  # LABEL FILE SHA256
  [[ "$(sha256sum "$2" 2>/dev/null | cut -d' ' -f1)" == "$3" ]] || { echo "FAIL $1: '$2' was changed"; fail=1; }
}

# ---- structure: JSON, pickles, safetensors, seals
check "deep config.json" refused "nested deeper" corpus/deep_config -- "$cli" info corpus/deep_config
check "deep pickle" refused "nested deeper" corpus/deep_pickle -- "$cli" info corpus/deep_pickle
check "stale-depth pickle" refused "pickle" corpus/stale_pickle -- "$cli" info corpus/stale_pickle
check "stride-0 view" refused "overlaps itself" corpus/stride0 -- "$cli" info corpus/stride0
check "overlapping safetensors" refused "overlap" corpus/overlap -- "$cli" info corpus/overlap
check "sparse seal" refused "sparse" corpus/sparse.h5 -- "$cli" info corpus/sparse.h5

# ---- not files
mkfifo fifo.h5 fifo.txt
check "FIFO checkpoint" refused "FIFO" -- "$cli" info fifo.h5
check "FIFO tokens" refused "FIFO" "$demo" -- "$cli" forward -c "$demo" --tokens-file fifo.txt
check "/dev/zero tokens" refused "character device" "$demo" -- "$cli" forward -c "$demo" --tokens-file /dev/zero

# ---- sizes before allocation
check "bench --seq 2e7" refused "refused before allocating" "$demo" -- "$cli" bench --checkpoint "$demo" --seq 20000000
check "--memory-mb 0" refused "memory_mb" "$demo" -- "$cli" analyze ablation -c "$demo" --examples 4 --memory-mb 0

# ---- libhdf5 on unsealed byte mutants (checkpoints, and results through the workbench's renderer)
for m in corpus/mutants/*.h5; do check "mutant $(basename "$m")" any "" "$m" -- "$cli" info "$m"; done
if [[ -n "$gui" ]]; then
  export QT_QPA_PLATFORM=offscreen
  for r in corpus/rmutants/*.h5; do check "workbench --render $(basename "$r")" any "" "$r" -- "$gui" --render "$r" --out r.png; done
  # The workbench's own open path (File > Open): the window opens the file, screenshots its panels and quits.
  for m in corpus/mutants/m01[5-9].h5 corpus/mutants/m03[0-4].h5 corpus/stride0 corpus/deep_pickle fifo.h5; do
    [[ -e "$m" ]] || continue
    check "workbench open $(basename "$m")" any "" "$m" -- "$gui" --screenshots shots "$m"
  done
  check "workbench --render FIFO" any "" -- "$gui" --render fifo.h5 --out r.png
  grep -q "FIFO" err.txt || { echo "FAIL workbench --render FIFO: no message naming it: $(tail -c 300 err.txt)"; fail=1; }
fi

# ---- clobbering: planted links, full disk, output = input, two writers, missing folder
echo "the user's precious file" > victim.txt
v=$(sha256sum victim.txt | cut -d' ' -f1)
mkdir -p e && ln -s ../victim.txt e/e.csv.tmp && ln -s ../victim.txt e/a.h5.lock
check "eval --csv beside a planted .tmp link" ok "" "$demo" -- "$cli" eval -c "$demo" --examples 8 --csv e/e.csv
intact "planted .tmp link" victim.txt "$v"
[[ -f e/e.csv && ! -L e/e.csv ]] || { echo "FAIL: eval --csv did not write e/e.csv"; fail=1; }
check "output whose lock is a planted link" refused "being written" "$demo" -- "$cli" analyze attention -c "$demo" --out e/a.h5
intact "planted lock link" victim.txt "$v"
check "eval --csv over an existing file" refused "already exists" "$demo" -- "$cli" eval -c "$demo" --examples 8 --csv e/e.csv

mkdir -p full && echo "old results" > full/keep.csv
k=$(sha256sum full/keep.csv | cut -d' ' -f1)
check "full disk: analyze --out" refused "full" "$demo" -- bash -c 'ulimit -f 40; trap "" XFSZ; exec "$0" "$@"' \
  "$cli" analyze attention -c "$demo" --out full/a.h5
[[ ! -e full/a.h5 ]] || { echo "FAIL full disk: a torn full/a.h5 was left"; fail=1; }
# (1 block: room for the error message in err.txt, of 1 KiB, none for the CSV of 7 sweep values x 60 seeds)
check "full disk: eval --csv --force" refused "cannot write" "$demo" -- bash -c 'ulimit -f 1; trap "" XFSZ; exec "$0" "$@"' \
  "$cli" eval -c "$demo" --examples 8 --seeds "$(seq -s, 0 59)" --sweep num_pairs=2,3,4,5,6,7,8 --csv full/keep.csv --force
intact "full disk: the CSV it would have replaced" full/keep.csv "$k"
stale=$(ls full | grep -c '\.tmp-' || true)
[[ "$stale" == 0 ]] || { echo "FAIL full disk: $stale temporary file(s) left"; fail=1; }

cp "$demo" own.h5
o=$(sha256sum own.h5 | cut -d' ' -f1)
check "convert onto its input" refused "also an input" own.h5 -- "$cli" convert own.h5 -o own.h5 --force
check "analyze onto its input" refused "also an input" own.h5 -- "$cli" analyze attention -c own.h5 --out own.h5 --force
intact "output = input" own.h5 "$o"

train=("$cli" train --preset mamba2 --set d_model=32 --set n_layer=2 --task mqar --task-set num_pairs=2
       --task-set seq_len=24 --train-set steps=100000 --train-set batch=8 --quiet)
"${train[@]}" --out two.h5 > /dev/null 2>&1 & first=$!
for _ in $(seq 50); do [[ -e two.h5.lock ]] && break; sleep 0.1; done
check "a second writer of one path" refused "being written by" -- "${train[@]}" --out two.h5 --force
kill -9 "$first" 2> /dev/null; wait "$first" 2> /dev/null
check "train into a missing folder" refused "does not exist" -- "${train[@]}" --out nofolder/x.h5

echo "$runs runs"
exit $fail
