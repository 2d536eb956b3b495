// torch.save reader: zip archive -> data.pkl (minimal unpickler) -> tensors from storage records.
//
// torch >= 1.6 writes a zip whose entries live under one folder (the file's stem, or "archive"):
//   <a>/data.pkl      the pickled object; tensors are REDUCE(torch._utils._rebuild_tensor_v2,
//                     (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]))
//                     and storages are BINPERSID(('storage', torch.FloatStorage, key, location, numel))
//   <a>/data/<key>    the raw little-endian storage bytes
//   <a>/version, <a>/byteorder (newer torch)
// TorchScript archives add <a>/constants.pkl and <a>/code/; we reject those.
#include "layers/torch_checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kernels/common.h"
#include "kernels/half.h"
#include "layers/safetensors.h"

namespace dex {

namespace {

// ================================================================================================
// Zip reader (stored + deflate, zip64)
// ================================================================================================

struct ZipEntry {
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, local_offset = 0;
};

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) { return static_cast<uint32_t>(rd16(p)) | (static_cast<uint32_t>(rd16(p + 2)) << 16); }
uint64_t rd64(const uint8_t* p) { return static_cast<uint64_t>(rd32(p)) | (static_cast<uint64_t>(rd32(p + 4)) << 32); }

class ZipArchive {
 public:
  explicit ZipArchive(const std::string& path) : m_path(path), m_file(path, std::ios::binary) {
    DEX_INPUT_CHECK(m_file, "cannot open model file ", path);
    m_file.seekg(0, std::ios::end);
    m_size = static_cast<uint64_t>(m_file.tellg());
    read_central_directory();
  }

  const std::map<std::string, ZipEntry>& entries() const { return m_entries; }
  const ZipEntry* find(const std::string& name) const {
    auto it = m_entries.find(name);
    return it == m_entries.end() ? nullptr : &it->second;
  }

  std::vector<uint8_t> read(const std::string& name) const {
    const ZipEntry* e = find(name);
    DEX_INPUT_CHECK(e, m_path, ": the zip archive has no entry ", name);
    const std::string what = m_path + ": zip entry " + name;
    DEX_INPUT_CHECK(!(e->flags & 1), what, " is encrypted");
    std::vector<uint8_t> lh = read_at(e->local_offset, 30, what + " (local header)");
    DEX_INPUT_CHECK(rd32(lh.data()) == 0x04034b50, what, ": bad local header signature");
    uint64_t data_at = e->local_offset + 30 + rd16(lh.data() + 26) + rd16(lh.data() + 28);
    std::vector<uint8_t> raw = read_at(data_at, e->csize, what + " (data)");
    std::vector<uint8_t> out;
    if (e->method == 0) {
      DEX_INPUT_CHECK(e->csize == e->usize, what, ": stored entry with compressed size ", e->csize,
                      " != size ", e->usize);
      out = std::move(raw);
    } else if (e->method == 8) {
      // deflate expands at most ~1032:1; bounds the allocation for a corrupt size field
      DEX_INPUT_CHECK(e->usize <= e->csize * 1032 + 1024, what, ": implausible size ", e->usize, " for ", e->csize,
                      " compressed bytes");
      out.resize(e->usize);
      inflate_raw(raw, out, what);
    } else {
      throw InputError(str(what, ": unsupported compression method ", e->method, " (dex reads stored and deflate)"));
    }
    uint32_t crc = 0;
    for (uint64_t done = 0; done < out.size();) {  // zlib's crc32 takes a uInt length
      uInt chunk = static_cast<uInt>(std::min<uint64_t>(out.size() - done, 1u << 30));
      crc = static_cast<uint32_t>(crc32(crc, out.data() + done, chunk));
      done += chunk;
    }
    DEX_INPUT_CHECK(crc == e->crc, what, ": CRC mismatch (the file is corrupt)");
    return out;
  }

