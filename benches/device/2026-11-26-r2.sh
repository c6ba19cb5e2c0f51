#!/usr/bin/env bash
# Device run 2a: GPU tests of the second round, PyTorch baselines, ResNet-50 layout crossover.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
mkdir -p $OUT
[ -f /tmp/zoo/bert_base_legacy.onnx ] || python3 ../../fixtures/export_zoo.py /tmp/zoo --only resnet50,bert_base --exporters legacy > $OUT/export.log 2>&1 &
EXP=$!
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $OUT/$name.log 2>&1; echo "rc=$? $name"; grep -E "passed|failed|FAIL|rror|ms per layer|us .*GB/s|ms, .*GB/s|differ|vs " $OUT/$name.log | tail -${N:-4}; }
N=9 t attention ./bin/test-kiln-engine-gpu_attention
N=6 t elementwise ./bin/test-kiln-engine-gpu_elementwise_fusion
N=6 t nhwc ./bin/test-kiln-engine-gpu_nhwc
t norm ./bin/test-kiln-engine-gpu_norm_fusion
t kernels ./bin/test-kiln-engine-gpu_kernels
T=200 t gpu ./bin/test-kiln-engine-gpu
wait $EXP
python3 ../../benches/python/torch_zoo_bench.py $OUT/torch.json --models resnet50,bert_base --batches 1,8,128,256 --iters 30 > $OUT/torch.log 2>&1
grep torch $OUT/torch.log
R=/tmp/zoo/resnet50_legacy.onnx
s() { grep -E "^kiln|with CUDA|build " $OUT/$1.log | sed "s/^/[$1] /"; }
t rn_small_nhwc ./bin/engine_bench $OUT/rn_small_nhwc.json --model $R --batches 1,8,32 --iters 20; s rn_small_nhwc
t rn_small_nchw ./bin/engine_bench $OUT/rn_small_nchw.json --model $R --batches 1,8,32 --iters 20 --fusions elementwise; s rn_small_nchw
