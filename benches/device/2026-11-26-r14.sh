#!/usr/bin/env bash
# Device run 14 (issue 10): kiln serve with ResNet-50 fp16 on the GPU under load from
# tritonclient (HTTP binary tensors and gRPC), through benches/device/serve-resnet50.sh.
# Carries target/device/bin/kiln and target/device/wheels (tritonclient[http,grpc] 2.73.0 for
# the GPU machine's Python 3.12, without numpy, which it has).
set -u
cd "$(dirname "$0")/../.."
W=/tmp/r14; mkdir -p $W
OUT_FINAL=$OUT
OUT=$W/out W=$W/work CONCURRENCY="${CONCURRENCY:-16 64 256}" REQUESTS=${REQUESTS:-8000} SECONDS_CAP=${SECONDS_CAP:-30} \
  timeout 560 bash benches/device/serve-resnet50.sh > $W/run.log 2>&1
echo "rc=$?"
tail -40 $W/run.log
rm -rf $W/work/zoo $W/work/pylib $W/work/repo
tar -czf $OUT_FINAL/r14.tgz -C /tmp r14
