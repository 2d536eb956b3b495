// Bump allocator for per-step memory (activations, saved autograd context, scratch), 256-byte aligned,
// reset per step, peak reported (STYLE.md §4). The same interface serves host and device memory: the
// backing block comes from a BlockAllocator (host: aligned malloc; CUDA: cudaMalloc, in kernels/cuda).
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>
#include "kernels/common.h"

namespace dex {

constexpr size_t kArenaAlign = 256;
inline size_t align_up(size_t n, size_t a = kArenaAlign) { return (n + a - 1) / a * a; }

// Process-wide byte counters, shown in logs and out-of-memory messages.
struct MemoryCounters {
  std::atomic<int64_t> host_bytes{0}, host_peak{0}, device_bytes{0}, device_peak{0};
  void add(Device d, int64_t n);
};
MemoryCounters& memory_counters();
std::string memory_summary();

class BlockAllocator {
 public:
  virtual ~BlockAllocator() = default;
  virtual void* allocate(size_t bytes) = 0;  // throws dex::Error on failure, naming the size
  virtual void release(void* p, size_t bytes) noexcept = 0;
  virtual Device device() const = 0;
};
BlockAllocator& host_allocator();

// RAII owner of one block of memory (host or device), move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(BlockAllocator& alloc, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* data() const { return m_ptr; }
  size_t size() const { return m_bytes; }
  template <class T> T* as() const { return static_cast<T*>(m_ptr); }

 private:
  BlockAllocator* m_alloc = nullptr;
  void* m_ptr = nullptr;
  size_t m_bytes = 0;
};

class Arena {
 public:
  // capacity 0: grows by chaining blocks (planning mode); otherwise a fixed capacity that throws when
  // exceeded, saying how many bytes were needed.
  explicit Arena(BlockAllocator& alloc = host_allocator(), size_t capacity = 0, std::string name = "arena");
  void* allocate(size_t bytes);
  template <class T> T* alloc(size_t count) { return static_cast<T*>(allocate(count * sizeof(T))); }
  void reset();                       // frees everything allocated since construction (keeps the blocks)
  size_t used() const { return m_used; }
  size_t peak() const { return m_peak; }
  size_t capacity() const;
  Device device() const { return m_alloc->device(); }
  // Marks let scoped users release what they allocated (LIFO).
  size_t mark() const { return m_used; }
  void release_to(size_t mark);

 private:
  struct Block { Buffer buf; size_t offset_base; };
  BlockAllocator* m_alloc;
  size_t m_fixed_capacity;
  std::string m_name;
  std::vector<Block> m_blocks;
  size_t m_used = 0, m_peak = 0;
};

}  // namespace dex
