#!/usr/bin/env bash
# Device run 8: the session's last commits (default opt level 3, rows.rs split, pool argument
# refactor) through the GPU tests they touch.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
W=/tmp/r8; mkdir -p $W
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "passed|FAILED|panicked" $W/$name.log | tail -3; }
t kernels ./bin/test-kiln-engine-gpu_kernels
t nhwc ./bin/test-kiln-engine-gpu_nhwc
t norm ./bin/test-kiln-engine-gpu_norm_fusion
t tactics ./bin/test-kiln-engine-gpu_tactics
t attention ./bin/test-kiln-engine-gpu_attention
t elementwise ./bin/test-kiln-engine-gpu_elementwise_fusion
T=200 t gpu ./bin/test-kiln-engine-gpu
t concurrency ./bin/test-kiln-engine-gpu_concurrency
t batch ./bin/test-kiln-batch-gpu_batch
tar -czf $OUT/r8.tgz -C /tmp r8
