#include "train/communicator.h"

#include <climits>
#include <cstdlib>
#include <vector>

#include "kernels/common.h"

#ifdef DEX_HAVE_MPI
#include "train/communicator_mpi.h"
#endif
#ifdef DEX_HAVE_NCCL
#include "train/communicator_nccl.h"
#endif

namespace dex {

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

#ifdef DEX_HAVE_MPI

void mpi_check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw Error(str("MPI ", what, " failed: ", std::string(msg, static_cast<size_t>(len))));
  }
}

namespace {

template <class T>
void allreduce_chunks(T* data, int64_t n, MPI_Datatype type) {
  while (n > 0) {
    const int chunk = n > INT_MAX ? INT_MAX : static_cast<int>(n);
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, data, chunk, type, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    data += chunk;
    n -= chunk;
  }
}

}  // namespace

MpiCommunicator::MpiCommunicator(int* argc, char*** argv) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    mpi_check(MPI_Init(argc, argv), "MPI_Init");
    m_owns = true;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &m_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &m_size);
  MPI_Comm node;
  mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, m_rank, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
  MPI_Comm_rank(node, &m_local_rank);
  MPI_Comm_size(node, &m_local_size);
  MPI_Comm_free(&node);
}

MpiCommunicator::~MpiCommunicator() {
  for (auto& [id, reqs] : m_pending) MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE);
  if (m_owns) MPI_Finalize();
}

void MpiCommunicator::allreduce_sum(float* data, int64_t n) { allreduce_chunks(data, n, MPI_FLOAT); }
void MpiCommunicator::allreduce_sum(double* data, int64_t n) { allreduce_chunks(data, n, MPI_DOUBLE); }

Communicator::Request MpiCommunicator::allreduce_sum_async(float* data, int64_t n) {
  std::vector<MPI_Request> reqs;
  while (n > 0) {
    const int chunk = n > INT_MAX ? INT_MAX : static_cast<int>(n);
    reqs.push_back(MPI_REQUEST_NULL);
    mpi_check(MPI_Iallreduce(MPI_IN_PLACE, data, chunk, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &reqs.back()),
              "MPI_Iallreduce");
    data += chunk;
    n -= chunk;
  }
  const Request id = m_next++;
  m_pending.emplace(id, std::move(reqs));
  return id;
}

void MpiCommunicator::wait(Request request) {
  auto it = m_pending.find(request);
  DEX_CHECK(it != m_pending.end(), "MPI wait: request ", request, " is not in flight (waited twice?)");
  std::vector<MPI_Request> reqs = std::move(it->second);
  m_pending.erase(it);
  mpi_check(MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
}

void MpiCommunicator::poll() {
  for (auto& [id, reqs] : m_pending) {
    int done = 0;
    mpi_check(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
  }
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  auto* p = static_cast<char*>(data);
  while (bytes > 0) {
    const int chunk = bytes > size_t(INT_MAX) ? INT_MAX : static_cast<int>(bytes);
    mpi_check(MPI_Bcast(p, chunk, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    p += chunk;
    bytes -= static_cast<size_t>(chunk);
  }
}

void MpiCommunicator::barrier() { mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

#endif  // DEX_HAVE_MPI

std::unique_ptr<Communicator> make_communicator(const std::string& kind, int* argc, char*** argv, Device device) {
  (void)argc;
  (void)argv;
  DEX_INPUT_CHECK(kind == "mpi" || kind == "nccl" || kind == "auto" || kind == "local", "communicator '", kind,
                  "' is not one of auto, local, mpi, nccl");
  const bool mpi_launch = launched_by_mpi();
  std::string chosen = kind;
  if (kind == "auto") {
    chosen = !mpi_launch ? "local" : "mpi";
#ifdef DEX_HAVE_NCCL
    if (mpi_launch && device == Device::CUDA) chosen = "nccl";
#endif
  }
  if (chosen == "local") return std::make_unique<LocalCommunicator>();
  if (chosen == "nccl") {
    DEX_INPUT_CHECK(device == Device::CUDA, "communicator 'nccl' reduces CUDA device buffers: it needs --device cuda "
                    "(device is ", device_name(device), "; on the CPU use --communicator mpi)");
#ifdef DEX_HAVE_NCCL
    DEX_INPUT_CHECK(mpi_launch, "communicator 'nccl' is bootstrapped by MPI: start the program with mpirun -np N "
                    "(one rank per GPU), or use --communicator local for one process");
    return make_nccl_communicator(argc, argv);
#else
    throw InputError("communicator 'nccl' requested, but this dex build has no NCCL (it needs the CUDA backend, "
                     "nccl.h + libnccl and MPI at configure time); use --communicator mpi");
#endif
  }
#ifdef DEX_HAVE_MPI
  return std::make_unique<MpiCommunicator>(argc, argv);
#else
  throw InputError("communicator 'mpi' requested (or the program was started by mpirun), but this dex build has no "
                   "MPI; rebuild with OpenMPI installed (find_package(MPI))");
#endif
}

}  // namespace dex
