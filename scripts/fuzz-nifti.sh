#!/usr/bin/env bash
# The NIfTI reader's fuzzer: scripts/fuzz.sh nifti [seconds=1260] [workdir=build-fuzz] (kept for its old name).
exec "$(dirname "$0")/fuzz.sh" nifti "$@"