 private:
  std::vector<uint8_t> read_at(uint64_t offset, uint64_t n, const std::string& what) const {
    DEX_INPUT_CHECK(offset <= m_size && n <= m_size - offset, what, " lies beyond the end of the file (truncated?)");
    std::vector<uint8_t> buf(n);
    m_file.clear();
    m_file.seekg(static_cast<std::streamoff>(offset));
    m_file.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n));
    DEX_INPUT_CHECK(m_file, m_path, ": read failed at ", what);
    return buf;
  }

  static void inflate_raw(std::vector<uint8_t>& in, std::vector<uint8_t>& out, const std::string& what) {
    z_stream zs{};
    DEX_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, "zlib inflateInit2 failed");
    uint64_t in_done = 0, out_done = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      uInt in_chunk = static_cast<uInt>(std::min<uint64_t>(in.size() - in_done, 1u << 30));
      uInt out_chunk = static_cast<uInt>(std::min<uint64_t>(out.size() - out_done, 1u << 30));
      zs.next_in = in.data() + in_done;
      zs.avail_in = in_chunk;
      zs.next_out = out.data() + out_done;
      zs.avail_out = out_chunk;
      rc = inflate(&zs, Z_NO_FLUSH);
      in_done += in_chunk - zs.avail_in;
      out_done += out_chunk - zs.avail_out;
      if (rc == Z_OK && zs.avail_in == in_chunk && zs.avail_out == out_chunk) rc = Z_BUF_ERROR;  // no progress
    }
    inflateEnd(&zs);
    DEX_INPUT_CHECK(rc == Z_STREAM_END && out_done == out.size(), what, ": corrupt deflate data");
  }

  void read_central_directory() {
    const std::string& p = m_path;
    DEX_INPUT_CHECK(m_size >= 22, p, " is too short (", m_size, " bytes) to be a zip archive");
    uint64_t tail_n = std::min<uint64_t>(m_size, 22 + 65535);
    std::vector<uint8_t> tail = read_at(m_size - tail_n, tail_n, "the end of central directory");
    int64_t eocd = -1;
    for (int64_t i = static_cast<int64_t>(tail_n) - 22; i >= 0; --i) {
      if (rd32(&tail[i]) == 0x06054b50 && i + 22 + rd16(&tail[i + 20]) <= static_cast<int64_t>(tail_n)) {
        eocd = i;
        break;
      }
    }
    DEX_INPUT_CHECK(eocd >= 0, p, ": no zip end-of-central-directory record (truncated or not a zip archive)");
    const uint8_t* e = &tail[eocd];
    uint64_t count = rd16(e + 10), cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
    uint64_t eocd_pos = m_size - tail_n + static_cast<uint64_t>(eocd);
    if (count == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {  // zip64
      DEX_INPUT_CHECK(eocd_pos >= 20, p, ": zip64 locator missing");
      std::vector<uint8_t> loc = read_at(eocd_pos - 20, 20, "the zip64 locator");
      DEX_INPUT_CHECK(rd32(loc.data()) == 0x07064b50, p, ": zip64 end-of-central-directory locator missing");
      std::vector<uint8_t> z = read_at(rd64(loc.data() + 8), 56, "the zip64 end-of-central-directory record");
      DEX_INPUT_CHECK(rd32(z.data()) == 0x06064b50, p, ": bad zip64 end-of-central-directory signature");
      count = rd64(z.data() + 32);
      cd_size = rd64(z.data() + 40);
      cd_offset = rd64(z.data() + 48);
    }
    std::vector<uint8_t> cd = read_at(cd_offset, cd_size, "the zip central directory");
    DEX_INPUT_CHECK(count <= cd_size / 46 + 1, p, ": zip central directory claims ", count, " entries in ", cd_size,
                    " bytes");
    size_t pos = 0;
    for (uint64_t i = 0; i < count; ++i) {
      DEX_INPUT_CHECK(pos + 46 <= cd.size() && rd32(&cd[pos]) == 0x02014b50, p,
                      ": corrupt zip central directory (entry ", i, ")");
      const uint8_t* c = &cd[pos];
      ZipEntry ze;
      ze.flags = rd16(c + 8);
      ze.method = rd16(c + 10);
      ze.crc = rd32(c + 16);
      ze.csize = rd32(c + 20);
      ze.usize = rd32(c + 24);
      size_t name_len = rd16(c + 28), extra_len = rd16(c + 30), comment_len = rd16(c + 32);
      ze.local_offset = rd32(c + 42);
      DEX_INPUT_CHECK(pos + 46 + name_len + extra_len + comment_len <= cd.size(), p,
                      ": corrupt zip central directory (entry ", i, " runs past it)");
      std::string name(reinterpret_cast<const char*>(c + 46), name_len);
      const uint8_t* x = c + 46 + name_len;
      for (size_t xp = 0; xp + 4 <= extra_len;) {  // zip64 extended information: only the saturated fields
        uint16_t id = rd16(x + xp), len = rd16(x + xp + 2);
        DEX_INPUT_CHECK(xp + 4 + len <= extra_len, p, ": corrupt zip extra field in entry ", name);
        if (id == 0x0001) {
          const uint8_t* f = x + xp + 4;
          size_t left = len;
          auto take = [&](uint64_t& v) {
            if (v != 0xffffffffu) return;
            DEX_INPUT_CHECK(left >= 8, p, ": short zip64 extra field in entry ", name);
            v = rd64(f);
            f += 8;
            left -= 8;
          };
          take(ze.usize);
          take(ze.csize);
          take(ze.local_offset);
        }
        xp += 4 + len;
      }
      m_entries[name] = ze;
      pos += 46 + name_len + extra_len + comment_len;
    }
  }

  std::string m_path;
  mutable std::ifstream m_file;
  uint64_t m_size = 0;
  std::map<std::string, ZipEntry> m_entries;
};

// ================================================================================================
// Minimal unpickler
// ================================================================================================

struct Value;
using ValuePtr = std::shared_ptr<Value>;

enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor, Object };

struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;     // Bool, Int; Storage: numel; Tensor: storage offset
  double f = 0;      // Float
  std::string s;     // String, Bytes; Global/Object: "module.name"; Storage: type ("torch.FloatStorage")
  std::string key;   // Storage: record key
  std::vector<ValuePtr> items;  // Tuple, List; Dict: k0, v0, k1, v1, ...; Tensor: {storage}
  std::vector<int64_t> size, stride;  // Tensor

  explicit Value(Kind k) : kind(k) {}
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Object: return "object";
  }
  return "?";
}

std::string describe(const Value& v) {
  if (v.kind == Kind::Object || v.kind == Kind::Global) return str("a ", v.s, " ", kind_name(v.kind));
  return str("a ", kind_name(v.kind));
}

ValuePtr make(Kind k) { return std::make_shared<Value>(k); }
ValuePtr make_int(int64_t i) {
  auto v = make(Kind::Int);
  v->i = i;
  return v;
}

// Destroys a value graph without recursion (a hostile pickle can nest containers deeply).
void release(std::vector<ValuePtr>& work) {
  while (!work.empty()) {
    ValuePtr p = std::move(work.back());
    work.pop_back();
    if (p && p.use_count() == 1) {
      for (auto& c : p->items) work.push_back(std::move(c));
      p->items.clear();
    }
  }
}

class Unpickler {
 public:
  Unpickler(const std::vector<uint8_t>& data, std::string where) : m_data(data), m_where(std::move(where)) {}
  ~Unpickler() {
    std::vector<ValuePtr> work = std::move(m_stack);
    for (auto& kv : m_memo) work.push_back(std::move(kv.second));
    m_memo.clear();
    for (auto& frame : m_marks) for (auto& v : frame) work.push_back(std::move(v));
    m_marks.clear();
    release(work);
  }

