#!/usr/bin/env bash
# System set-up for dfdet on Debian/Ubuntu: libtorch (CPU), a fast BLAS, ffmpeg, build tools.
# Idempotent and unattended. Without root it prints the exact command to run instead.
#
#   bash scripts/setup-system.sh          # runtime + build dependencies (source builds, development)
#   bash scripts/setup-system.sh --runtime  # only the shared libraries a prebuilt addon needs
#   bash scripts/setup-system.sh --test   # also the Python references the tests compare against, redis-server
#   bash scripts/setup-system.sh --demo   # also Debian packages that ship real photos with faces
#   bash scripts/setup-system.sh --check  # only report what is missing (exit 1 if anything is)
set -euo pipefail

mode=install
runtime_only=0
with_test=0
with_demo=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    --demo) with_demo=1 ;;
    --check) mode=check ;;
    --runtime) runtime_only=1 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

# Run time: shared libraries only (what a prebuilt @dfdet/linux-x64-torch1.13-cpu addon links).
# libopenblas0-openmp: libtorch calls the system libblas.so.3; Debian's reference BLAS makes a
# ViT-L/14 forward ~85 s, OpenBLAS with OpenMP ~1.7 s, OpenBLAS with pthreads fights libtorch's
# OpenMP threads (~2x slower). We select the OpenMP flavour below.
runtime_pkgs=(libtorch1.13 libopenblas0-openmp ffmpeg)
# Build (source builds of the addon, development): headers, CMake config, compiler.
build_pkgs=(build-essential cmake libtorch-dev ca-certificates)
pkgs=("${runtime_pkgs[@]}")
[ "$runtime_only" = 1 ] || pkgs+=("${build_pkgs[@]}")
# Independent references used by the test-suite (PyTorch, PIL, scikit-learn, ONNX via OpenCV),
# real photos with faces shipped by Debian, and redis-server (the queue tests start their own on a
# free loopback port; Debian 12 has 7.0, BullMQ needs >= 5).
test_pkgs=(python3-torch python3-numpy python3-pil python3-sklearn python3-onnx python3-opencv
  python3-imageio python-matplotlib-data redis-server)
[ "$with_test" = 1 ] && pkgs+=("${test_pkgs[@]}")
[ "$with_demo" = 1 ] && pkgs+=(python3-imageio python-matplotlib-data)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
# The multiarch folder without gcc (a run-time-only machine has no compiler).
case "$arch" in
  amd64) triplet=x86_64-linux-gnu ;;
  arm64) triplet=aarch64-linux-gnu ;;
  *) triplet=$(gcc -dumpmachine 2>/dev/null || echo "$arch-linux-gnu") ;;
esac
omp_dir=/usr/lib/$triplet/openblas-openmp
blas_ok=1
# libtorch also links libopenblas.so.0 directly: all three must be the OpenMP build, or two
# OpenBLAS copies (one with its own pthread pool) end up in the process.
blas_libs=(libblas.so.3 liblapack.so.3 libopenblas.so.0)
for lib in "${blas_libs[@]}"; do
  [ -e "/usr/lib/$triplet/$lib" ] || continue  # not installed yet, or not an alternative here
  cur=$(readlink -f "/usr/lib/$triplet/$lib" 2>/dev/null || true)
  case "$cur" in "$omp_dir"/*) ;; *) blas_ok=0 ;; esac
done

if [ "$mode" = check ]; then
  [ ${#missing[@]} -eq 0 ] && [ "$blas_ok" = 1 ] && { echo "system dependencies: ok"; exit 0; }
  [ ${#missing[@]} -gt 0 ] && echo "missing packages: ${missing[*]}"
  [ "$blas_ok" = 0 ] && echo "libblas.so.3/liblapack.so.3/libopenblas.so.0 do not all point to OpenBLAS (OpenMP flavour)"
  exit 1
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if [ ${#missing[@]} -eq 0 ] && [ "$blas_ok" = 1 ]; then echo "system dependencies: ok"; exit 0; fi
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "dfdet needs system packages; run this as root (or with sudo):" >&2
    [ ${#missing[@]} -gt 0 ] && echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    for lib in "${blas_libs[@]}"; do echo "  update-alternatives --set $lib-$triplet $omp_dir/$lib" >&2; done
    exit 1
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Only refresh the lists when a package is missing, and retry once on a stale mirror.
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; }
fi

for lib in "${blas_libs[@]}"; do
  update-alternatives --list "$lib-$triplet" >/dev/null 2>&1 || continue
  $SUDO update-alternatives --set "$lib-$triplet" "$omp_dir/$lib" >/dev/null
done
echo "system dependencies: ok ($arch; BLAS -> $(readlink -f /usr/lib/$triplet/libblas.so.3))"
