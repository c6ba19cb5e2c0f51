#!/usr/bin/env bash
# Device run 15 (issue 10): kiln serve's plan cache on a GPU. The server is started twice on a
# ResNet-50 fp16 repository: the first start builds the engine and writes
# <version>/.kiln-cache/, the second must load it. Time to the listening line, each.
set -u
cd "$(dirname "$0")/../.."
K=$PWD/target/device/bin/kiln
export LD_LIBRARY_PATH=/usr/local/cuda/lib64
W=/tmp/r15; mkdir -p $W
python3 fixtures/export_zoo.py /tmp/zoo --only resnet50 --exporters legacy > $W/zoo.log 2>&1 || { echo "export failed"; tail $W/zoo.log; }
REPO=/tmp/repo; rm -rf $REPO; mkdir -p $REPO/resnet50/1
cp /tmp/zoo/resnet50_legacy.onnx $REPO/resnet50/1/model.onnx
echo '{"backend": "kiln", "precision": "fp16", "max_batch": 64, "batching": {"instances_per_gpu": 2}}' > $REPO/resnet50/config.json
for i in 1 2; do
  t0=$(date +%s.%N)
  $K -v serve --model-repository $REPO --http-port 0 --grpc-port 0 --metrics-port 0 > $W/serve$i.log 2>&1 &
  S=$!
  for _ in $(seq 1 600); do grep -q "kiln-serve listening" $W/serve$i.log && break; sleep 0.1; done
  t1=$(date +%s.%N)
  echo "start $i: listening after $(python3 -c "print(round($t1-$t0,2))") s"
  grep -iE "cache|plan|built|build|load" $W/serve$i.log | head -6
  kill -INT $S; wait $S; echo "exit $?"
done
ls -la $REPO/resnet50/1/.kiln-cache/
tar -czf $OUT/r15.tgz -C /tmp r15