  ValuePtr run() {
    while (true) {
      size_t at = m_pos;
      uint8_t op = u8();
      switch (op) {
        case 0x80: {  // PROTO
          uint8_t proto = u8();
          DEX_INPUT_CHECK(proto <= 5, m_where, ": pickle protocol ", int(proto), " is not supported");
          break;
        }
        case 0x95: bytes(8); break;  // FRAME (protocol 4+): just a length hint
        case '.': {                  // STOP
          DEX_INPUT_CHECK(!m_stack.empty(), m_where, ": pickle STOP with an empty stack");
          ValuePtr out = m_stack.back();
          m_stack.pop_back();
          return out;
        }
        case '(': m_marks.emplace_back(std::move(m_stack)); m_stack.clear(); break;  // MARK
        case '}': push(make(Kind::Dict)); break;   // EMPTY_DICT
        case ']': push(make(Kind::List)); break;   // EMPTY_LIST
        case ')': push(make(Kind::Tuple)); break;  // EMPTY_TUPLE
        case 'N': push(make(Kind::None)); break;   // NONE
        case 0x88: case 0x89: {                    // NEWTRUE, NEWFALSE
          auto v = make(Kind::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'J': { int32_t x; std::memcpy(&x, bytes(4), 4); push(make_int(x)); break; }  // BININT
        case 'K': push(make_int(u8())); break;                                          // BININT1
        case 'M': push(make_int(rd16(bytes(2)))); break;                                // BININT2
        case 0x8a: push(make_int(read_long(u8(), at))); break;                          // LONG1
        case 0x8b: push(make_int(read_long(rd32(bytes(4)), at))); break;                // LONG4
        case 'G': {  // BINFLOAT: big-endian double
          const uint8_t* b = bytes(8);
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | b[k];
          auto v = make(Kind::Float);
          std::memcpy(&v->f, &u, 8);
          push(v);
          break;
        }
        case 'X': push_string(Kind::String, rd32(bytes(4))); break;   // BINUNICODE
        case 0x8c: push_string(Kind::String, u8()); break;            // SHORT_BINUNICODE
        case 0x8d: push_string(Kind::String, rd64(bytes(8))); break;  // BINUNICODE8
        case 'T': push_string(Kind::String, rd32(bytes(4))); break;   // BINSTRING (py2 str)
        case 'U': push_string(Kind::String, u8()); break;             // SHORT_BINSTRING
        case 'B': push_string(Kind::Bytes, rd32(bytes(4))); break;    // BINBYTES
        case 'C': push_string(Kind::Bytes, u8()); break;              // SHORT_BINBYTES
        case 0x8e: push_string(Kind::Bytes, rd64(bytes(8))); break;   // BINBYTES8
        case 'q': memo_put(u8()); break;                              // BINPUT
        case 'r': memo_put(rd32(bytes(4))); break;                    // LONG_BINPUT
        case 0x94: memo_put(m_memo.size()); break;                    // MEMOIZE
        case 'h': memo_get(u8(), at); break;                          // BINGET
        case 'j': memo_get(rd32(bytes(4)), at); break;                // LONG_BINGET
        case '0': pop(at); break;                                     // POP
        case '1': pop_mark(at); break;                                // POP_MARK
        case '2': push(top(at)); break;                               // DUP
        case 't': {                                                   // TUPLE
          auto v = make(Kind::Tuple);
          v->items = pop_mark(at);
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          size_t n = op - 0x84;
          DEX_INPUT_CHECK(m_stack.size() >= n, m_where, ": pickle stack underflow at byte ", at);
          auto v = make(Kind::Tuple);
          v->items.assign(m_stack.end() - n, m_stack.end());
          m_stack.resize(m_stack.size() - n);
          push(v);
          break;
        }
        case 'l': {  // LIST
          auto v = make(Kind::List);
          v->items = pop_mark(at);
          push(v);
          break;
        }
        case 'd': {  // DICT
          auto v = make(Kind::Dict);
          v->items = pop_mark(at);
          DEX_INPUT_CHECK(v->items.size() % 2 == 0, m_where, ": odd number of items for DICT at byte ", at);
          push(v);
          break;
        }
        case 'a': {  // APPEND
          ValuePtr x = pop(at);
          append_to(top(at), {x}, at);
          break;
        }
        case 'e': {  // APPENDS
          std::vector<ValuePtr> xs = pop_mark(at);
          append_to(top(at), xs, at);
          break;
        }
        case 's': {  // SETITEM
          ValuePtr v = pop(at), k = pop(at);
          set_items(top(at), {k, v}, at);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<ValuePtr> kv = pop_mark(at);
          DEX_INPUT_CHECK(kv.size() % 2 == 0, m_where, ": odd number of items for SETITEMS at byte ", at);
          set_items(top(at), kv, at);
          break;
        }
        case 'c': {  // GLOBAL: "module\nname\n"
          std::string module = line(at), name = line(at);
          auto v = make(Kind::Global);
          v->s = module + "." + name;
          push(v);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          ValuePtr name = pop(at), module = pop(at);
          DEX_INPUT_CHECK(name->kind == Kind::String && module->kind == Kind::String, m_where,
                          ": STACK_GLOBAL needs two strings at byte ", at);
          auto v = make(Kind::Global);
          v->s = module->s + "." + name->s;
          push(v);
          break;
        }
        case 'R': {  // REDUCE
          ValuePtr args = pop(at), fn = pop(at);
          push(call(*fn, *args, at));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
          ValuePtr args = pop(at), cls = pop(at);
          auto v = make(Kind::Object);
          v->s = cls->kind == Kind::Global ? cls->s : kind_name(cls->kind);
          push(v);
          break;
        }
        case 'b': {  // BUILD: obj.__setstate__(state); state of dicts/tensors is ignored (_metadata, hooks)
          pop(at);
          top(at);
          break;
        }
        case 'Q': {  // BINPERSID
          ValuePtr pid = pop(at);
          push(persistent_load(*pid, at));
          break;
        }
        default:
          throw InputError(str(m_where, ": unsupported pickle opcode 0x", hex(op), " ('",
                               (op >= 32 && op < 127 ? std::string(1, static_cast<char>(op)) : std::string("?")),
                               "') at byte ", at, "; dex reads the pickles torch.save writes"));
      }
    }
  }

 private:
  static std::string hex(uint8_t b) {
    const char* d = "0123456789abcdef";
    return std::string{d[b >> 4], d[b & 15]};
  }
  const uint8_t* bytes(uint64_t n) {
    DEX_INPUT_CHECK(n <= m_data.size() - m_pos, m_where, ": the pickle ends early (truncated data.pkl) at byte ", m_pos);
    const uint8_t* p = m_data.data() + m_pos;
    m_pos += n;
    return p;
  }
  uint8_t u8() { return *bytes(1); }
  std::string line(size_t at) {
    size_t end = m_pos;
    while (end < m_data.size() && m_data[end] != '\n') ++end;
    DEX_INPUT_CHECK(end < m_data.size(), m_where, ": unterminated GLOBAL at byte ", at);
    std::string s(reinterpret_cast<const char*>(m_data.data() + m_pos), end - m_pos);
    m_pos = end + 1;
    return s;
  }
  int64_t read_long(uint64_t n, size_t at) {
    DEX_INPUT_CHECK(n <= 8, m_where, ": integer of ", n, " bytes at byte ", at, " does not fit 64 bits");
    const uint8_t* b = bytes(n);
    uint64_t u = 0;
    for (uint64_t k = 0; k < n; ++k) u |= static_cast<uint64_t>(b[k]) << (8 * k);
    if (n > 0 && n < 8 && (b[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
    int64_t x;
    std::memcpy(&x, &u, 8);
    return x;
  }
  void push_string(Kind k, uint64_t n) {
    const uint8_t* p = bytes(n);
    auto v = make(k);
    v->s.assign(reinterpret_cast<const char*>(p), n);
    push(v);
  }
  void push(ValuePtr v) { m_stack.push_back(std::move(v)); }
  ValuePtr pop(size_t at) {
    DEX_INPUT_CHECK(!m_stack.empty(), m_where, ": pickle stack underflow at byte ", at);
    ValuePtr v = std::move(m_stack.back());
    m_stack.pop_back();
    return v;
  }
  ValuePtr top(size_t at) {
    DEX_INPUT_CHECK(!m_stack.empty(), m_where, ": pickle stack underflow at byte ", at);
    return m_stack.back();
  }
  std::vector<ValuePtr> pop_mark(size_t at) {
    DEX_INPUT_CHECK(!m_marks.empty(), m_where, ": pickle MARK missing at byte ", at);
    std::vector<ValuePtr> items = std::move(m_stack);
    m_stack = std::move(m_marks.back());
    m_marks.pop_back();
    return items;
  }
  void memo_put(uint64_t idx) {
    DEX_INPUT_CHECK(!m_stack.empty(), m_where, ": memo store with an empty stack");
    m_memo[idx] = m_stack.back();
  }
  void memo_get(uint64_t idx, size_t at) {
    auto it = m_memo.find(idx);
    DEX_INPUT_CHECK(it != m_memo.end(), m_where, ": pickle memo entry ", idx, " used before it was set (byte ", at, ")");
    push(it->second);
  }
  void append_to(const ValuePtr& target, const std::vector<ValuePtr>& xs, size_t at) {
    if (target->kind == Kind::List) {
      target->items.insert(target->items.end(), xs.begin(), xs.end());
    } else {  // e.g. an unknown object's listitems: ignored
      DEX_INPUT_CHECK(target->kind == Kind::Object, m_where, ": APPEND to ", describe(*target), " at byte ", at);
    }
  }
  void set_items(const ValuePtr& target, const std::vector<ValuePtr>& kv, size_t at) {
    if (target->kind == Kind::Dict) {
      target->items.insert(target->items.end(), kv.begin(), kv.end());
    } else {
      DEX_INPUT_CHECK(target->kind == Kind::Object, m_where, ": SETITEM on ", describe(*target), " at byte ", at);
    }
  }

  static std::vector<int64_t> int_tuple(const Value& v, const std::string& what) {
    DEX_INPUT_CHECK(v.kind == Kind::Tuple || v.kind == Kind::List, what, " is ", describe(v), ", not a tuple");
    std::vector<int64_t> out;
    for (const auto& x : v.items) {
      DEX_INPUT_CHECK(x->kind == Kind::Int, what, " holds ", describe(*x), ", not an int");
      out.push_back(x->i);
    }
    return out;
  }

  ValuePtr call(const Value& fn, const Value& args, size_t at) {
    DEX_INPUT_CHECK(args.kind == Kind::Tuple, m_where, ": REDUCE with ", describe(args), " as arguments at byte ", at);
    const auto& a = args.items;
    const std::string where = str(m_where, ": ", fn.s, " at byte ", at);
    if (fn.kind != Kind::Global) throw InputError(str(m_where, ": REDUCE calls ", describe(fn), " at byte ", at));
    if (fn.s == "collections.OrderedDict" || fn.s == "builtins.dict") {
      auto d = make(Kind::Dict);
      if (!a.empty() && a[0]->kind == Kind::List) {  // OrderedDict([(k, v), ...])
        for (const auto& kv : a[0]->items) {
          DEX_INPUT_CHECK(kv->kind == Kind::Tuple && kv->items.size() == 2, where, ": expects (key, value) pairs");
          d->items.push_back(kv->items[0]);
          d->items.push_back(kv->items[1]);
        }
      }
      return d;
    }
    if (fn.s == "torch._utils._rebuild_tensor_v2" || fn.s == "torch._utils._rebuild_tensor") {
      DEX_INPUT_CHECK(a.size() >= 4, where, ": expects (storage, offset, size, stride, ...), got ", a.size(), " arguments");
      DEX_INPUT_CHECK(a[0]->kind == Kind::Storage, where, ": the first argument is ", describe(*a[0]), ", not a storage");
      DEX_INPUT_CHECK(a[1]->kind == Kind::Int, where, ": the storage offset is ", describe(*a[1]));
      auto t = make(Kind::Tensor);
      t->items = {a[0]};
      t->i = a[1]->i;
      t->size = int_tuple(*a[2], where + ": size");
      t->stride = int_tuple(*a[3], where + ": stride");
      DEX_INPUT_CHECK(t->size.size() == t->stride.size(), where, ": size has ", t->size.size(), " dims, stride ",
                      t->stride.size());
      return t;
    }
    if (fn.s == "torch._utils._rebuild_parameter" || fn.s == "torch._utils._rebuild_parameter_with_state") {
      DEX_INPUT_CHECK(!a.empty() && a[0]->kind == Kind::Tensor, where, ": expects a tensor");
      return a[0];
    }
    auto obj = make(Kind::Object);  // anything else: remembered by name, an error only if a tensor is expected
    obj->s = fn.s;
    if (fn.s == "copyreg._reconstructor" && !a.empty() && a[0]->kind == Kind::Global) obj->s = a[0]->s;
    return obj;
  }

  ValuePtr persistent_load(const Value& pid, size_t at) {
    const std::string where = str(m_where, ": persistent id at byte ", at);
    DEX_INPUT_CHECK(pid.kind == Kind::Tuple && pid.items.size() == 5 && pid.items[0]->kind == Kind::String &&
                        pid.items[0]->s == "storage",
                    where, " is not ('storage', type, key, location, numel)");
    const auto& a = pid.items;
    DEX_INPUT_CHECK(a[1]->kind == Kind::Global, where, ": storage type is ", describe(*a[1]));
    DEX_INPUT_CHECK(a[2]->kind == Kind::String, where, ": storage key is ", describe(*a[2]));
    DEX_INPUT_CHECK(a[4]->kind == Kind::Int && a[4]->i >= 0, where, ": storage size is ", describe(*a[4]));
    auto key = m_storages.find(a[2]->s);  // the same key always names the same storage
    if (key != m_storages.end()) return key->second;
    auto s = make(Kind::Storage);
    s->s = a[1]->s;
    s->key = a[2]->s;
    s->i = a[4]->i;
    m_storages[s->key] = s;
    return s;
  }

  const std::vector<uint8_t>& m_data;
  std::string m_where;
  size_t m_pos = 0;
  std::vector<ValuePtr> m_stack;
  std::vector<std::vector<ValuePtr>> m_marks;  // the stacks saved by MARK
  std::unordered_map<uint64_t, ValuePtr> m_memo;
  std::map<std::string, ValuePtr> m_storages;
};

// ================================================================================================
// Tensors from storages
// ================================================================================================

enum class Elem { F32, F16, BF16, F64, I64, I32, I16, I8, U8, Bool };

bool storage_elem(const std::string& type, Elem& e, size_t& size) {
  static const std::map<std::string, std::pair<Elem, size_t>> table = {
      {"torch.FloatStorage", {Elem::F32, 4}},  {"torch.HalfStorage", {Elem::F16, 2}},
      {"torch.BFloat16Storage", {Elem::BF16, 2}}, {"torch.DoubleStorage", {Elem::F64, 8}},
      {"torch.LongStorage", {Elem::I64, 8}},   {"torch.IntStorage", {Elem::I32, 4}},
      {"torch.ShortStorage", {Elem::I16, 2}},  {"torch.CharStorage", {Elem::I8, 1}},
      {"torch.ByteStorage", {Elem::U8, 1}},    {"torch.BoolStorage", {Elem::Bool, 1}}};
  auto it = table.find(type);
  if (it == table.end()) return false;
  e = it->second.first;
  size = it->second.second;
  return true;
}

float elem_to_float(Elem e, const uint8_t* p) {
  switch (e) {
    case Elem::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case Elem::F16: return f16_bits_to_f32(rd16(p));
    case Elem::BF16: return bf16_bits_to_f32(rd16(p));
    case Elem::F64: { double v; std::memcpy(&v, p, 8); return static_cast<float>(v); }
    case Elem::I64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<float>(v); }
    case Elem::I32: { int32_t v; std::memcpy(&v, p, 4); return static_cast<float>(v); }
    case Elem::I16: { int16_t v; std::memcpy(&v, p, 2); return static_cast<float>(v); }
    case Elem::I8: return static_cast<float>(static_cast<int8_t>(*p));
    case Elem::U8: return static_cast<float>(*p);
    case Elem::Bool: return *p ? 1.f : 0.f;
  }
  return 0.f;
}

class TensorBuilder {
 public:
  TensorBuilder(const ZipArchive& zip, std::string prefix, std::string path)
      : m_zip(zip), m_prefix(std::move(prefix)), m_path(std::move(path)) {}

  NamedTensor build(const Value& t, const std::string& name) {
    const std::string what = str(m_path, ": tensor '", name, "'");
    const Value& st = *t.items.at(0);
    Elem elem;
    size_t esize;
    DEX_INPUT_CHECK(storage_elem(st.s, elem, esize), what, " has storage type ", st.s, ", which dex does not read");
    const std::vector<uint8_t>& bytes = storage(st.key, what);
    DEX_INPUT_CHECK(bytes.size() % esize == 0, what, ": storage record data/", st.key, " has ", bytes.size(),
                    " bytes, not a multiple of ", esize);
    const int64_t avail = static_cast<int64_t>(bytes.size() / esize);
    DEX_INPUT_CHECK(st.i <= avail, what, ": storage ", st.key, " should hold ", st.i, " elements but has ", avail);

    NamedTensor out;
    out.shape = t.size;
    const size_t nd = t.size.size();
    DEX_INPUT_CHECK(nd <= 64, what, " has ", nd, " dimensions");
    int64_t numel = 1;
    __int128 last = t.i;  // highest storage index the view touches
    DEX_INPUT_CHECK(t.i >= 0, what, ": negative storage offset");
    for (size_t d = 0; d < nd; ++d) {
      DEX_INPUT_CHECK(t.size[d] >= 0 && t.stride[d] >= 0, what, ": negative size or stride");
      DEX_INPUT_CHECK(t.size[d] == 0 || numel <= (int64_t{1} << 40) / t.size[d], what, " is implausibly large");
      numel *= t.size[d];
    }
    // stride-0 / overlapping views may have more elements than their storage, but not absurdly many (this
    // bounds the allocation a corrupt size tuple can cause: at most 16x the storage or 2^28 elements)
    DEX_INPUT_CHECK(numel <= 16 * std::max<int64_t>(avail, int64_t{1} << 24), what, ": a view of ", numel,
                    " elements over a storage of ", avail, " is implausible");
    if (numel > 0) {
      for (size_t d = 0; d < nd; ++d) last += static_cast<__int128>(t.size[d] - 1) * t.stride[d];
      DEX_INPUT_CHECK(last < avail, what, ": the view (offset ", t.i, ", size/stride) reaches element ",
                      static_cast<int64_t>(std::min<__int128>(last, INT64_MAX)), " of a storage with ", avail);
    }
    out.data.resize(static_cast<size_t>(numel));
    bool contiguous = true;
    for (int64_t d = static_cast<int64_t>(nd) - 1, expect = 1; d >= 0; expect *= t.size[d], --d)
      contiguous = contiguous && (t.size[d] == 1 || t.stride[d] == expect);
    if (contiguous && elem == Elem::F32) {  // the common case: a plain fp32 tensor (host is little-endian)
      if (numel > 0) std::memcpy(out.data.data(), bytes.data() + t.i * esize, static_cast<size_t>(numel) * 4);
      return out;
    }
    std::vector<int64_t> idx(nd, 0);
    int64_t src = t.i;
    for (int64_t k = 0; k < numel; ++k) {  // C-order walk over the view, an odometer over the strides
      out.data[k] = elem_to_float(elem, bytes.data() + src * esize);
      for (size_t d = nd; d-- > 0;) {
        if (++idx[d] < t.size[d]) {
          src += t.stride[d];
          break;
        }
        src -= (t.size[d] - 1) * t.stride[d];
        idx[d] = 0;
      }
    }
    return out;
  }

 private:
  const std::vector<uint8_t>& storage(const std::string& key, const std::string& what) {
    auto it = m_cache.find(key);
    if (it != m_cache.end()) return it->second;
    std::string entry = m_prefix + "data/" + key;
    DEX_INPUT_CHECK(m_zip.find(entry), what, ": the archive has no storage record ", entry);
    return m_cache.emplace(key, m_zip.read(entry)).first->second;
  }

  const ZipArchive& m_zip;
  std::string m_prefix, m_path;
  std::map<std::string, std::vector<uint8_t>> m_cache;
};

const Value* dict_get(const Value& d, const std::string& key) {
  const Value* found = nullptr;
  for (size_t k = 0; k < d.items.size(); k += 2)
    if (d.items[k]->kind == Kind::String && d.items[k]->s == key) found = d.items[k + 1].get();  // last one wins
  return found;
}

std::string list_keys(const Value& d) {
  std::string s;
  for (size_t k = 0; k < d.items.size() && k < 20; k += 2)
    s += (k ? ", " : "") + (d.items[k]->kind == Kind::String ? "'" + d.items[k]->s + "'" : describe(*d.items[k]));
  if (d.items.size() > 20) s += ", ...";
  return s;
}

}  // namespace

StateDict load_torch_checkpoint(const std::string& path) {
  {
    std::error_code ec;
    DEX_INPUT_CHECK(!std::filesystem::is_directory(path, ec), "model file ", path, " is a directory");
    std::ifstream f(path, std::ios::binary);
    DEX_INPUT_CHECK(f, "cannot open model file ", path);
    uint8_t magic[4] = {0, 0, 0, 0};
    f.read(reinterpret_cast<char*>(magic), 4);
    bool zip = magic[0] == 'P' && magic[1] == 'K' && (magic[2] == 3 || magic[2] == 5);
    DEX_INPUT_CHECK(zip || magic[0] != 0x80, path, " is a pre-1.6 (legacy, non-zip) torch.save file, which dex does not "
                    "read; re-save it with a current torch: torch.save(torch.load(f), f)");
    DEX_INPUT_CHECK(zip, path, " is not a torch.save checkpoint (no zip signature at the start)");
  }
  ZipArchive zip(path);
  std::string prefix;
  bool found = false;
  for (const auto& kv : zip.entries()) {
    const std::string& n = kv.first;
    size_t slash = n.find('/');
    if (slash != std::string::npos && n.compare(slash, std::string::npos, "/data.pkl") == 0) {
      prefix = n.substr(0, slash + 1);
      found = true;
      break;
    }
  }
  bool torchscript = false;
  for (const auto& kv : zip.entries())
    torchscript = torchscript || (kv.first.size() > prefix.size() && kv.first.compare(0, prefix.size(), prefix) == 0 &&
                                  (kv.first.compare(prefix.size(), std::string::npos, "constants.pkl") == 0 ||
                                   kv.first.compare(prefix.size(), 5, "code/") == 0));
  DEX_INPUT_CHECK(!torchscript, path, " is a TorchScript archive (torch.jit.save), not a torch.save state_dict; "
                  "save model.state_dict() with torch.save");
  DEX_INPUT_CHECK(found, path, " is a zip archive without <archive>/data.pkl: not a torch.save checkpoint");
  if (zip.find(prefix + "byteorder")) {
    std::vector<uint8_t> b = zip.read(prefix + "byteorder");
    DEX_INPUT_CHECK(std::string(b.begin(), b.end()) == "little", path, ": big-endian checkpoints are not supported");
  }

  std::vector<uint8_t> pkl = zip.read(prefix + "data.pkl");
  Unpickler up(pkl, path + ": " + prefix + "data.pkl");
  struct Releaser {  // drops the value graph without recursion, also when an error is thrown
    std::vector<ValuePtr> keep;
    ~Releaser() { release(keep); }
  } root;
  root.keep.push_back(up.run());

  // A dict with a 'model' (MONAI's CheckpointSaver) or 'state_dict' dict entry: that entry. Otherwise a dict
  // with at least one tensor is the state dict itself (a non-tensor entry in it is then reported by name).
  const Value* sd = root.keep[0].get();
  DEX_INPUT_CHECK(sd->kind == Kind::Dict, path, " holds ", describe(*sd),
                  ", not a state_dict (a pickled nn.Module? save model.state_dict() instead)");
  const Value* inner = nullptr;
  for (const char* key : {"model", "state_dict"}) {
    if ((inner = dict_get(*sd, key))) {
      DEX_INPUT_CHECK(inner->kind == Kind::Dict, path, ": '", key, "' holds ", describe(*inner), ", not a state_dict");
      break;
    }
  }
  bool any_tensor = false;
  for (size_t k = 1; k < sd->items.size(); k += 2) any_tensor = any_tensor || sd->items[k]->kind == Kind::Tensor;
  DEX_INPUT_CHECK(inner || any_tensor || sd->items.empty(), path, ": a dict with keys [", list_keys(*sd),
                  "] is neither a state_dict (str -> tensor) nor a checkpoint with a 'model' or 'state_dict' entry");
  if (inner) sd = inner;
  TensorBuilder builder(zip, prefix, path);
  StateDict out;
  std::map<const Value*, std::string> built;  // the same tensor object under two keys (MONAI's aliases): copy it
  for (size_t k = 0; k < sd->items.size(); k += 2) {
    const Value& key = *sd->items[k];
    const Value& v = *sd->items[k + 1];
    DEX_INPUT_CHECK(key.kind == Kind::String, path, ": a state_dict key is ", describe(key), ", not a string");
    DEX_INPUT_CHECK(v.kind == Kind::Tensor, path, ": state_dict entry '", key.s, "' is ", describe(v), ", not a tensor");
    DEX_INPUT_CHECK(!out.count(key.s), path, ": state_dict key '", key.s, "' appears twice");
    auto same = built.find(&v);
    if (same != built.end()) {
      NamedTensor copy = out.at(same->second);
      out[key.s] = std::move(copy);
    } else {
      out[key.s] = builder.build(v, key.s);
      built[&v] = key.s;
    }
  }
  return out;
}

StateDict load_model_file(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::error_code ec;
  DEX_INPUT_CHECK(!std::filesystem::is_directory(path, ec), "model file ", path, " is a directory");
  std::ifstream f(path, std::ios::binary);
  DEX_INPUT_CHECK(f, "cannot open model file ", path);
  unsigned char magic[2] = {0, 0};
  f.read(reinterpret_cast<char*>(magic), 2);
  f.close();
  auto ends_with = [&](const std::string& ext) {
    return path.size() >= ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
  };
  StateDict sd;
  if (magic[0] == 'P' && magic[1] == 'K') {
    sd = load_torch_checkpoint(path);
  } else if (is_safetensors_file(path) || ends_with(".safetensors")) {
    sd = load_safetensors(path, metadata);  // a damaged .safetensors file gets that reader's detailed error
  } else if (magic[0] == 0x80) {
    sd = load_torch_checkpoint(path);  // a legacy torch.save pickle: its error says how to convert it
  } else {
    throw InputError(str(path, " is neither a safetensors file nor a torch.save checkpoint (zip)"));
  }
  canonicalize_dynunet_names(sd);
  return sd;
}

}  // namespace dex
