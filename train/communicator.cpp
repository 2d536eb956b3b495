#include "train/communicator.h"

#include <climits>
#include <cstdlib>
#include <vector>

#include "kernels/common.h"

#ifdef DEX_HAVE_MPI
#include <mpi.h>
#endif

namespace dex {

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

#ifdef DEX_HAVE_MPI
namespace {

void mpi_check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw Error(str("MPI ", what, " failed: ", std::string(msg, static_cast<size_t>(len))));
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int* argc, char*** argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      mpi_check(MPI_Init(argc, argv), "MPI_Init");
      m_owns = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &m_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &m_size);
  }
  ~MpiCommunicator() override {
    if (m_owns) MPI_Finalize();
  }
  int rank() const override { return m_rank; }
  int size() const override { return m_size; }
  void allreduce_sum(float* data, int64_t n) override { reduce(data, n, MPI_FLOAT); }
  void allreduce_sum(double* data, int64_t n) override { reduce(data, n, MPI_DOUBLE); }
  void broadcast(void* data, size_t bytes, int root) override {
    auto* p = static_cast<char*>(data);
    while (bytes > 0) {
      const int chunk = bytes > size_t(INT_MAX) ? INT_MAX : static_cast<int>(bytes);
      mpi_check(MPI_Bcast(p, chunk, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
      p += chunk;
      bytes -= static_cast<size_t>(chunk);
    }
  }
  void barrier() override { mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  std::string name() const override { return "mpi"; }

 private:
  template <class T>
  void reduce(T* data, int64_t n, MPI_Datatype type) {
    while (n > 0) {
      const int chunk = n > INT_MAX ? INT_MAX : static_cast<int>(n);
      mpi_check(MPI_Allreduce(MPI_IN_PLACE, data, chunk, type, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
      data += chunk;
      n -= chunk;
    }
  }
  int m_rank = 0, m_size = 1;
  bool m_owns = false;
};

}  // namespace
#endif

std::unique_ptr<Communicator> make_communicator(const std::string& kind, int* argc, char*** argv) {
  (void)argc;
  (void)argv;
  const bool want_mpi = kind == "mpi" || (kind == "auto" && launched_by_mpi());
  DEX_INPUT_CHECK(kind == "mpi" || kind == "auto" || kind == "local", "communicator '", kind,
                  "' is not one of auto, local, mpi");
  if (!want_mpi) return std::make_unique<LocalCommunicator>();
#ifdef DEX_HAVE_MPI
  return std::make_unique<MpiCommunicator>(argc, argv);
#else
  throw InputError("communicator 'mpi' requested (or the program was started by mpirun), but this dex build has no "
                   "MPI; rebuild with OpenMPI installed (find_package(MPI))");
#endif
}

}  // namespace dex
