#!/usr/bin/env bash
# Here, not on the GPU machine: what the CUDA latency regimes of issue 18 need there and its image lacks
# (ONNX Runtime's CUDA build, the ofa package), packed into .gpu-wheels/ in parts that each fit one call of
# the device tool beside the working tree (64 MiB per call). See bench/device/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.gpu-wheels
ort=onnxruntime-gpu==1.31.1  # built for CUDA 13 and cuDNN 9 (cu13): the libraries the GPU image's torch ships
mkdir -p "$out/download"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  -d "$out/download" "$ort" ofa==0.1.0.post202307202001
rm -rf "$out/site" "$out"/part-* && mkdir -p "$out/site"
(cd "$out/site" && unzip -q ../download/onnxruntime_gpu-*.whl)  # a wheel unpacked is its installed layout
tar -C "$out/site" -cf - . | xz -T2 -9 > "$out/ort.tar.xz"  # 244 MiB as a wheel, ~194 MiB as xz
rm -rf "$out/site"
split -b "${PART_SIZE:-49M}" -d "$out/ort.tar.xz" "$out/part-"  # + the working tree (~14 MiB) <= 64 MiB
sha256sum "$out/ort.tar.xz" | sed 's| .*|  ort.tar.xz|' > "$out/SHA256"
cp "$out"/download/ofa-*.whl "$out/"
rm "$out/ort.tar.xz"
ls -la "$out"
