#!/usr/bin/env bash
# Device run 1: every GPU test binary, then a first look at ResNet-50 / BERT-base speed.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
mkdir -p $OUT
(python3 ../../fixtures/export_zoo.py /tmp/zoo --only resnet50,bert_base --exporters legacy > $OUT/export.log 2>&1; echo export done >> $OUT/export.log) &
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $OUT/$name.log 2>&1; echo "rc=$? $name"; grep -E "passed|failed|FAIL|error" $OUT/$name.log | tail -4; }
t elementwise ./bin/test-kiln-engine-gpu_elementwise_fusion
t norm ./bin/test-kiln-engine-gpu_norm_fusion
t attention ./bin/test-kiln-engine-gpu_attention
t nhwc ./bin/test-kiln-engine-gpu_nhwc
t tactics ./bin/test-kiln-engine-gpu_tactics
t batch ./bin/test-kiln-batch-gpu_batch
t kernels ./bin/test-kiln-engine-gpu_kernels
t libs ./bin/test-kiln-engine-gpu_libs
T=200 t gpu ./bin/test-kiln-engine-gpu
wait
tail -3 $OUT/export.log
T=150 t bench_rn ./bin/engine_bench $OUT/rn.json --model /tmp/zoo/resnet50_legacy.onnx --precision fp16 --batches 1,256 --iters 20 --workspace 4GiB
T=120 t bench_bert ./bin/engine_bench $OUT/bert.json --model /tmp/zoo/bert_base_legacy.onnx --precision fp16 --batches 1,128 --iters 20 --workspace 4GiB
grep -E "kiln |with CUDA|profiled|build" $OUT/bench_rn.log $OUT/bench_bert.log | head -30
