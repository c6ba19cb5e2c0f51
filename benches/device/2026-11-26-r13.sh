#!/usr/bin/env bash
# Device run 13 (issues 8 and 9): kiln-batch's GPU tests with SLO mode, then the criterion
# `engines` bench (with the CUDA-graph group) on the zoo's ResNet-50 and BERT-base, fp16.
# Binaries in target/device/bin (test-kiln-batch-gpu_batch, criterion-engines, kiln).
set -u
cd "$(dirname "$0")/../.."
B=$PWD/target/device/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_GPU_REQUIRED=1 KILN_FIXTURES_DIR=$PWD/fixtures
nvidia-smi -L
W=/tmp/r13; mkdir -p $W
(python3 fixtures/export_zoo.py /tmp/zoo --only resnet50,bert_base --exporters legacy > $W/zoo.log 2>&1; echo "zoo rc=$?" >> $W/zoo.log) &
ZOO=$!
echo "==> gpu_batch"; timeout 150 $B/test-kiln-batch-gpu_batch > $W/batch.log 2>&1; echo "rc=$?"; grep -E "ok|FAILED|skipped|SLO plan|passed" $W/batch.log
wait $ZOO; tail -1 $W/zoo.log
echo "==> criterion"
KILN_ZOO_DIR=/tmp/zoo KILN_BENCH_PRECISIONS=fp16 KILN_BENCH_BATCHES=1,32 timeout 300 $B/criterion-engines --bench "resnet50|bert_base" --warm-up-time 0.5 --measurement-time 1.5 > $W/criterion.log 2>&1; echo "rc=$?"
grep -E "^(resnet50|bert_base)|time:|thrpt:" $W/criterion.log | grep -v Benchmarking | head -60
tar -czf $OUT/r13.tgz -C /tmp r13
