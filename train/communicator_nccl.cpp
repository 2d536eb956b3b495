// NcclCommunicator: data parallel over CUDA devices (DESIGN.md "Multi-GPU"), one rank per GPU, started by MPI.
//
//   bootstrap   MPI_COMM_WORLD (an MpiCommunicator): rank 0 makes the ncclUniqueId, MPI_Bcast sends it, every rank
//               calls ncclCommInitRank. The device is the node-local rank (MPI_Comm_split_type shared) modulo the
//               device count, selected before any other CUDA work of the process; ranks whose devices turn out to
//               be the same GPU (by UUID) are an error, since NCCL needs one device per rank.
//   streams     dex runs its kernels on the default stream (the compute stream, nullptr). Reductions run on a
//               dedicated non-blocking stream (a blocking one would be serialised with the legacy default stream,
//               and nothing would overlap): each is ordered after the compute work queued so far by a cudaEvent.
//   async       allreduce_sum_async records "done" on the communication stream; wait() makes the compute stream
//               wait for it (cudaStreamWaitEvent): the host never blocks, the optimiser's kernels queue behind it.
//   host        host buffers (metric sums, the initial weight broadcast) go through MPI.
#include "train/communicator_nccl.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <map>
#include <vector>

#include "kernels/cuda/cuda_runtime.h"
#include "train/communicator_mpi.h"

namespace dex {

namespace {

void nccl_check(ncclResult_t rc, const char* what, ncclComm_t comm) {
  if (rc == ncclSuccess) return;
  const char* last = ncclGetLastError(comm);
  throw Error(str("NCCL ", what, " failed: ", ncclGetErrorString(rc),
                  last && *last ? str(" (", last, ")") : std::string()));
}

// True for device (or managed) memory; host memory, registered or not, is false.
bool is_device_pointer(const void* p) {
  cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();  // an unknown host pointer on old runtimes: clear the (non-sticky) error
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int* argc, char*** argv) : m_mpi(argc, argv) {
    int ndev = 0;
    const cudaError_t e = cudaGetDeviceCount(&ndev);
    DEX_INPUT_CHECK(e == cudaSuccess && ndev > 0, "communicator 'nccl': rank ", m_mpi.rank(),
                    " sees no CUDA device (", e == cudaSuccess ? "device count 0" : cudaGetErrorString(e), ")");
    m_device = m_mpi.local_rank() % ndev;
    DEX_CUDA_CHECK(cudaSetDevice(m_device));
    check_one_device_per_rank(ndev);
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (m_mpi.rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId", nullptr);
    m_mpi.broadcast(&id, sizeof id, 0);
    nccl_check(ncclCommInitRank(&m_comm, m_mpi.size(), id, m_mpi.rank()), "ncclCommInitRank", nullptr);
    DEX_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking));
    DEX_CUDA_CHECK(cudaEventCreateWithFlags(&m_ready, cudaEventDisableTiming));
  }

  ~NcclCommunicator() override {
    // Destructors never throw: errors here are ignored (the process is ending or already failing).
    if (m_stream) cudaStreamSynchronize(m_stream);
    for (auto& [id, p] : m_pending)
      if (p.done) m_free.push_back(p.done);
    for (cudaEvent_t ev : m_free) cudaEventDestroy(ev);
    if (m_ready) cudaEventDestroy(m_ready);
    if (m_comm) ncclCommDestroy(m_comm);
    if (m_stream) cudaStreamDestroy(m_stream);
  }  // m_mpi (declared first) finalises MPI last

  int rank() const override { return m_mpi.rank(); }
  int size() const override { return m_mpi.size(); }
  bool accepts(Device) const override { return true; }
  std::string name() const override { return "nccl"; }

  void allreduce_sum(float* data, int64_t n) override { reduce_blocking(data, n, ncclFloat); }
  void allreduce_sum(double* data, int64_t n) override { reduce_blocking(data, n, ncclDouble); }

