#!/usr/bin/env bash
# kiln serve under load on a GPU machine: ResNet-50 fp16 (backend kiln, max_batch 64) behind the
# Open Inference Protocol, driven over HTTP (binary tensors) and gRPC by
# crates/kiln-serve/python/load_bench.py with the official tritonclient package; requests/s and
# p50/p99 latency per concurrency level go to $OUT (issue 10's benchmark).
#
# Needs: the device bundle's kiln binary (target/device/bin/kiln, or KILN=path), python3 with
# torch + torchvision + onnx + onnxscript (to export ResNet-50 with fixtures/export_zoo.py), and
# tritonclient[http,grpc]: either installed, or wheels carried in target/device/wheels (the GPU
# machine has no PyPI; numpy is not needed among them; make them here with
#   pip download -d target/device/wheels --only-binary=:all: --python-version 3.X \
#       --platform manylinux2014_x86_64 'tritonclient[http,grpc]==2.73.0'
# where 3.X is the GPU machine's python3). A missing GPU or client is an error, never a skip.
#
# Knobs: CONCURRENCY="16 64 256", REQUESTS=20000 (per protocol and level), SECONDS_CAP=60,
# PROCESSES (client processes; default nproc/2, at most 16), INSTANCES=4.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/serve-resnet50-out}; mkdir -p "$OUT"
KILN=${KILN:-$ROOT/target/device/bin/kiln}
W=${W:-/tmp/serve-r50}; mkdir -p "$W"
CONCURRENCY=${CONCURRENCY:-"16 64 256"}
REQUESTS=${REQUESTS:-20000}
SECONDS_CAP=${SECONDS_CAP:-60}
INSTANCES=${INSTANCES:-4}
NP=$(nproc); PROCESSES=${PROCESSES:-$(( NP / 2 > 16 ? 16 : (NP / 2 < 1 ? 1 : NP / 2) ))}
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64"

# GET a URL to stdout (python, so that curl need not exist); fails on any non-2xx status.
get() { "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$1" 2>/dev/null; }
die() { echo "serve-resnet50: $*" | tee -a "$OUT/error.txt" >&2; exit 1; }

{ nvidia-smi -L || echo "nvidia-smi: not available"; echo "nproc $NP"; python3 --version; } | tee "$OUT/machine.txt"
[ -x "$KILN" ] || die "$KILN is missing: run cargo xtask device-bundle and carry target/device (or set KILN)"
nvidia-smi -L >/dev/null 2>&1 || die "no GPU (nvidia-smi -L failed): this benchmark needs one"

# tritonclient: installed, or from carried wheels. They go into a --target folder on
# PYTHONPATH, without dependency resolution: a venv would not see the GPU machine's own
# packages (its python3 is itself an environment), and numpy is not carried.
PY=python3
if ! $PY -c "import tritonclient.http, tritonclient.grpc" 2>/dev/null; then
  WHEELS=${WHEELS:-$ROOT/target/device/wheels}
  [ -d "$WHEELS" ] || die "tritonclient is not installed and $WHEELS does not exist (see the header of this script)"
  rm -rf "$W/pylib"
  $PY -m pip install --quiet --no-index --no-deps --target "$W/pylib" "$WHEELS"/*.whl \
    || die "installing the wheels of $WHEELS failed"
  export PYTHONPATH="$W/pylib${PYTHONPATH:+:$PYTHONPATH}"
  $PY -c "import tritonclient.http, tritonclient.grpc" || die "tritonclient does not import from the carried wheels"
fi

# ResNet-50 (torchvision, random weights, BatchNorm folded), input `input` [batch,3,224,224].
M=$W/zoo/resnet50_legacy.onnx
if [ ! -f "$M" ]; then
  python3 fixtures/export_zoo.py "$W/zoo" --only resnet50 --exporters legacy > "$OUT/export.log" 2>&1 \
    || die "export_zoo.py failed (log: $OUT/export.log)"
fi
REPO=$W/repo; rm -rf "$REPO"; mkdir -p "$REPO/resnet50/1"
cp "$M" "$REPO/resnet50/1/model.onnx"
cat > "$REPO/resnet50/config.json" <<JSON
{
  "backend": "kiln",
  "precision": "fp16",
  "max_batch": 64,
  "batching": {
    "max_queue_delay_us": 500,
    "preferred_batch_sizes": [32, 64],
    "instances_per_gpu": $INSTANCES,
    "queue_capacity": 8192
  }
}
JSON
cp "$REPO/resnet50/config.json" "$OUT/config.json"

# Start the server on free ports; the engine is built on load (can take minutes).
"$KILN" serve --model-repository "$REPO" --http-port 0 --grpc-port 0 --metrics-port 0 > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
LINE=""
for _ in $(seq 1 1200); do
  LINE=$(grep -m1 "kiln-serve listening:" "$OUT/server.log" || true)
  [ -n "$LINE" ] && break
  kill -0 $SERVER 2>/dev/null || die "kiln serve exited before listening (log: $OUT/server.log): $(tail -5 "$OUT/server.log")"
  sleep 0.5
done
[ -n "$LINE" ] || die "kiln serve did not print its listening line within 600 s"
port() { echo "$LINE" | tr ' ' '\n' | grep "^$1=" | sed 's/.*[:=]//'; }
HTTP=127.0.0.1:$(port http); GRPC=127.0.0.1:$(port grpc); METRICS=127.0.0.1:$(port metrics)
echo "server: $LINE"
for _ in $(seq 1 1200); do
  get "http://$HTTP/v2/models/resnet50/ready" >/dev/null && break
  sleep 0.5
done
get "http://$HTTP/v2/models/resnet50/ready" >/dev/null || die "resnet50 never became ready"

rc=0
for C in $CONCURRENCY; do
  echo "==> concurrency $C"
  timeout $(( SECONDS_CAP * 2 + 600 )) "$PY" crates/kiln-serve/python/load_bench.py \
      --http "$HTTP" --grpc "$GRPC" --model resnet50 --shape input:1x3x224x224 \
      --concurrency "$C" --processes "$PROCESSES" --requests "$REQUESTS" --seconds "$SECONDS_CAP" \
      --warmup $(( C * 4 )) --protocols http,grpc --out "$OUT/resnet50_c$C.json" > "$OUT/resnet50_c$C.stdout" 2> "$OUT/resnet50_c$C.log"
  r=$?; cat "$OUT/resnet50_c$C.log"; [ $r -eq 0 ] || { echo "load_bench rc=$r"; rc=1; }
done
get "http://$HTTP/v2/models/resnet50/stats" > "$OUT/stats.json" || echo "stats endpoint failed"
get "http://$METRICS/metrics" > "$OUT/metrics.txt" || echo "metrics endpoint failed"

kill -INT $SERVER; wait $SERVER; src=$?; trap - EXIT
echo "kiln serve exit status after SIGINT: $src" | tee -a "$OUT/machine.txt"
[ $src -eq 0 ] || rc=1
exit $rc
