#!/usr/bin/env bash
# Device run 2b: baselines without fusions, workspace and optimisation-level effects, build
# times with caches, A/B of the kernel variants on BERT-base.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
W=/tmp/r3; mkdir -p $W
[ -f /tmp/zoo/bert_base_legacy.onnx ] || python3 ../../fixtures/export_zoo.py /tmp/zoo --only resnet50,bert_base --exporters legacy > $W/export.log 2>&1
R=/tmp/zoo/resnet50_legacy.onnx; B=/tmp/zoo/bert_base_legacy.onnx
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "^kiln|with CUDA|build |rebuild|profiled" $W/$name.log | sed "s/^/[$name] /"; }
EB=./bin/engine_bench
t rn_all $EB $W/rn_all.json --model $R --batches 256 --iters 20 --workspace 4GiB
t rn_none $EB $W/rn_none.json --model $R --batches 256 --iters 20 --fusions none
t rn_ws0 $EB $W/rn_ws0.json --model $R --batches 256 --iters 20 --workspace 0
t rn_opt0 $EB $W/rn_opt0.json --model $R --batches 256 --iters 20 --workspace 4GiB --opt-level 0
t rn_opt5 $EB $W/rn_opt5.json --model $R --batches 256 --iters 20 --workspace 4GiB --opt-level 5 --timing-cache /tmp/tc.json --kernel-cache /tmp/kc
t bert_all $EB $W/bert_all.json --model $B --batches 1,128 --iters 20 --workspace 4GiB
t bert_none $EB $W/bert_none.json --model $B --batches 128 --iters 20 --fusions none
t rn_b1_opt0_nchw $EB $W/x1.json --model $R --batches 1 --iters 20 --opt-level 0 --fusions elementwise
t rn_b1_opt0_nhwc $EB $W/x2.json --model $R --batches 1 --iters 20 --opt-level 0
KILN_EW_FAST=0 KILN_ATTENTION_STAGE=2 t bert_oldkern $EB $W/bert_oldkern.json --model $B --batches 128 --iters 20 --workspace 4GiB
tar -czf $OUT/r3.tgz -C /tmp r3