  Request allreduce_sum_async(float* data, int64_t n) override {
    const Request id = m_next++;
    Pending p;
    if (!is_device_pointer(data)) {
      p.mpi = m_mpi.allreduce_sum_async(data, n);
    } else {
      launch_allreduce(data, n, ncclFloat);
      p.done = take_event();
      DEX_CUDA_CHECK(cudaEventRecord(p.done, m_stream));
    }
    m_pending.emplace(id, p);
    return id;
  }

  void wait(Request request) override {
    auto it = m_pending.find(request);
    DEX_CHECK(it != m_pending.end(), "NCCL wait: request ", request, " is not in flight (waited twice?)");
    const Pending p = it->second;
    m_pending.erase(it);
    if (!p.done) {
      m_mpi.wait(p.mpi);
      return;
    }
    DEX_CUDA_CHECK(cudaStreamWaitEvent(nullptr, p.done, 0));
    m_free.push_back(p.done);  // reusable at once: the wait above captured the event's state when it was enqueued
  }

  void poll() override { m_mpi.poll(); }

  void broadcast(void* data, size_t bytes, int root) override {
    if (!is_device_pointer(data)) return m_mpi.broadcast(data, bytes, root);
    order_after_compute();
    nccl_check(ncclBroadcast(data, data, bytes, ncclUint8, root, m_comm, m_stream), "ncclBroadcast", m_comm);
    DEX_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  }

  void barrier() override { m_mpi.barrier(); }

 private:
  struct Pending {
    cudaEvent_t done = nullptr;  // NCCL: recorded on the communication stream after the reduction
    Request mpi = 0;             // host buffer: the MPI request
  };

  // Every rank's device UUID: two ranks on one GPU make ncclCommInitRank fail with an obscure message.
  void check_one_device_per_rank(int ndev) {
    cudaDeviceProp prop;
    DEX_CUDA_CHECK(cudaGetDeviceProperties(&prop, m_device));
    std::vector<char> all(static_cast<size_t>(m_mpi.size()) * sizeof prop.uuid.bytes);
    mpi_check(MPI_Allgather(prop.uuid.bytes, sizeof prop.uuid.bytes, MPI_BYTE, all.data(), sizeof prop.uuid.bytes,
                            MPI_BYTE, MPI_COMM_WORLD),
              "MPI_Allgather");
    const size_t u = sizeof prop.uuid.bytes;
    for (int r = 0; r < m_mpi.rank(); ++r)
      DEX_INPUT_CHECK(std::memcmp(all.data() + r * u, prop.uuid.bytes, u) != 0, "communicator 'nccl': ranks ", r,
                      " and ", m_mpi.rank(), " would share one GPU (", m_mpi.local_size(), " ranks on this node, ",
                      ndev, " visible CUDA device(s)); NCCL needs one device per rank: start at most ", ndev,
                      " ranks per node, or use --communicator mpi");
  }

  void order_after_compute() {
    DEX_CUDA_CHECK(cudaEventRecord(m_ready, nullptr));
    DEX_CUDA_CHECK(cudaStreamWaitEvent(m_stream, m_ready, 0));
  }

  void launch_allreduce(void* data, int64_t n, ncclDataType_t type) {
    order_after_compute();
    nccl_check(ncclAllReduce(data, data, static_cast<size_t>(n), type, ncclSum, m_comm, m_stream), "ncclAllReduce",
               m_comm);
  }

  template <class T>
  void reduce_blocking(T* data, int64_t n, ncclDataType_t type) {
    if (!is_device_pointer(data)) return m_mpi.allreduce_sum(data, n);
    launch_allreduce(data, n, type);
    DEX_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  }

  cudaEvent_t take_event() {
    if (!m_free.empty()) {
      cudaEvent_t ev = m_free.back();
      m_free.pop_back();
      return ev;
    }
    cudaEvent_t ev = nullptr;
    DEX_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    return ev;
  }

  MpiCommunicator m_mpi;
  int m_device = 0;
  ncclComm_t m_comm = nullptr;
  cudaStream_t m_stream = nullptr;
  cudaEvent_t m_ready = nullptr;
  std::vector<cudaEvent_t> m_free;
  std::map<Request, Pending> m_pending;
  Request m_next = 1;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(int* argc, char*** argv) {
  return std::make_unique<NcclCommunicator>(argc, argv);
}

}  // namespace dex
