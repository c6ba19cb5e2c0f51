#!/usr/bin/env bash
# Device run 12 (issue 9): `xtask build-engines` twice (the second must reuse every engine),
# then compare.sh (kiln against PyTorch eager / CUDA graph / torch.compile; written by
# `cargo xtask compare --models resnet50,bert_base --batches 1,128 --precisions fp16`).
set -u
cd "$(dirname "$0")/../.."
B=$PWD/target/device/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64 KILN_ZOO_DIR=/tmp/zoo
nvidia-smi -L
W=/tmp/r12; mkdir -p $W
for i in 1 2; do
  echo "==> build-engines $i"
  ( time KILN_WORKSPACE_ROOT=$PWD timeout 200 $B/xtask build-engines --kiln $B/kiln --precisions fp32,fp16 --out $W/engines ) > $W/engines$i.log 2>&1
  echo "rc=$?"; tail -6 $W/engines$i.log
done
cp $W/engines/manifest.json $W/engines_manifest.json; rm -f $W/engines/*.kiln
echo "==> compare"
OUT=$W timeout 420 bash target/device/compare.sh > $W/compare.log 2>&1; echo "rc=$?"
tail -25 $W/compare.log
tar -czf $OUT/r12.tgz -C /tmp r12
