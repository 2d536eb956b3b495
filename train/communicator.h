// Communicator: the few collectives data-parallel training needs (DESIGN.md "Multi-GPU"): sum-all-reduce of a
// float/double buffer, broadcast, barrier, rank and size. LocalCommunicator is the single-process one (every call a
// no-op); the MPI one (OpenMPI on CPU ranks, `mpirun -np N dex-train ...`) lives in communicator.cpp, which only
// the programs link (it is compiled with MPI, the training library is not).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dex {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: every rank ends with the element-wise sum over ranks (the same bits on every rank).
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
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
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::string name() const override { return "local"; }
};

// True when the process was started by an MPI launcher (OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK set).
bool launched_by_mpi();
// kind "local", "mpi", or "auto" (MPI when launched_by_mpi(), else local). "mpi" in a build without MPI is an
// InputError. The MPI communicator calls MPI_Init on construction and MPI_Finalize on destruction.
std::unique_ptr<Communicator> make_communicator(const std::string& kind, int* argc, char*** argv);

}  // namespace dex
