// The NCCL communicator's factory (train/communicator_nccl.cpp; built only with CUDA + NCCL + MPI, DEX_HAVE_NCCL).
// Internal to dex_comm: make_communicator("nccl" | "auto") is the public entry point.
#pragma once
#include <memory>

#include "train/communicator.h"

namespace dex {

// MPI_Init (unless initialised), cudaSetDevice(local rank % device count), ncclCommInitRank over MPI_COMM_WORLD.
// Errors: no CUDA device; more ranks on this node than CUDA devices (NCCL needs one device per rank).
std::unique_ptr<Communicator> make_nccl_communicator(int* argc, char*** argv);

}  // namespace dex
