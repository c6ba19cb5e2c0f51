#!/usr/bin/env bash
# Device run 10 (issue 8): kiln-batch with the staging copy of large batches shared by several
# threads (Builder::staging_threads). ResNet-50 fp16 under load, staging threads 4 against 1 in
# the same call, 2/4/8 instances. Binaries (release, stripped) in target/r10bin:
# test-kiln-batch-gpu_batch, batch_bench.
set -u
cd "$(dirname "$0")/../.."
B=$PWD/target/r10bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/fixtures
nvidia-smi -L; nproc
W=/tmp/r10; mkdir -p $W
t() { local name=$1; shift; echo "==> $name"; timeout ${T:-150} "$@" > $W/$name.log 2>&1; echo "rc=$? $name"; grep -E "passed|FAILED|panicked|error" $W/$name.log | tail -4; }
(python3 fixtures/export_zoo.py /tmp/zoo --only resnet50 --exporters legacy > $W/zoo.log 2>&1; echo "zoo rc=$?" >> $W/zoo.log) &
ZOO=$!
t batch $B/test-kiln-batch-gpu_batch
wait $ZOO; tail -1 $W/zoo.log
M=/tmp/zoo/resnet50_legacy.onnx
BB="$B/batch_bench --model $M --precision fp16 --max-batch 64 --workspace-mib 4096 --seconds 3"
for cfg in "g4_s4 --instances 4 --staging-threads 4" "g4_s1 --instances 4 --staging-threads 1" "g2_s4 --instances 2 --staging-threads 4" "g8_s2 --instances 8 --staging-threads 2"; do
  set -- $cfg; name=$1; shift
  T=120 t batch_$name $BB $W/batch_$name.json "$@"
  grep -E "capacity|offered|executor build" $W/batch_$name.log
done
tar -czf $OUT/r10.tgz -C /tmp r10
