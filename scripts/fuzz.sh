#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan + UBSan) and runs it.
#   scripts/fuzz.sh nifti|model|clicks [seconds=1260] [workdir=build-fuzz]
#   nifti   the NIfTI reader (fuzz/fuzz_nifti.cpp; seeds fuzz/seeds + fuzz/regressions)
#   model   the model-file readers: safetensors, torch.save zips, metadata, weights into the network
#           (fuzz/fuzz_model.cpp; seeds: the small files of tests/data/modelfile + fuzz/regressions-model)
#   clicks  click files: JSON, validation, mapping to the grid (fuzz/fuzz_clicks.cpp; seeds fuzz/seeds-clicks +
#           fuzz/regressions-clicks)
# Findings land in <workdir>/findings-<target>/; copy each into the target's regressions folder: the unit tests read
# every file there and expect success or a clean dex::InputError (tests/data/test_nifti_io.cpp,
# tests/data/test_fuzz_regressions.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${1:?usage: scripts/fuzz.sh nifti|model|clicks [seconds] [workdir]}
SECS=${2:-1260}
WORK=${3:-build-fuzz}
CXX=${CXX:-clang++-14}
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
DEFS=(-DDEX_VERSION=\"fuzz\" "-DDEX_SOURCE_DIR=\"$(pwd)\"")
INC="-I. -I/usr/include/nifti"
for d in /usr/include/x86_64-linux-gnu/openblas*; do [ -d "$d" ] && { INC="$INC -I$d"; break; }; done
mkdir -p "$WORK/corpus-$TARGET" "$WORK/findings-$TARGET"
case "$TARGET" in
  nifti)
    SRCS="data/nifti_io.cpp data/volume.cpp kernels/common.cpp"
    LIBS="-lnifti2 -lznz -lz -lm"
    $CXX -std=c++17 -O1 -g $INC $SRCS fuzz/make_seeds.cpp -o "$WORK/make_seeds" $LIBS
    "$WORK/make_seeds" fuzz/seeds
    SEEDS="fuzz/seeds fuzz/regressions"
    MAXLEN=4096 ;;
  model)
    # The model loader reaches the whole CPU library (the network it loads into): compile it instrumented once.
    SRCS=$(ls kernels/*.cpp kernels/cpu/*.cpp autograd/*.cpp autograd/ops/*.cpp layers/*.cpp data/*.cpp)
    LIBS="-lopenblas -lnifti2 -lznz -lpng -lz -lm -fopenmp -lpthread"
    [ -e /usr/lib/x86_64-linux-gnu/libdeflate.so ] && { LIBS="$LIBS -ldeflate"; DEFS+=(-DDEX_HAVE_LIBDEFLATE=1); }
    mkdir -p "$WORK/seeds-model" fuzz/regressions-model
    for f in handmade.safetensors legacy.pt strided.pt torchscript.pt module.pt dynunet_shallow.pt; do
      cp "tests/data/modelfile/$f" "$WORK/seeds-model/"
    done
    SEEDS="$WORK/seeds-model fuzz/regressions-model"
    MAXLEN=65536 ;;
  clicks)
    SRCS="data/clicks.cpp data/orientation.cpp data/volume.cpp kernels/common.cpp"
    LIBS="-lm"
    mkdir -p fuzz/regressions-clicks
    SEEDS="fuzz/seeds-clicks fuzz/regressions-clicks"
    MAXLEN=2048 ;;
  *) echo "scripts/fuzz.sh: unknown target '$TARGET' (nifti, model or clicks)" >&2; exit 2 ;;
esac
OBJ="$WORK/obj-$TARGET"
mkdir -p "$OBJ"
# Compile the sources in parallel, nproc at a time (objects are reused when the source is older).
# Every compile's status is collected (wait PID), so a failed one stops the script before the link; -MMD depfiles
# make a changed header rebuild the objects that include it.
objs=(); pids=()
stale() {  # stale <src> <obj>: the object is missing, or older than its source or any header it included
  [ ! -e "$2" ] || [ "$1" -nt "$2" ] && return 0
  [ -e "${2%.o}.d" ] || return 0
  for h in $(sed -e 's/^[^:]*://' -e 's/\\$//' "${2%.o}.d"); do [ "$h" -nt "$2" ] && return 0; done
  return 1
}
for s in $SRCS; do
  o="$OBJ/$(echo "$s" | tr / _).o"
  objs+=("$o")
  if stale "$s" "$o"; then
    if [ "${#pids[@]}" -ge "$(nproc)" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
    $CXX -std=c++17 -O1 -g -fopenmp $SAN "${DEFS[@]}" $INC -MMD -c "$s" -o "$o" &
    pids+=($!)
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
$CXX -std=c++17 -O1 -g -fopenmp -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined "${DEFS[@]}" $INC \
  "${objs[@]}" "fuzz/fuzz_$TARGET.cpp" -o "$WORK/fuzz_$TARGET" $LIBS
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
ROOT=$(pwd)
cd "$WORK"   # -jobs writes fuzz-<n>.log into the current folder
# -rss_limit_mb / -malloc_limit_mb: a header must never make a reader allocate absurd amounts.
seed_args=(); for d in $SEEDS; do case "$d" in /*) seed_args+=("$d");; *) seed_args+=("$ROOT/$d");; esac; done
nice -n 10 "./fuzz_$TARGET" -jobs=1 -workers=1 -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 \
  -malloc_limit_mb=1024 -max_len="$MAXLEN" -artifact_prefix="findings-$TARGET/" -print_final_stats=1 \
  "corpus-$TARGET" "${seed_args[@]}"
