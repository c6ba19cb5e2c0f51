#!/usr/bin/env bash
# Device run 9 (issue 8): kiln-batch with CUDA graphs and padded graph batch sizes. GPU tests of
# the multi-graph context cache and of the executor, then ResNet-50 fp16 under load.
# Binaries (release, stripped) in target/r9bin: test-kiln-engine-gpu_concurrency,
# test-kiln-engine-gpu, test-kiln-batch-gpu_batch, engine_bench, batch_bench.
set -u
cd "$(dirname "$0")/../.."
B=$PWD/target/r9bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/fixtures
nvidia-smi -L
W=/tmp/r9; mkdir -p $W
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "passed|FAILED|panicked|error" $W/$name.log | tail -4; }
(python3 fixtures/export_zoo.py /tmp/zoo --only resnet50 --exporters legacy > $W/zoo.log 2>&1; echo "zoo rc=$?" >> $W/zoo.log) &
ZOO=$!
t concurrency $B/test-kiln-engine-gpu_concurrency
t batch $B/test-kiln-batch-gpu_batch
wait $ZOO; tail -2 $W/zoo.log
M=/tmp/zoo/resnet50_legacy.onnx
T=120 t engine_b64 $B/engine_bench $W/engine_b64.json --model $M --precision fp16 --batches 64 --workspace 4GiB
grep -E "compute|graph|enqueue" $W/engine_b64.log | head -12
BB="$B/batch_bench --model $M --precision fp16 --max-batch 64 --workspace-mib 4096 --seconds 3"
T=150 t batch_g2 $BB $W/batch_g2.json --instances 2
grep -E "capacity|offered|executor build" $W/batch_g2.log
T=150 t batch_g4 $BB $W/batch_g4.json --instances 4
grep -E "capacity|offered|executor build" $W/batch_g4.log
T=100 t batch_nog $BB $W/batch_nog.json --instances 2 --graphs false --loads 0.1,0.5,0.9
grep -E "capacity|offered|executor build" $W/batch_nog.log
tar -czf $OUT/r9.tgz -C /tmp r9
