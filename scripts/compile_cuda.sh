#!/usr/bin/env bash
# Compile-only check of every CUDA source under csrc/cuda (CI runs this; no GPU needed).
#
#   scripts/compile_cuda.sh            # uses `python` on PATH for the pybind11 / Python headers
#   PYTHON=.venv/bin/python CUDA_ARCH=sm_90 scripts/compile_cuda.sh
#
# Each .cu is compiled with `nvcc -c` (warnings are errors, in device code and in host code), the
# objects go to a temporary directory, and ptxas' resource usage (registers, shared memory, spills
# per kernel) is printed. Exits non-zero on any compile error or warning.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
ARCH="${CUDA_ARCH:-sm_90}"
NVCC="${NVCC:-nvcc}"

if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "compile_cuda.sh: nvcc not found" >&2
  exit 2
fi
PYBIND_INC="$("$PYTHON" -c 'import pybind11; print(pybind11.get_include())')"
PY_INC="$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
OUT="$(mktemp -d /tmp/lsn_cuda_compile.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT

shopt -s nullglob
SOURCES=("$HERE"/csrc/cuda/*.cu)
if [ ${#SOURCES[@]} -eq 0 ]; then
  echo "compile_cuda.sh: no .cu files under csrc/cuda" >&2
  exit 0
fi

"$NVCC" --version | tail -n 1
status=0
pids=()
for src in "${SOURCES[@]}"; do
  name="$(basename "$src" .cu)"
  (
    "$NVCC" -std=c++17 -O3 -arch="$ARCH" -c "$src" -o "$OUT/$name.o" \
      -Xcompiler -fPIC -Xcompiler -Wall,-Wextra,-Werror \
      -Werror all-warnings --resource-usage \
      -isystem "$PYBIND_INC" -isystem "$PY_INC" -I "$HERE/csrc/cuda" \
      >"$OUT/$name.log" 2>&1
  ) &
  pids+=("$!:$name")
done
for entry in "${pids[@]}"; do
  pid="${entry%%:*}"
  name="${entry#*:}"
  if wait "$pid"; then
    echo "== $name.cu: OK"
  else
    echo "== $name.cu: FAILED"
    status=1
  fi
  # errors and warnings verbatim; then ptxas resource usage, one line per kernel (demangled)
  grep -v '^ptxas info' "$OUT/$name.log" | grep -v '^ *[0-9]* bytes stack frame' || true
  filt=cat
  command -v c++filt >/dev/null 2>&1 && filt=c++filt
  awk '/Compiling entry function/ { match($0, /function .*. for/); k = substr($0, RSTART + 10, RLENGTH - 15) }
       /bytes stack frame/ { st = $1; sp = $5 }
       /ptxas info *: Used/ { sub(/.*Used /, ""); printf "   %-70s | stack %s B, spill stores %s B | %s\n", k, st, sp, $0 }' \
    "$OUT/$name.log" | $filt | sed -e 's/lsn_cuda::(anonymous namespace):://g' -e 's/lsn_cuda:://g'
done
echo "(dynamic shared memory of fused_kernel: 4*(36 + (32+2R)^2 + 32*(32+2R) + 1024) bytes for blur radius R:"
echo " R=0 (no blur) 0 B used, R=2 (sigma 0.6) 14032 B, R=16 (max fused) 28816 B; other kernels: none)"
exit $status
