# Sourced by scripts/gpu-check.sh and scripts/gpu-diag.sh (the lent GPU machine): gpu_init <tag> <log file name>
# <default budget s> sets OUT (default /tmp/dex-<tag>), CARRY (default build-gpu-carry, unpacked from
# build-gpu-pack/carry.tgz when missing), LOG, the time budget (BUDGET seconds from now) and LD_LIBRARY_PATH (carried
# libraries first, then the toolkit, then PyTorch's cuDNN / cuBLAS / NCCL wheels, which the binaries load).
# Functions: say <text> (timestamped, also into LOG); cap <s> (that timeout, or what the budget has left; 0 under
# 15 s); stage <s> <name> (sets T = cap <s> and says so; returns 1, saying "skipped", when the budget is spent).
gpu_init() {
  TAG=$1
  OUT=${OUT:-/tmp/dex-$1}
  CARRY=${CARRY:-build-gpu-carry}
  mkdir -p "$OUT"
  LOG="$OUT/$2"
  : > "$LOG"
  DEADLINE=$(( SECONDS + ${BUDGET:-$3} ))
  if [ ! -d "$CARRY" ] && [ -f build-gpu-pack/carry.tgz ]; then
    tar -xzf build-gpu-pack/carry.tgz && say "unpacked build-gpu-pack/carry.tgz into $CARRY"
  fi
  local libs="$PWD/$CARRY/lib" d pat f
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [ -d "$d" ] && libs="$libs:$d"; done
  for pat in 'libcudnn.so.9' 'libcublas.so.13' 'libnccl.so.2'; do
    f=$(find /opt/torch/.venv /usr/local/lib/python3* /usr/lib/python3 -name "$pat*" 2>/dev/null | head -1)
    [ -n "$f" ] && libs="$libs:$(dirname "$f")"
  done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PATH="$PATH:/usr/local/cuda/bin"
}
say() { echo "[$TAG $(date +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG"; }
cap() {
  local left=$(( DEADLINE - SECONDS ))
  if [ "$left" -lt 15 ]; then echo 0; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}
stage() { T=$(cap "$1"); if [ "$T" = 0 ]; then say "$2: skipped (budget spent)"; return 1; fi; say "$2 (timeout $T s)"; }
# limit <s>: a timeout for `timeout` (cap, but at least 1 s: `timeout 0` would mean no limit at all).
limit() { local c; c=$(cap "$1"); echo $(( c > 0 ? c : 1 )); }
