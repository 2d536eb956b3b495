// The MPI communicator (OpenMPI on CPU ranks) and what the NCCL one borrows from it (bootstrap, host buffers, the
// node-local rank). Internal to dex_comm, the one target compiled with MPI: include only from communicator*.cpp.
#pragma once
// The C API only (OpenMPI's and MPICH's C++ bindings are deprecated and warn under -Wextra).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdint>
#include <map>
#include <vector>

#include "train/communicator.h"

namespace dex {

// Throws dex::Error naming `what` and MPI's message when rc is not MPI_SUCCESS.
void mpi_check(int rc, const char* what);

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int* argc, char*** argv);
  ~MpiCommunicator() override;
  int rank() const override { return m_rank; }
  int size() const override { return m_size; }
  void allreduce_sum(float* data, int64_t n) override;
  void allreduce_sum(double* data, int64_t n) override;
  // MPI_Iallreduce (in chunks of at most INT_MAX elements); wait() is MPI_Waitall on its chunks.
  Request allreduce_sum_async(float* data, int64_t n) override;
  void wait(Request request) override;
  // MPI_Testall over every request in flight: OpenMPI progresses non-blocking collectives only inside MPI calls.
  void poll() override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;
  std::string name() const override { return "mpi"; }

  // This rank's index among the ranks on its node, and their count (MPI_Comm_split_type shared memory).
  int local_rank() const { return m_local_rank; }
  int local_size() const { return m_local_size; }

 private:
  int m_rank = 0, m_size = 1, m_local_rank = 0, m_local_size = 1;
  bool m_owns = false;
  Request m_next = 1;
  std::map<Request, std::vector<MPI_Request>> m_pending;
};

}  // namespace dex
