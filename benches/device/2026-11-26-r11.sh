#!/usr/bin/env bash
# Device run 11 (issues 8 and 9): kiln-batch on two GPUs, then every `kiln` command, `xtask
# build-engines` and the criterion `engines` bench on the fixtures and ResNet-50. Expects the
# binaries in target/device/bin (kiln, xtask, criterion-engines, test-kiln-batch-gpu_batch),
# release builds from this checkout.
set -u
cd "$(dirname "$0")/../.."
B=$PWD/target/device/bin; K=$B/kiln
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/fixtures
nvidia-smi -L
W=/tmp/r11; mkdir -p $W
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-120} "$@" > $W/$name.log 2>&1; local rc=$?; echo "rc=$rc $name"; tail -${N:-4} $W/$name.log; }
(python3 fixtures/export_zoo.py /tmp/zoo --only resnet50 --exporters legacy > $W/zoo.log 2>&1; echo "zoo rc=$?" >> $W/zoo.log) &
ZOO=$!
N=6 t batch $B/test-kiln-batch-gpu_batch
for f in cnn_legacy transformer_dynamo; do
  N=6 t build_$f $K build fixtures/$f.onnx -o /tmp/$f.kiln --fp16 --report $W/build_$f.json
  N=30 t inspect_$f $K inspect /tmp/$f.kiln
  N=12 t compare_$f $K compare fixtures/$f.onnx --fp16 --export-json $W/compare_$f.json
  N=6 t run_$f $K run /tmp/$f.kiln -o $W/run_$f
  N=40 t bench_$f $K bench fixtures/$f.onnx --fp16 --batch 8 --duration 1s --cuda-graph --dump-profile --export-json $W/bench_$f.json --plot $W/bench_$f.png
done
N=12 t engines1 env KILN_WORKSPACE_ROOT=$PWD $B/xtask build-engines --kiln $K --precisions fp32,fp16 --out $W/engines
N=12 t engines2 env KILN_WORKSPACE_ROOT=$PWD $B/xtask build-engines --kiln $K --precisions fp32,fp16 --out $W/engines
cp $W/engines/manifest.json $W/engines_manifest.json; rm -f $W/engines/*.kiln
T=150 N=30 t criterion $B/criterion-engines --bench cnn_legacy --warm-up-time 0.5 --measurement-time 1
wait $ZOO; tail -1 $W/zoo.log
M=/tmp/zoo/resnet50_legacy.onnx
N=45 t bench_r50_b64 $K bench $M --fp16 --batch 64 --workspace 4GiB --cuda-graph --dump-profile --export-json $W/bench_r50_b64.json --plot $W/bench_r50_b64.png
N=30 t bench_r50_b64_streams2 $K bench $M --fp16 --batch 64 --workspace 4GiB --cuda-graph --streams 2 --export-json $W/bench_r50_b64_s2.json
N=30 t bench_r50_b1 $K bench $M --fp16 --batch 1 --cuda-graph --no-transfers --export-json $W/bench_r50_b1.json
N=30 t bench_r50_b1_nograph $K bench $M --fp16 --batch 1 --no-transfers --export-json $W/bench_r50_b1_nog.json
T=200 N=14 t compare_r50 $K compare $M --fp16 --export-json $W/compare_r50.json
rm -rf $W/run_*/*.npy
tar -czf $OUT/r11.tgz -C /tmp r11
