// Communicator: the few collectives data-parallel training needs (DESIGN.md "Multi-GPU"): sum-all-reduce of a
// float/double buffer (blocking, and asynchronous for the gradient buckets overlapped with the backward), broadcast,
// barrier, rank and size. Three implementations:
//   local  LocalCommunicator (this header): one process, every call a no-op.
//   mpi    MPI (OpenMPI on CPU ranks, `mpirun -np N dex-train ...`): host buffers; the asynchronous all-reduce is
//          MPI_Iallreduce, progressed by poll() (which the backward hook calls) and completed by wait().
//   nccl   NCCL on CUDA ranks, bootstrapped by MPI (rank 0's ncclUniqueId is broadcast over MPI_COMM_WORLD): device
//          buffers go through NCCL on a dedicated communication stream, host buffers (metric sums, the initial weight
//          broadcast) through MPI. The asynchronous all-reduce never blocks the host: it is ordered after the work
//          already queued on the compute stream (a cudaEvent), and wait() makes the compute stream wait for it.
// The MPI and NCCL ones live in communicator.cpp / communicator_nccl.cpp, which only the programs link (the
// training library is compiled without MPI).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/common.h"

namespace dex {

class Communicator {
 public:
  // An asynchronous all-reduce in flight; each is completed by exactly one wait().
  using Request = int64_t;

  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: every rank ends with the element-wise sum over ranks (the same bits on every rank).
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
  // Starts an in-place sum all-reduce and returns at once. Until wait(request) the buffer must be neither read nor
  // written (NCCL: by work queued on the compute stream after wait()). Reductions complete in any order but every
  // rank must start the same reductions in the same order. The default runs the blocking allreduce_sum.
  virtual Request allreduce_sum_async(float* data, int64_t n) {
    allreduce_sum(data, n);
    return 0;
  }
  // Completes `request` (MPI: blocks until the sum is in the buffer; NCCL: the compute stream waits for it).
  virtual void wait(Request request) { (void)request; }
  // Lets asynchronous reductions progress (MPI_Test); cheap, called after every backward closure.
  virtual void poll() {}
  // Whether all-reduce and broadcast accept buffers in `device` memory (every communicator takes host buffers).
  virtual bool accepts(Device device) const { return device == Device::CPU; }
  // Copies `bytes` bytes from `root`'s buffer into every other rank's.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  virtual std::string name() const = 0;
  bool is_root() const { return rank() == 0; }
};

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, int64_t) override {}
  void allreduce_sum(double*, int64_t) override {}
  Request allreduce_sum_async(float*, int64_t) override { return 0; }
  void wait(Request) override {}
  bool accepts(Device) const override { return true; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::string name() const override { return "local"; }
};

// True when the process was started by an MPI launcher (OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK set).
bool launched_by_mpi();
// kind "local", "mpi", "nccl", or "auto": nccl when launched_by_mpi() and `device` is CUDA (mpi when this build has
// no NCCL), mpi when launched_by_mpi() on the CPU, local otherwise. InputErrors: an unknown kind; "mpi" in a build
// without MPI; "nccl" in a build without CUDA + NCCL + MPI, with a CPU device, or not started by mpirun. The MPI and
// NCCL communicators call MPI_Init on construction (unless already initialised) and MPI_Finalize on destruction; the
// NCCL one also selects the CUDA device (local rank modulo the device count) before any other CUDA work.
std::unique_ptr<Communicator> make_communicator(const std::string& kind, int* argc, char*** argv,
                                                Device device = Device::CPU);

}  // namespace dex
