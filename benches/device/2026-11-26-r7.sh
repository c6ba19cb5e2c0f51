#!/usr/bin/env bash
# Device run 7: the issue's targets on an H100 (PyTorch and kiln in the same call).
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
W=/tmp/r7; mkdir -p $W
python3 ../../fixtures/export_zoo.py /tmp/zoo --only resnet50,bert_base --exporters legacy > $W/export.log 2>&1
python3 ../../benches/python/torch_zoo_bench.py $W/torch.json --models resnet50,bert_base --batches 1,128,256 --iters 30 > $W/torch.log 2>&1
grep torch $W/torch.log
R=/tmp/zoo/resnet50_legacy.onnx; B=/tmp/zoo/bert_base_legacy.onnx; EB=./bin/engine_bench
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "^kiln|with CUDA|build |rebuild" $W/$name.log | sed "s/^/[$name] /"; }
t rn $EB $W/rn.json --model $R --batches 1,256 --iters 30 --opt-level 3
t rn_ws4 $EB $W/rn_ws4.json --model $R --batches 256 --iters 30 --opt-level 3 --workspace 4GiB --timing-cache $W/tc.json --kernel-cache /tmp/kc
t bert $EB $W/bert.json --model $B --batches 1,128 --iters 30 --opt-level 3 --workspace 4GiB
tar -czf $OUT/r7.tgz -C /tmp r7
