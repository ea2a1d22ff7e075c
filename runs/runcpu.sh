#!/usr/bin/env bash
# The main job, end to end on this machine's offline data (upstream's runs/runcpu.sh, CPU-sized).
# It grows as capabilities land: today it sets up, trains the tokenizer and reports its compression.
#   ./runs/runcpu.sh            (NANOCHAT_BASE_DIR=/some/dir ./runs/runcpu.sh to keep artifacts elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

export NANOCHAT_BASE_DIR=${NANOCHAT_BASE_DIR:-$HOME/.cache/nanochat}
mkdir -p "$NANOCHAT_BASE_DIR"
echo "== setup: system packages and offline text (Debian), release build"
scripts/bootstrap --with-data
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]'
nanochat=.build/release/nanochat

# Interim corpus until `nanochat dataset prepare` lands: Python's and Linux's documentation from Debian,
# one document per file. (Upstream trains on the first ~2B characters of its pretraining shards.)
echo "== tokenizer: train a 32768-token BPE"
$nanochat tok-train --vocab-size 32768 --doc-cap 100000 \
  --input /usr/share/doc/python3.11/html/_sources \
  --input /usr/share/doc/linux-doc-6.1/html/_sources
echo "== tokenizer: compression report"
$nanochat tok-eval
echo
echo "Tokenizer in $NANOCHAT_BASE_DIR/tokenizer. Try it:"
echo "  echo '\"Hello world!\"' | $nanochat tok-encode"
