#!/usr/bin/env bash
# Builds libnanochat_mpi.so (the MPI calls nanochat makes) with the system's mpicc into .build/mpi/, where
# `nanochat` finds it when started by mpirun. Needs Open MPI's development files: scripts/bootstrap --with-mpi.
# Usage: mpi/build.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build/mpi}
command -v mpicc >/dev/null || { echo "mpi/build.sh: no mpicc; install Open MPI first: scripts/bootstrap --with-mpi" >&2; exit 1; }
mkdir -p "$out"
lib="$out/libnanochat_mpi.so"
# rebuild only when the source is newer
if [[ ! -f "$lib" || mpi/nanochat_mpi.c -nt "$lib" ]]; then
  mpicc -O2 -Wall -Werror -shared -fPIC -o "$lib.tmp" mpi/nanochat_mpi.c -lpthread
  mv "$lib.tmp" "$lib"
fi
echo "$lib"
