#!/usr/bin/env bash
# Device run 4: the whole GPU suite on the final code, with the zoo (4 models x both exporters
# x 4 precisions, all fusions on) against kiln-reference and PyTorch's own outputs.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
W=/tmp/r4; mkdir -p $W
(python3 ../../fixtures/export_zoo.py /tmp/zoo > $W/export.log 2>&1 && python3 ../../fixtures/export_zoo.py /tmp/zoo --sensitivity > $W/sensitivity.log 2>&1; echo "export rc=$?" >> $W/export.log) &
EXP=$!
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "passed|FAILED|panicked" $W/$name.log | tail -3; }
t cuda ./bin/test-kiln-cuda-gpu
t libs ./bin/test-kiln-engine-gpu_libs
t kernels ./bin/test-kiln-engine-gpu_kernels
t concurrency ./bin/test-kiln-engine-gpu_concurrency
t elementwise ./bin/test-kiln-engine-gpu_elementwise_fusion
t norm ./bin/test-kiln-engine-gpu_norm_fusion
t attention ./bin/test-kiln-engine-gpu_attention
t nhwc ./bin/test-kiln-engine-gpu_nhwc
t tactics ./bin/test-kiln-engine-gpu_tactics
t batch ./bin/test-kiln-batch-gpu_batch
wait $EXP
tail -2 $W/export.log; tail -3 $W/sensitivity.log
KILN_ZOO_DIR=/tmp/zoo T=280 t gpu ./bin/test-kiln-engine-gpu
grep -E "zoo|rel-L2" $W/gpu.log | grep -iE "fail|worst" | head
tar -czf $OUT/r4.tgz -C /tmp r4
