# Sourced by tools/gpu_emulation_check.sh and tools/gpu_stages_check.sh (after `cd` to the repository and with
# $check set to the script's name): a scratch folder, the ok/bad counters, and the CUDA library every command there
# loads: the host stand-in (cuda/host_emulation.c, compiled here) or, with LIBRARY=path, the real one on a GPU
# (scripts/gpu-check).
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
passed=0; failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAILED: $1"; failed=$((failed + 1)); }
if [[ -n ${LIBRARY:-} ]]; then
  cp "$LIBRARY" "$work/libnanochat_cuda.so"
elif ! cc -O2 -shared -fPIC -Icuda cuda/host_emulation.c -o "$work/libnanochat_cuda.so" -lm; then
  echo "$check: 0 passed, 1 failed (cuda/host_emulation.c does not compile)"; exit 1
fi
export NANOCHAT_CUDA_LIB=$work/libnanochat_cuda.so NANOCHAT_BASE_DIR=$work/base
