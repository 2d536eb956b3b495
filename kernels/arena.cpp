#include "kernels/arena.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace dex {

void MemoryCounters::add(Device d, int64_t n) {
  auto& cur = d == Device::CPU ? host_bytes : device_bytes;
  auto& peak = d == Device::CPU ? host_peak : device_peak;
  int64_t now = cur.fetch_add(n) + n;
  int64_t p = peak.load();
  while (now > p && !peak.compare_exchange_weak(p, now)) {
  }
}
MemoryCounters& memory_counters() {
  static MemoryCounters c;
  return c;
}
std::string memory_summary() {
  auto& c = memory_counters();
  std::ostringstream os;
  os << "host " << c.host_bytes.load() / (1 << 20) << " MiB (peak " << c.host_peak.load() / (1 << 20)
     << " MiB), device " << c.device_bytes.load() / (1 << 20) << " MiB (peak " << c.device_peak.load() / (1 << 20)
     << " MiB)";
  return os.str();
}

namespace {
class HostAllocator final : public BlockAllocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) bytes = kArenaAlign;
    void* p = std::aligned_alloc(kArenaAlign, align_up(bytes));
    if (!p) throw Error(str("host allocation of ", bytes, " bytes failed (", memory_summary(), ")"));
    memory_counters().add(Device::CPU, static_cast<int64_t>(bytes));
    return p;
  }
  void release(void* p, size_t bytes) noexcept override {
    std::free(p);
    memory_counters().add(Device::CPU, -static_cast<int64_t>(bytes == 0 ? kArenaAlign : bytes));
  }
  Device device() const override { return Device::CPU; }
};
}  // namespace

BlockAllocator& host_allocator() {
  static HostAllocator a;
  return a;
}

Buffer::Buffer(BlockAllocator& alloc, size_t bytes) : m_alloc(&alloc), m_ptr(alloc.allocate(bytes)), m_bytes(bytes) {}
Buffer::~Buffer() {
  if (m_ptr) m_alloc->release(m_ptr, m_bytes);
}
Buffer::Buffer(Buffer&& o) noexcept : m_alloc(o.m_alloc), m_ptr(o.m_ptr), m_bytes(o.m_bytes) {
  o.m_ptr = nullptr;
  o.m_bytes = 0;
}
Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (m_ptr) m_alloc->release(m_ptr, m_bytes);
    m_alloc = o.m_alloc;
    m_ptr = o.m_ptr;
    m_bytes = o.m_bytes;
    o.m_ptr = nullptr;
    o.m_bytes = 0;
  }
  return *this;
}

Arena::Arena(BlockAllocator& alloc, size_t capacity, std::string name)
    : m_alloc(&alloc), m_fixed_capacity(capacity), m_name(std::move(name)) {
  if (capacity > 0) m_blocks.push_back(Block{Buffer(alloc, align_up(capacity)), 0});
}

size_t Arena::capacity() const {
  size_t c = 0;
  for (auto& b : m_blocks) c += b.buf.size();
  return c;
}

void* Arena::allocate(size_t bytes) {
  size_t need = align_up(bytes == 0 ? 1 : bytes);
  // Blocks form one address range [0, capacity()); try the block holding m_used, then the later ones.
  for (auto& b : m_blocks) {
    size_t end = b.offset_base + b.buf.size();
    if (m_used >= end) continue;
    size_t off = m_used > b.offset_base ? m_used - b.offset_base : 0;
    if (off + need <= b.buf.size()) {
      m_used = b.offset_base + off + need;
      if (m_used > m_peak) m_peak = m_used;
      return static_cast<char*>(b.buf.data()) + off;
    }
  }
  if (m_fixed_capacity > 0)
    throw Error(str(m_name, ": out of memory: ", bytes, " bytes requested with ", m_used, " of ", capacity(),
                    " bytes in use (peak ", m_peak, "); size the arena with a planning pass"));
  size_t base = capacity();
  size_t size = std::max(need, std::max<size_t>(64u << 20, base));
  m_blocks.push_back(Block{Buffer(*m_alloc, size), base});
  m_used = base + need;
  if (m_used > m_peak) m_peak = m_used;
  return m_blocks.back().buf.data();
}

void Arena::reset() { m_used = 0; }
void Arena::release_to(size_t mark) {
  DEX_CHECK(mark <= m_used, m_name, ": release_to(", mark, ") beyond used ", m_used);
  m_used = mark;
}

}  // namespace dex
