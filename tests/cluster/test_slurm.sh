#!/usr/bin/env bash
# Grids on a real Slurm (ctest label slurm): starts a single-node cluster from Debian's packages (munge, slurmctld,
# slurmd; a slurm.conf written here for this host with 2 CPUs, its own ports, sockets and spool), submits a grid of
# short trainings and an ablation sweep sharded in four as job arrays, waits through `grid status --wait` (squeue),
# collects, and checks the tables against the local executor's, bit for bit (one thread per task on both sides). A
# training cancelled mid-run (scancel: SIGTERM, the trainer saves and stops) is failed, resubmitted alone, resumed
# from its checkpoint, and ends where an uninterrupted run does. The daemons are stopped at the end, whatever happens.
# Skips (77) where Slurm's packages are missing or it is not run as root (slurmd starts jobs as their users).
# usage: test_slurm.sh MECHSCOPE_CLI WORKDIR DEMO_MODELS_DIR
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/../cli/checks.sh"  # ok, bad, expect_ok, expect_err, contains
cli=$1; work=$2; demos=$3
for b in munged slurmctld slurmd sbatch squeue scontrol sinfo scancel; do
  command -v "$b" > /dev/null || { echo "skip: $b is missing (tests/cluster/install-slurm.sh installs Slurm)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "skip: a single-node Slurm needs root here"; exit 77; }
rm -rf "$work"; mkdir -p "$work"; cd "$work"
# Daemon state in a short path: munge's socket path must fit a sockaddr_un.
state=$(mktemp -d /tmp/mechscope-slurm.XXXXXX)
chmod 755 "$state"
mkdir -p "$state/munge" "$state/spool" "$state/ctld" "$state/log"
chmod 700 "$state/munge"
export SLURM_CONF=$state/slurm.conf
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2> /dev/null; }
stop() {
  scontrol shutdown > /dev/null 2>&1
  for _ in $(seq 1 50); do alive "$state/slurmctld.pid" || alive "$state/slurmd.pid" || break; sleep 0.2; done
  for d in slurmd slurmctld; do alive "$state/$d.pid" && kill -9 "$(cat "$state/$d.pid")"; done
  munged -s --socket="$state/munge/socket" > /dev/null 2>&1
  rm -rf "$state"
}
trap stop EXIT

host=$(hostname -s)
cpus=$(( $(nproc) < 2 ? $(nproc) : 2 ))
port=$(( 20000 + RANDOM % 20000 ))
dd if=/dev/urandom of="$state/munge/key" bs=1024 count=1 2> /dev/null; chmod 600 "$state/munge/key"
munged -f --socket="$state/munge/socket" --key-file="$state/munge/key" --log-file="$state/log/munged.log" \
  --pid-file="$state/munge/pid" --seed-file="$state/munge/seed" || { echo "FAIL: munged did not start"; exit 1; }
