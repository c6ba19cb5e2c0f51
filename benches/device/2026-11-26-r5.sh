#!/usr/bin/env bash
# Device run 5: final numbers. PyTorch eager (+ CUDA graph) and kiln in the same call, the
# workspace effect, the timed-tactic diagnosis at b1, kiln-batch under load.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_FIXTURES_DIR=$PWD/../../fixtures
nvidia-smi -L
W=/tmp/r5; mkdir -p $W
[ -f /tmp/zoo/bert_base_legacy.onnx ] || python3 ../../fixtures/export_zoo.py /tmp/zoo --only resnet50,bert_base --exporters legacy > $W/export.log 2>&1
python3 ../../benches/python/torch_zoo_bench.py $W/torch.json --models resnet50,bert_base --batches 1,128,256 --iters 30 > $W/torch.log 2>&1
grep torch $W/torch.log
R=/tmp/zoo/resnet50_legacy.onnx; B=/tmp/zoo/bert_base_legacy.onnx
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "^kiln|with CUDA|build |rebuild|profiled|capacity|offered" $W/$name.log | sed "s/^/[$name] /"; }
EB=./bin/engine_bench
t rn $EB $W/rn.json --model $R --batches 1,256 --iters 30
t rn_ws4 $EB $W/rn_ws4.json --model $R --batches 256 --iters 30 --workspace 4GiB
t rn_ws0 $EB $W/rn_ws0.json --model $R --batches 256 --iters 10 --workspace 0
t bert $EB $W/bert.json --model $B --batches 1,128 --iters 30
t bert_opt3 $EB $W/bert_opt3.json --model $B --batches 128 --iters 30 --opt-level 3
t rn_b1_opt3 $EB $W/rn_b1_opt3.json --model $R --batches 1 --iters 30 --opt-level 3 --timing-cache $W/tc_b1.json
T=200 t batch ./bin/batch_bench $W/batch.json --model $R --precision fp16 --max-batch 64 --instances 2 --seconds 2.5
tar -czf $OUT/r5.tgz -C /tmp r5
