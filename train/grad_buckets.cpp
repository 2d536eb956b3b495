#include "train/grad_buckets.h"

#include <algorithm>

#include "kernels/backend.h"

namespace dex {

#ifdef DEX_HAVE_CUDA
void grad_scale_cuda(float* g, int64_t n, float s);  // train/grad_buckets_cuda.cu (default stream)
#endif

std::vector<GradBucket> plan_grad_buckets(const ParameterSet& params, size_t bucket_bytes) {
  DEX_INPUT_CHECK(bucket_bytes > 0, "gradient bucket size must be > 0 bytes (bucket_mb)");
  std::vector<GradBucket> out;
  GradBucket cur;
  bool open = false;
  for (int i = params.size() - 1; i >= 0; --i) {
    const ParamSpec& s = params.spec(i);
    const size_t bytes = static_cast<size_t>(s.numel) * sizeof(float);
    if (open && static_cast<size_t>(cur.numel) * sizeof(float) + bytes > bucket_bytes) {
      out.push_back(cur);
      open = false;
    }
    if (!open) {
      cur = GradBucket{i, i, s.offset, s.numel};
      open = true;
      continue;
    }
    // Registration order is buffer order: parameter i ends where i + 1 begins, so the slice grows downwards.
    DEX_CHECK(s.offset + s.numel == cur.offset, "parameter ", s.name,
              " is not contiguous with the next one in the gradient buffer");
    cur.first_param = i;
    cur.offset = s.offset;
    cur.numel += s.numel;
  }
  if (open) out.push_back(cur);
  return out;
}

GradBuckets::GradBuckets(ParameterSet& params, Communicator& comm, size_t bucket_bytes)
    : m_params(params), m_comm(comm), m_buckets(plan_grad_buckets(params, bucket_bytes)) {
  DEX_CHECK(params.allocated(), "GradBuckets: the parameter set is not allocated");
  DEX_CHECK(comm.accepts(params.device()), "GradBuckets: communicator '", comm.name(), "' cannot reduce ",
            device_name(params.device()), " buffers");
  m_bucket_of.assign(static_cast<size_t>(params.size()), -1);
  for (size_t b = 0; b < m_buckets.size(); ++b)
    for (int i = m_buckets[b].first_param; i <= m_buckets[b].last_param; ++i) m_bucket_of[i] = static_cast<int>(b);
  for (int i = 0; i < params.size(); ++i) m_offsets.push_back(params.spec(i).offset);
  m_final.assign(static_cast<size_t>(params.size()), 0);
  m_left.assign(m_buckets.size(), 0);
  m_request.assign(m_buckets.size(), 0);
  m_started.assign(m_buckets.size(), 0);
}

Tape::BackwardHook GradBuckets::hook() {
  return [this](const std::vector<const float*>& grads) { on_grads_final(grads); };
}

void GradBuckets::begin() {
  DEX_CHECK(!m_armed, "GradBuckets::begin: the previous step was not finished");
  std::fill(m_final.begin(), m_final.end(), 0);
  std::fill(m_started.begin(), m_started.end(), 0);
  for (size_t b = 0; b < m_buckets.size(); ++b) m_left[b] = m_buckets[b].last_param - m_buckets[b].first_param + 1;
  m_started_in_backward = 0;
  m_armed = true;
}

void GradBuckets::start(int b) {
  m_request[b] = m_comm.allreduce_sum_async(m_params.grads() + m_buckets[b].offset, m_buckets[b].numel);
  m_started[b] = 1;
}

void GradBuckets::on_grads_final(const std::vector<const float*>& grads) {
  DEX_CHECK(m_armed, "GradBuckets: a backward ran outside begin() / finish()");
  const float* base = m_params.grads();
  for (const float* g : grads) {
    const int64_t off = g - base;
    DEX_CHECK(g >= base && off < m_params.numel(), "GradBuckets: a gradient outside this parameter set was reported");
    const int i = static_cast<int>(std::upper_bound(m_offsets.begin(), m_offsets.end(), off) - m_offsets.begin()) - 1;
    DEX_CHECK(m_offsets[i] == off, "GradBuckets: a reported gradient does not start a parameter (offset ", off, ")");
    DEX_CHECK(!m_final[i], "GradBuckets: parameter ", m_params.spec(i).name, " reported final twice");
    m_final[i] = 1;
    const int b = m_bucket_of[i];
    if (--m_left[b] == 0) {
      start(b);
      ++m_started_in_backward;
    }
  }
  m_comm.poll();
}

void GradBuckets::finish() {
  DEX_CHECK(m_armed, "GradBuckets::finish without begin");
  m_armed = false;
  // Buckets holding a gradient nobody wrote (zero, but every rank must still take part) start in bucket order.
  for (size_t b = 0; b < m_buckets.size(); ++b)
    if (!m_started[b]) start(static_cast<int>(b));
  for (size_t b = 0; b < m_buckets.size(); ++b) m_comm.wait(m_request[b]);
  if (m_comm.size() == 1) return;
  const float inv = 1.0f / static_cast<float>(m_comm.size());
  float* g = m_params.grads();
  const int64_t n = m_params.numel();
  if (m_params.device() == Device::CPU) {
    for (int64_t i = 0; i < n; ++i) g[i] *= inv;
  } else {
#ifdef DEX_HAVE_CUDA
    grad_scale_cuda(g, n, inv);
#else
    DEX_CHECK(false, "GradBuckets: gradients on ", device_name(m_params.device()), " in a build without CUDA");
#endif
  }
}

}  // namespace dex
