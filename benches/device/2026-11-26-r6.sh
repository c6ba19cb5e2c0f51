#!/usr/bin/env bash
# Device run 6: tactic timing with CUDA-graph samples (commit 4th of the session's timing fixes).
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
W=/tmp/r6; mkdir -p $W
python3 ../../fixtures/export_zoo.py /tmp/zoo --only resnet50,bert_base --exporters legacy > $W/export.log 2>&1 &
EXP=$!
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "passed|FAILED|^kiln|with CUDA|build |rebuild|tactics:" $W/$name.log | sed "s/^/[$name] /" | tail -${N:-12}; }
N=3 t tactics ./bin/test-kiln-engine-gpu_tactics
wait $EXP
R=/tmp/zoo/resnet50_legacy.onnx; B=/tmp/zoo/bert_base_legacy.onnx; EB=./bin/engine_bench
t rn_b1 $EB $W/rn_b1.json --model $R --batches 1 --iters 30 --opt-level 3 --timing-cache $W/tc1.json
t rn_b1_opt0 $EB $W/rn_b1_opt0.json --model $R --batches 1 --iters 30 --opt-level 0
t rn_b256 $EB $W/rn_b256.json --model $R --batches 256 --iters 30 --opt-level 3 --workspace 4GiB
t rn_b256_opt0 $EB $W/rn_b256_opt0.json --model $R --batches 256 --iters 30 --opt-level 0 --workspace 4GiB
t bert $EB $W/bert.json --model $B --batches 1,128 --iters 30 --opt-level 3
t bert_opt0 $EB $W/bert_opt0.json --model $B --batches 1,128 --iters 30 --opt-level 0
tar -czf $OUT/r6.tgz -C /tmp r6
