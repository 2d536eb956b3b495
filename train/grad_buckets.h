// GradBuckets: the data-parallel gradient all-reduce, in buckets overlapped with the backward (PyTorch DDP's
// Reducer, DESIGN.md "Multi-GPU").
//
//   plan      the parameters in REVERSE registration order (the order the backward finishes their gradients) are
//             cut into buckets of at most `bucket_bytes` (a parameter larger than that is a bucket of its own).
//             ParameterSet keeps every gradient in one flat buffer in registration order, so a bucket is one
//             contiguous slice of it: the all-reduce works in place, no copy in or out.
//   backward  the Tape's backward hook reports each parameter gradient once its last writer has run; when the last
//             gradient of a bucket is reported, the bucket's asynchronous sum all-reduce starts at once (later
//             closures keep computing meanwhile), and every hook call lets the communicator progress (poll).
//   finish    waits for every bucket (a bucket whose gradients were never reported, a parameter the step did not
//             use, starts here), then scales the whole buffer by 1/world: the gradients are the mean over ranks,
//             before the overflow check and Adam.
// Every rank starts the same buckets in the same order (the same network, the same backward), as MPI and NCCL
// require. Use: begin(); forward + backward (tape hook = hook()); finish().
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "autograd/tape.h"
#include "layers/parameters.h"
#include "train/communicator.h"

namespace dex {

struct GradBucket {
  int first_param = 0;  // the bucket holds the parameters first_param..last_param (registration indices),
  int last_param = 0;   // filled in reverse (last_param's gradient is final first)
  int64_t offset = 0;   // its slice of the flat gradient buffer, in floats
  int64_t numel = 0;
};

// The bucket plan for `params` (no communicator needed; tests check it). bucket_bytes must be > 0.
std::vector<GradBucket> plan_grad_buckets(const ParameterSet& params, size_t bucket_bytes);

class GradBuckets {
 public:
  // `params` (allocated) and `comm` must outlive this object. comm.accepts(params.device()) must hold.
  GradBuckets(ParameterSet& params, Communicator& comm, size_t bucket_bytes);
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  const std::vector<GradBucket>& buckets() const { return m_buckets; }
  // The hook to give the tape (Tape::set_backward_hook); it calls on_grads_final.
  Tape::BackwardHook hook();

  // Arms the buckets for one backward: no gradient final, nothing in flight.
  void begin();
  // These parameter gradients are final: a bucket whose gradients are now all final starts its all-reduce.
  void on_grads_final(const std::vector<const float*>& grads);
  // Starts the buckets not started yet, waits for every bucket, scales by 1/world. Gradients are then the mean.
  void finish();

  // After finish(): how many buckets started during the backward (from the hook) and in finish().
  int started_in_backward() const { return m_started_in_backward; }
  int started_in_finish() const { return static_cast<int>(m_buckets.size()) - m_started_in_backward; }

 private:
  void start(int b);

  ParameterSet& m_params;
  Communicator& m_comm;
  std::vector<GradBucket> m_buckets;
  std::vector<int> m_bucket_of;            // per parameter
  std::vector<int64_t> m_offsets;          // per parameter (sorted: registration order), to find a gradient
  std::vector<uint8_t> m_final;            // per parameter, this backward
  std::vector<int> m_left;                 // per bucket: gradients not final yet
  std::vector<Communicator::Request> m_request;  // per bucket
  std::vector<uint8_t> m_started;          // per bucket
  bool m_armed = false;
  int m_started_in_backward = 0;
};

}  // namespace dex
