#!/usr/bin/env bash
# Builds libnanochat_cuda.so from cuda/*.cu (one object per kernel family) and, with --check, the op checks.
#   cuda/build.sh [--out DIR] [--nvcc PATH] [--arch sm_90a] [--check] [--compile-only]
# --compile-only compiles every source to an object without linking (what scripts/test does on machines with no
# GPU and no CUDA libraries: it keeps the kernels from rotting). nvcc comes from PATH, /usr/local/cuda, or --nvcc.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../.build/cuda; nvcc=""; arch=sm_90a; check=0; compile_only=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift ;;
    --nvcc) nvcc=$2; shift ;;
    --arch) arch=$2; shift ;;
    --check) check=1 ;;
    --compile-only) compile_only=1 ;;
    *) echo "cuda/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $nvcc ]]; then
  nvcc=$(command -v nvcc || true)
  [[ -z $nvcc && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
fi
[[ -x $nvcc ]] || { echo "cuda/build.sh: no nvcc (put it on PATH or pass --nvcc)" >&2; exit 1; }
# the sm_90a target (wgmma, setmaxnreg) needs the -gencode form; the shorthand also runs a plain sm_90 pass
gencode="-gencode=arch=compute_${arch#sm_},code=${arch}"
flags=(-O3 -std=c++17 "$gencode" -Xcompiler -fPIC -lineinfo --expt-relaxed-constexpr)
# nvcc from PyPI (nvidia-cuda-nvcc) keeps the headers and libraries beside its bin/ and does not look there by
# itself; its libraries carry only versioned names (libcublasLt.so.13), so they are linked by file name
root=$(dirname "$(dirname "$nvcc")")
libs=(-lcublasLt -lcublas -ldl)
if [[ -f $root/include/cuda_runtime.h && $root != /usr/local/cuda* ]]; then
  flags+=(-I"$root/include")
  libs=(-L"$root/lib" -l:libcublasLt.so.13 -l:libcublas.so.13 -ldl -Xlinker -rpath="$root/lib")
fi
# nccl.h, when there (PyPI's nvidia-nccl-cu13 beside nvcc's, or the system's): nccl.cu checks its own declarations of
# NCCL's ABI against it; NCCL itself is loaded at run time, never linked
for c in "$root"/../nccl/include "$here"/../.venv-cuda/lib/python3*/site-packages/nvidia/nccl/include; do
  [[ -f $c/nccl.h ]] && { flags+=(-I"$(cd "$c" && pwd)"); break; }
done
mkdir -p "$out"
objs=()
pids=()
for src in "$here"/*.cu; do  # one nvcc per kernel family, in parallel
  name=$(basename "$src" .cu)
  [[ $name == op_check ]] && continue
  "$nvcc" "${flags[@]}" -c "$src" -o "$out/$name.o" &
  pids+=($!)
  objs+=("$out/$name.o")
done
for pid in "${pids[@]}"; do wait "$pid" || { echo "cuda/build.sh: a kernel family failed to compile (above)" >&2; exit 1; }; done
if [[ $compile_only -eq 1 ]]; then
  "$nvcc" "${flags[@]}" -c "$here/op_check.cu" -o "$out/op_check.o"
  echo "compiled ${#objs[@]} kernel families and the op checks for $arch with $("$nvcc" --version | tail -2 | head -1)"
  exit 0
fi
"$nvcc" "${flags[@]}" -shared "${objs[@]}" -o "$out/libnanochat_cuda.so" "${libs[@]}"
echo "built $out/libnanochat_cuda.so"
# cuDNN's fused attention, its own library beside this one (libnanochat_cuda.so loads it when it is there and cuDNN
# loads): the cuDNN frontend's headers ($CUDNN_FRONTEND_INCLUDE, .gpu/cudnn-frontend from scripts/gpu-stage, or PyPI's
# nvidia-cudnn-frontend in .venv-cuda) and cuDNN's (the system's, or PyPI's nvidia-cudnn-cu13 beside nvcc's venv)
fe=${CUDNN_FRONTEND_INCLUDE:-}
for c in "$here/../.gpu/cudnn-frontend" "$root"/../../include "$here"/../.venv-cuda/lib/python3*/site-packages/include; do
  [[ -z $fe && -f $c/cudnn_frontend.h ]] && fe=$(cd "$c" && pwd)
done
cudnn_flags=()
for c in "$root"/../cudnn "$here"/../.venv-cuda/lib/python3*/site-packages/nvidia/cudnn; do
  if [[ ${#cudnn_flags[@]} -eq 0 && -f $c/include/cudnn.h ]]; then
    c=$(cd "$c" && pwd); cudnn_flags=(-I"$c/include" -L"$c/lib" -l:libcudnn.so.9 -Xlinker -rpath="$c/lib")
  fi
done
[[ ${#cudnn_flags[@]} -eq 0 && -f /usr/include/cudnn.h ]] && cudnn_flags=(-lcudnn)
[[ ${#cudnn_flags[@]} -eq 0 && -f /usr/include/x86_64-linux-gnu/cudnn.h ]] && cudnn_flags=(-I/usr/include/x86_64-linux-gnu -lcudnn)
if [[ -n $fe && ${#cudnn_flags[@]} -gt 0 ]]; then
  "$nvcc" "${flags[@]}" -I"$fe" -shared "$here/cudnn/attention_cudnn.cu" -o "$out/libnanochat_cudnn.so" "${cudnn_flags[@]}"
  echo "built $out/libnanochat_cudnn.so (cuDNN attention; frontend headers from $fe)"
else
  echo "not built: libnanochat_cudnn.so (no cuDNN frontend or cuDNN headers found); attention runs the WMMA kernels"
fi
if [[ $check -eq 1 ]]; then
  "$nvcc" "${flags[@]}" "$here/op_check.cu" -o "$out/op_check" -L"$out" -lnanochat_cuda -Xlinker -rpath="$out"
  echo "built $out/op_check"
fi