cat > "$SLURM_CONF" <<EOF
ClusterName=mechscope-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$state/munge/socket
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -i || { echo "FAIL: slurmctld did not start"; cat "$state/log/slurmctld.log"; exit 1; }
slurmd || { echo "FAIL: slurmd did not start"; cat "$state/log/slurmd.log"; exit 1; }
for _ in $(seq 1 150); do sinfo -h -o %t 2> /dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %t | grep -q idle && ok || { bad "the node never became idle: $(sinfo 2>&1)"; tail -5 "$state"/log/*.log; exit 1; }

export MECHSCOPE_NUM_THREADS=1  # the local side; Slurm's tasks take theirs from SLURM_CPUS_PER_TASK
TRAIN='"command": ["train", "--task", "mqar", "--task-set", "vocab_size=64", "--task-set", "seq_len=32", "--task-set", "num_pairs=4", "--preset", "mamba2", "--set", "d_model=32", "--train-set", "batch=16", "--train-set", "eval_every=100", "--train-set", "eval_examples=64", "--train-set", "checkpoint_every=50"'
for side in slurm local; do
  echo "{\"name\": \"train-$side\", $TRAIN, \"--train-set\", \"steps=200\"], \"then\": [\"eval\", \"--examples\", \"128\"], \"axes\": {\"set.d_model\": [16, 32], \"seed\": [1, 2]}, \"resources\": {\"cpus\": 1, \"time\": \"00:10:00\", \"throttle\": 2}}" > train-$side.json
  echo "{\"name\": \"abl-$side\", \"command\": [\"analyze\", \"ablation\", \"-c\", \"$demos/mqar-hybrid.h5\", \"-n\", \"32\"], \"axes\": {\"ablation\": [\"zero\"]}, \"shards\": 4, \"resources\": {\"cpus\": 1}}" > abl-$side.json
done
wait_grid() { timeout 300 "$cli" grid status "$1" --wait > "$1.status" 2>&1; }
for g in train abl; do
  out=$("$cli" grid $g-slurm.json --executor slurm 2>&1) && ok || bad "submit $g: $out"
  [[ "$out" == *"submitted Slurm job"* ]] && ok || bad "submit $g: $out"
done
sbatch_script=$(ls train-slurm.grid/slurm/*.sh | head -1)
grep -q -- "--array=0-3%2" "$sbatch_script" && ok || bad "throttle: $(grep array "$sbatch_script")"
for g in train abl; do wait_grid $g-slurm.json && ok || bad "$g on Slurm: $(cat $g-slurm.json.status) $(tail -3 $g-slurm.grid/slurm/*.out)"; done
grep -h '"slurm_job"' train-slurm.grid/tasks/*/result.json | head -1 | grep -q '"' && ok || bad "records lack the Slurm job"
grep -h '"threads": 1' abl-slurm.grid/tasks/*/result.json | wc -l | grep -q '^4$' && ok || bad "Slurm tasks did not take SLURM_CPUS_PER_TASK=1"
for g in train abl; do
  "$cli" grid $g-local.json > /dev/null 2>&1 && ok || bad "$g locally"
  for side in slurm local; do "$cli" collect $g-$side.json > /dev/null 2>&1 && ok || bad "collect $g-$side"; done
  cmp -s $g-slurm.grid/collected.csv $g-local.grid/collected.csv && ok ||
    bad "$g: Slurm's table differs from the local one: $(diff $g-slurm.grid/collected.csv $g-local.grid/collected.csv | head -5)"
done
[ "$(wc -l < abl-slurm.grid/collected.csv)" = 6 ] && ok || bad "sharded ablation rows: $(cat abl-slurm.grid/collected.csv)"

# A training cancelled while it runs: failed with the signal, resubmitted alone, resumed, and equal to a local run.
for side in slurm local; do
  echo "{\"name\": \"long-$side\", $TRAIN, \"--train-set\", \"steps=2000\"], \"then\": [\"eval\", \"--examples\", \"128\"], \"axes\": {\"seed\": [7, 8]}, \"resources\": {\"cpus\": 1}}" > long-$side.json
done
"$cli" grid long-slurm.json --executor slurm > /dev/null 2>&1 && ok || bad "submit long"
job=$(python3 -c "import json; print(json.load(open('long-slurm.grid/slurm/submissions.json'))[0]['job'])")
first=$(python3 -c "import json; print(json.load(open('long-slurm.grid/slurm/submissions.json'))[0]['ids'][0])")
for _ in $(seq 1 900); do [ -f "long-slurm.grid/tasks/$first/model.h5" ] && break; sleep 0.1; done
sleep 1
scancel "${job}_0"
wait_grid long-slurm.json
out=$("$cli" grid status long-slurm.json); [[ "$out" == *"1 done, 1 failed"* ]] && ok || bad "cancelled task: $out"
out=$("$cli" grid long-slurm.json --executor slurm 2>&1); [[ "$out" == *"an array of 1 tasks"* ]] && ok || bad "resubmit: $out"
wait_grid long-slurm.json && ok || bad "resubmitted task: $(cat long-slurm.json.status)"
grep -q -- "train --resume" long-slurm.grid/tasks/*/log.txt && ok || bad "the cancelled training was not resumed"
"$cli" grid long-local.json > /dev/null 2>&1 && ok || bad "long locally"
for side in slurm local; do "$cli" collect long-$side.json > /dev/null 2>&1 && ok || bad "collect long-$side"; done
cmp -s long-slurm.grid/collected.csv long-local.grid/collected.csv && ok ||
  bad "resumed on Slurm != uninterrupted locally: $(cat long-slurm.grid/collected.csv long-local.grid/collected.csv)"

echo "test_slurm: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
