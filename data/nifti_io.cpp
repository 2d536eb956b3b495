// NIfTI reading and writing. Reading: the header is read and validated here (dims, datatype/bitpix, offsets, voxel
// count, bytes available) before nifti_clib is asked to allocate and read anything; nifti_clib then reads the header
// and voxels (byte swapping, gzip) and supplies the qform matrix. Writing: nifti_clib builds the header from a
// nifti_image; the bytes are written here with every error checked, to a temporary name, then renamed.
#include "data/nifti_io.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

#include "kernels/common.h"

extern "C" {
#include <nifti2_io.h>
}

namespace dex {
namespace {

constexpr int64_t kMaxVoxels = int64_t(1) << 30;  // 1 Gi voxels (4 GiB as float32): far beyond any CT
constexpr int64_t kMaxDim = 1 << 16;
// deflate cannot compress better than about 1032:1; a header asking for more data than that is lying.
constexpr int64_t kMaxDeflateRatio = 1100;

void quiet_nifti() {
  static std::once_flag once;
  std::call_once(once, [] { nifti_set_debug_level(0); });  // nifti_clib prints to stderr at level >= 1
}

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

bool is_gz_name(const std::string& path) { return ends_with_ci(path, ".gz"); }

template <class T>
T get(const unsigned char* buf, size_t off, bool swap) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, buf + off, sizeof(T));
  if (swap) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

int datatype_size(int dt) {
  switch (dt) {
    case DT_INT8: case DT_UINT8: return 1;
    case DT_INT16: case DT_UINT16: return 2;
    case DT_INT32: case DT_UINT32: case DT_FLOAT32: return 4;
    case DT_INT64: case DT_UINT64: case DT_FLOAT64: return 8;
    default: return 0;
  }
}

const char* datatype_label(int dt) {
  switch (dt) {
    case DT_INT8: return "int8";
    case DT_UINT8: return "uint8";
    case DT_INT16: return "int16";
    case DT_UINT16: return "uint16";
    case DT_INT32: return "int32";
    case DT_UINT32: return "uint32";
    case DT_INT64: return "int64";
    case DT_UINT64: return "uint64";
    case DT_FLOAT32: return "float32";
    case DT_FLOAT64: return "float64";
    default: return "unsupported";
  }
}

// What the validation learns from the raw header bytes.
struct RawHeader {
  int version = 1;
  int64_t dim[8]{};
  int datatype = 0;
  int64_t vox_offset = 0;
  int64_t nvox = 0;
  int64_t data_bytes = 0;
};

// An open NIfTI byte stream: gzip (by name) or plain.
class ByteSource {
 public:
  ByteSource(const std::string& path, bool gz) : m_path(path), m_gz(gz) {
    if (gz) {
      m_g = gzopen(path.c_str(), "rb");
      DEX_INPUT_CHECK(m_g != nullptr, path, ": cannot open");
      gzbuffer(m_g, 1 << 18);
    } else {
      m_f = std::fopen(path.c_str(), "rb");
      DEX_INPUT_CHECK(m_f != nullptr, path, ": cannot open (", std::strerror(errno), ")");
    }
  }
  ~ByteSource() {
    if (m_g) gzclose(m_g);
    if (m_f) std::fclose(m_f);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;
  // Reads up to n bytes; returns how many. A corrupt gzip stream is an InputError.
  int64_t read(unsigned char* dst, int64_t n) {
    int64_t got = 0;
    while (got < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - got, int64_t(1) << 30));
      int64_t r;
      if (m_gz) {
        const int k = gzread(m_g, dst + got, chunk);
        if (k < 0) {
          int err = 0;
          const char* msg = gzerror(m_g, &err);
          throw InputError(str(m_path, ": corrupt gzip stream (", msg ? msg : "?", ")"));
        }
        r = k;
        if (k < static_cast<int>(chunk)) {
          int err = Z_OK;
          gzerror(m_g, &err);  // zlib reports a stream cut short only here (Z_BUF_ERROR), not in gzread's result
          DEX_INPUT_CHECK(err == Z_OK, m_path, ": truncated or corrupt gzip stream (unexpected end of file)");
        }
      } else {
        r = static_cast<int64_t>(std::fread(dst + got, 1, chunk, m_f));
      }
      if (r == 0) break;
      got += r;
    }
    return got;
  }
  // Reads to the end of the stream so gzip's CRC and length are verified.
  void drain() {
    if (!m_gz) return;
    std::vector<unsigned char> scratch(1 << 16);
    while (read(scratch.data(), static_cast<int64_t>(scratch.size())) > 0) {
    }
  }

 private:
  std::string m_path;
  bool m_gz;
  gzFile m_g = nullptr;
  FILE* m_f = nullptr;
};

// Checks the file name and gzip-ness, opens it and validates the header bytes before anything big is allocated.
RawHeader validate_header(const std::string& path, ByteSource** src_out, std::vector<unsigned char>* head_out) {
  struct stat st {};
  DEX_INPUT_CHECK(stat(path.c_str(), &st) == 0, path, ": file not found");
  DEX_INPUT_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  DEX_INPUT_CHECK(ends_with_ci(path, ".nii") || ends_with_ci(path, ".nii.gz"), path,
                  ": not a NIfTI file name (expected .nii or .nii.gz)");
  const bool gz = is_gz_name(path);
  const int64_t file_size = static_cast<int64_t>(st.st_size);
  {
    FILE* f = std::fopen(path.c_str(), "rb");
    DEX_INPUT_CHECK(f != nullptr, path, ": cannot open (", std::strerror(errno), ")");
    unsigned char magic[2] = {0, 0};
    size_t m = std::fread(magic, 1, 2, f);
    std::fclose(f);
    const bool looks_gz = m == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    DEX_INPUT_CHECK(!(looks_gz && !gz), path, ": file is gzip-compressed but its name does not end in .gz");
    DEX_INPUT_CHECK(!(gz && !looks_gz), path, ": name ends in .gz but the file is not gzip-compressed");
  }
  auto src = std::make_unique<ByteSource>(path, gz);
  std::vector<unsigned char> head(540, 0);
  const int64_t got = src->read(head.data(), 540);
  unsigned char* buf = head.data();
  DEX_INPUT_CHECK(got >= 348, path, gz ? ": truncated gzip stream or not a NIfTI file (only " : ": not a NIfTI file (only ",
                  got, " bytes, a header needs 348)");

  RawHeader h;
  const int32_t s_le = get<int32_t>(buf, 0, false), s_be = get<int32_t>(buf, 0, true);
  bool swap = false;
  if (s_le == 348 || s_be == 348) {
    h.version = 1;
    swap = s_le != 348;
  } else if (s_le == 540 || s_be == 540) {
    h.version = 2;
    swap = s_le != 540;
  } else {
    throw InputError(str(path, ": not a NIfTI file (sizeof_hdr is ", s_le, ", expected 348 or 540)"));
  }
  double pixdim[4] = {0, 0, 0, 0};
  if (h.version == 1) {
    const char* magic = reinterpret_cast<const char*>(buf + 344);
    DEX_INPUT_CHECK(std::memcmp(magic, "n+1\0", 4) == 0, path,
                    ": not a single-file NIfTI-1 image (magic is not \"n+1\"; .hdr/.img pairs and ANALYZE are not supported)");
    for (int i = 0; i < 8; ++i) h.dim[i] = get<int16_t>(buf, 40 + 2 * i, swap);
    h.datatype = get<int16_t>(buf, 70, swap);
    const int bitpix = get<int16_t>(buf, 72, swap);
    for (int i = 1; i <= 3; ++i) pixdim[i] = get<float>(buf, 76 + 4 * i, swap);
    const float vo = get<float>(buf, 108, swap);
    DEX_INPUT_CHECK(std::isfinite(vo) && vo >= 0 && vo < 1e9f, path, ": bad vox_offset ", vo);
    h.vox_offset = static_cast<int64_t>(vo);
    DEX_INPUT_CHECK(datatype_size(h.datatype) > 0, path, ": unsupported datatype code ", h.datatype,
                    " (supported: int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64)");
    DEX_INPUT_CHECK(bitpix == 8 * datatype_size(h.datatype), path, ": bitpix ", bitpix, " does not match datatype ",
                    datatype_label(h.datatype));
  } else {
    DEX_INPUT_CHECK(got >= 540, path, ": truncated NIfTI-2 header (", got, " of 540 bytes)");
    DEX_INPUT_CHECK(std::memcmp(buf + 4, "n+2\0", 4) == 0, path, ": not a single-file NIfTI-2 image (magic is not \"n+2\")");
    h.datatype = get<int16_t>(buf, 12, swap);
    const int bitpix = get<int16_t>(buf, 14, swap);
    for (int i = 0; i < 8; ++i) h.dim[i] = get<int64_t>(buf, 16 + 8 * i, swap);
    for (int i = 1; i <= 3; ++i) pixdim[i] = get<double>(buf, 104 + 8 * i, swap);
    h.vox_offset = get<int64_t>(buf, 168, swap);
    DEX_INPUT_CHECK(h.vox_offset >= 0 && h.vox_offset < 1000000000, path, ": bad vox_offset ", h.vox_offset);
    DEX_INPUT_CHECK(datatype_size(h.datatype) > 0, path, ": unsupported datatype code ", h.datatype,
                    " (supported: int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64)");
    DEX_INPUT_CHECK(bitpix == 8 * datatype_size(h.datatype), path, ": bitpix ", bitpix, " does not match datatype ",
                    datatype_label(h.datatype));
  }
  const int64_t hdr_size = h.version == 1 ? 348 : 540;
  DEX_INPUT_CHECK(h.vox_offset >= hdr_size, path, ": vox_offset ", h.vox_offset, " lies inside the ", hdr_size,
                  "-byte header");
  const int64_t ndim = h.dim[0];
  DEX_INPUT_CHECK(ndim >= 1 && ndim <= 7, path, ": bad number of dimensions dim[0] = ", ndim);
  DEX_INPUT_CHECK(ndim >= 3, path, ": a ", ndim, "D image; dex needs a 3D volume");
  int64_t nvox = 1;
  for (int i = 1; i <= ndim; ++i) {
    DEX_INPUT_CHECK(h.dim[i] >= 1 && h.dim[i] <= kMaxDim, path, ": dimension ", i, " has absurd size ", h.dim[i]);
    nvox *= h.dim[i];
    DEX_INPUT_CHECK(nvox <= kMaxVoxels, path, ": absurd image size (more than ", kMaxVoxels, " voxels)");
  }
  for (int i = 4; i <= ndim; ++i)
    DEX_INPUT_CHECK(h.dim[i] == 1, path, ": a ", ndim, "D image with ", h.dim[i],
                    " entries along dimension ", i, "; dex reads 3D volumes (or 4D with a single volume)");
  for (int i = 1; i <= 3; ++i)
    DEX_INPUT_CHECK(std::isfinite(pixdim[i]) && pixdim[i] != 0, path, ": voxel spacing pixdim[", i, "] is ",
                    pixdim[i], "; it must be a non-zero number");
  h.nvox = nvox;
  h.data_bytes = nvox * datatype_size(h.datatype);
  const int64_t need = h.vox_offset + h.data_bytes;
  if (!gz) {
    DEX_INPUT_CHECK(file_size >= need, path, ": truncated (header needs ", need, " bytes, file has ", file_size, ")");
  } else {
    DEX_INPUT_CHECK(need <= file_size * kMaxDeflateRatio + 65536, path, ": header asks for ", need,
                    " bytes, impossible from a ", file_size, "-byte gzip file (truncated or corrupt)");
  }
  head.resize(static_cast<size_t>(got));
  *head_out = std::move(head);
  *src_out = src.release();
  return h;
}

struct NimDeleter {
  void operator()(nifti_image* p) const { nifti_image_free(p); }
};
using NimPtr = std::unique_ptr<nifti_image, NimDeleter>;

Mat4 to_mat4(const nifti_dmat44& m) {
  Mat4 r{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) r[i][j] = m.m[i][j];
  return r;
}

NiftiMeta meta_from_nim(const nifti_image* nim, const std::string& path, int version) {
  NiftiMeta m;
  m.nifti_version = version;
  m.shape = {nim->nx, nim->ny, nim->nz};
  m.datatype = nim->datatype;
  m.spacing = {std::fabs(nim->dx), std::fabs(nim->dy), std::fabs(nim->dz)};
  for (int a = 0; a < 3; ++a)
    DEX_INPUT_CHECK(std::isfinite(m.spacing[a]) && m.spacing[a] > 0, path, ": voxel spacing (pixdim[", a + 1,
                    "]) is ", m.spacing[a], "; it must be a positive number");
  m.sform_code = nim->sform_code;
  m.qform_code = nim->qform_code;
  m.sform = to_mat4(nim->sto_xyz);
  m.qform = to_mat4(nim->qto_xyz);
  m.quatern = {nim->quatern_b, nim->quatern_c, nim->quatern_d, nim->qoffset_x, nim->qoffset_y, nim->qoffset_z};
  m.qfac = nim->qfac;
  m.xyz_units = nim->xyz_units;
  m.time_units = nim->time_units;
  m.scl_slope = nim->scl_slope;
  m.scl_inter = nim->scl_inter;
  if (m.sform_code > 0) {
    m.affine = m.sform;
  } else if (m.qform_code > 0) {
    m.affine = m.qform;
  } else {
    m.affine = mat4_identity();
    for (int a = 0; a < 3; ++a) m.affine[a][a] = m.spacing[a];
  }
  double scale = 0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) {
      DEX_INPUT_CHECK(std::isfinite(m.affine[i][j]), path, ": the affine (",
                      m.sform_code > 0 ? "sform" : "qform", ") has a non-finite entry");
      if (j < 3) scale = std::max(scale, std::fabs(m.affine[i][j]));
    }
  const auto& A = m.affine;
  const double det = A[0][0] * (A[1][1] * A[2][2] - A[1][2] * A[2][1]) -
                     A[0][1] * (A[1][0] * A[2][2] - A[1][2] * A[2][0]) +
                     A[0][2] * (A[1][0] * A[2][1] - A[1][1] * A[2][0]);
  DEX_INPUT_CHECK(scale > 0 && std::fabs(det) > 1e-9 * scale * scale * scale, path,
                  ": the affine (", m.sform_code > 0 ? "sform" : (m.qform_code > 0 ? "qform" : "pixdim"),
                  ") is not invertible");
  return m;
}

template <class S>
void convert_transpose(const S* src, int64_t nx, int64_t ny, int64_t nz, double slope, double inter, bool scale,
                       float* dst) {
  // src: i fastest (i + nx*(j + ny*k)); dst: C order ((i*ny + j)*nz + k). Blocks of kB slices keep both the reads
  // (kB rows along i) and the writes (kB consecutive k) in cache.
  constexpr int64_t kB = 16;
  for (int64_t k0 = 0; k0 < nz; k0 += kB) {
    const int64_t k1 = std::min(nz, k0 + kB);
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        float* out = dst + (i * ny + j) * nz;
        for (int64_t k = k0; k < k1; ++k) {
          const S v = src[i + nx * (j + ny * k)];
          out[k] = scale ? static_cast<float>(static_cast<double>(v) * slope + inter) : static_cast<float>(v);
        }
      }
  }
}

// The whole file in memory (header validated first): nifti_clib converts the header (byte order, qform), the voxel
// bytes are taken from the buffer. Reading everything here gives one pass, gzip CRC verification and no file access
// inside nifti_clib (which would print to stderr and guess at alternative file names).
struct LoadedFile {
  RawHeader h;
  NimPtr nim;
  std::vector<unsigned char> header;  // the first bytes of the file (at least the header)
  std::vector<unsigned char> voxels;  // the voxel bytes, in their own (aligned) allocation
  const void* data() const { return voxels.data(); }
};

LoadedFile load_file(const std::string& path, bool with_data) {
  quiet_nifti();
  LoadedFile lf;
  ByteSource* raw = nullptr;
  lf.h = validate_header(path, &raw, &lf.header);
  std::unique_ptr<ByteSource> src(raw);
  const RawHeader& h = lf.h;
  if (with_data) {
    // The header read may already hold the extension bytes and the start of the voxels.
    const int64_t have = static_cast<int64_t>(lf.header.size());
    lf.voxels.resize(static_cast<size_t>(h.data_bytes));
    int64_t filled = 0;
    if (have > h.vox_offset) {
      filled = std::min(have - h.vox_offset, h.data_bytes);
      std::memcpy(lf.voxels.data(), lf.header.data() + h.vox_offset, static_cast<size_t>(filled));
    } else if (have < h.vox_offset) {
      std::vector<unsigned char> skip(static_cast<size_t>(h.vox_offset - have));
      const int64_t got = src->read(skip.data(), h.vox_offset - have);
      DEX_INPUT_CHECK(got == h.vox_offset - have, path, ": truncated before the voxel data (vox_offset ", h.vox_offset,
                      ")");
    }
    const int64_t got = filled < h.data_bytes ? src->read(lf.voxels.data() + filled, h.data_bytes - filled) : 0;
    DEX_INPUT_CHECK(filled + got == h.data_bytes, path, ": truncated (the header needs ", h.vox_offset + h.data_bytes,
                    " bytes, the ", is_gz_name(path) ? "gzip stream" : "file", " holds ",
                    h.vox_offset + filled + got, ")");
    src->drain();
  }
  if (h.version == 1) {
    nifti_1_header h1;
    std::memcpy(&h1, lf.header.data(), sizeof h1);
    lf.nim.reset(nifti_convert_n1hdr2nim(h1, path.c_str()));
  } else {
    nifti_2_header h2;
    std::memcpy(&h2, lf.header.data(), sizeof h2);
    lf.nim.reset(nifti_convert_n2hdr2nim(h2, path.c_str()));
  }
  DEX_INPUT_CHECK(lf.nim != nullptr, path, ": nifti_clib rejects the header");
  nifti_image* nim = lf.nim.get();
  DEX_INPUT_CHECK(nim->nx == h.dim[1] && nim->ny == h.dim[2] && nim->nz == h.dim[3] && nim->nvox == h.nvox &&
                      nim->datatype == h.datatype,
                  path, ": inconsistent header");
  if (with_data && nim->byteorder != nifti_short_order() && nim->swapsize > 1)
    nifti_swap_Nbytes(h.nvox, nim->swapsize, lf.voxels.data());
  return lf;
}

Volume read_impl(const std::string& path, NiftiMeta* meta_out) {
  LoadedFile lf = load_file(path, true);
  const RawHeader& h = lf.h;
  nifti_image* nim = lf.nim.get();
  NiftiMeta meta = meta_from_nim(nim, path, h.version);

  Volume v;
  v.shape = meta.shape;
  v.affine = meta.affine;
  v.data.resize(static_cast<size_t>(h.nvox));
  double slope = nim->scl_slope, inter = nim->scl_inter;
  const bool scale = std::isfinite(slope) && slope != 0.0;
  if (!std::isfinite(inter)) inter = 0;
  const int64_t nx = nim->nx, ny = nim->ny, nz = nim->nz;
  const void* d = lf.data();
  float* out = v.data.data();
  switch (nim->datatype) {
    case DT_INT8: convert_transpose(static_cast<const int8_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_UINT8: convert_transpose(static_cast<const uint8_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_INT16: convert_transpose(static_cast<const int16_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_UINT16: convert_transpose(static_cast<const uint16_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_INT32: convert_transpose(static_cast<const int32_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_UINT32: convert_transpose(static_cast<const uint32_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_INT64: convert_transpose(static_cast<const int64_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_UINT64: convert_transpose(static_cast<const uint64_t*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_FLOAT32: convert_transpose(static_cast<const float*>(d), nx, ny, nz, slope, inter, scale, out); break;
    case DT_FLOAT64: convert_transpose(static_cast<const double*>(d), nx, ny, nz, slope, inter, scale, out); break;
    default: throw InputError(str(path, ": unsupported datatype code ", nim->datatype));
  }
  for (int64_t i = 0; i < h.nvox; ++i) {
    if (!std::isfinite(out[i])) {
      const int64_t c = i;
      throw InputError(str(path, ": voxel (", c / (ny * nz), ",", (c / nz) % ny, ",", c % nz, ") is ", out[i],
                           "; images must not contain NaN or infinite values"));
    }
  }
  if (meta_out) *meta_out = meta;
  return v;
}

std::string temp_name_for(const std::string& path) {
  static std::atomic<int> counter{0};
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  // Keep the extension so anything keyed on it (gzip) sees the same name shape.
  return str(dir, ".", base, ".tmp", static_cast<long>(getpid()), "_", counter++, is_gz_name(path) ? ".gz" : "");
}

void check_output_path(const std::string& path) {
  DEX_INPUT_CHECK(!path.empty(), "output path is empty");
  DEX_INPUT_CHECK(ends_with_ci(path, ".nii") || ends_with_ci(path, ".nii.gz"), path,
                  ": output name must end in .nii or .nii.gz");
  const size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    struct stat st {};
    DEX_INPUT_CHECK(stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), path, ": output folder ", dir,
                    " does not exist");
  }
}

bool same_affine(const Mat4& a, const Mat4& b) {
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      if (a[i][j] != b[i][j]) return false;
  return true;
}

// Builds the nifti_image header fields for shape/affine/like (no data attached).
NimPtr make_header(const std::array<int64_t, 3>& shape, const Mat4& affine, int datatype, const NiftiMeta* like) {
  int64_t dims[8] = {3, shape[0], shape[1], shape[2], 1, 1, 1, 1};
  NimPtr nim(nifti_make_new_nim(dims, datatype, 0));
  DEX_CHECK(nim != nullptr, "nifti_make_new_nim failed");
  nifti_dmat44 R;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) R.m[i][j] = affine[i][j];
  double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
  nifti_dmat44_to_quatern(R, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
  nim->quatern_b = qb; nim->quatern_c = qc; nim->quatern_d = qd;
  nim->qoffset_x = qx; nim->qoffset_y = qy; nim->qoffset_z = qz;
  nim->qfac = qfac;
  nim->dx = nim->pixdim[1] = dx;
  nim->dy = nim->pixdim[2] = dy;
  nim->dz = nim->pixdim[3] = dz;
  nim->sto_xyz = R;
  nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
  nim->xyz_units = NIFTI_UNITS_MM;
  nim->time_units = NIFTI_UNITS_SEC;
  if (like) {
    nim->xyz_units = like->xyz_units;
    nim->time_units = like->time_units;
    if (same_affine(affine, like->affine)) {
      // The input's own geometry: copy what was stored, field for field.
      nim->sform_code = like->sform_code;
      nim->qform_code = like->qform_code;
      nim->dx = nim->pixdim[1] = like->spacing[0];
      nim->dy = nim->pixdim[2] = like->spacing[1];
      nim->dz = nim->pixdim[3] = like->spacing[2];
      if (like->sform_code > 0)
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) nim->sto_xyz.m[i][j] = like->sform[i][j];
      if (like->qform_code > 0) {
        nim->quatern_b = like->quatern[0]; nim->quatern_c = like->quatern[1]; nim->quatern_d = like->quatern[2];
        nim->qoffset_x = like->quatern[3]; nim->qoffset_y = like->quatern[4]; nim->qoffset_z = like->quatern[5];
        nim->qfac = like->qfac;
      }
    } else if (like->sform_code > 0 || like->qform_code > 0) {
      nim->sform_code = like->sform_code > 0 ? like->sform_code : NIFTI_XFORM_SCANNER_ANAT;
      nim->qform_code = like->qform_code > 0 ? like->qform_code : 0;
    }
  }
  nim->qto_xyz = nifti_quatern_to_dmat44(nim->quatern_b, nim->quatern_c, nim->quatern_d, nim->qoffset_x,
                                         nim->qoffset_y, nim->qoffset_z, nim->dx, nim->dy, nim->dz, nim->qfac);
  nim->scl_slope = 0;
  nim->scl_inter = 0;
  return nim;
}

// Writes header + a 4-byte empty extension block + voxel bytes, every call checked; then renames into place.
void write_file(const std::string& path, const nifti_image* nim, int version, const void* data, size_t nbytes) {
  std::vector<unsigned char> hdr;
  if (version == 2) {
    nifti_2_header h2;
    DEX_CHECK(nifti_convert_nim2n2hdr(nim, &h2) == 0, "cannot build a NIfTI-2 header for ", path);
    h2.vox_offset = 544;
    std::memcpy(h2.magic, "n+2\0\r\n\032\n", 8);
    hdr.resize(sizeof h2);
    std::memcpy(hdr.data(), &h2, sizeof h2);
  } else {
    nifti_1_header h1;
    DEX_INPUT_CHECK(nifti_convert_nim2n1hdr(nim, &h1) == 0, path,
                    ": cannot build a NIfTI-1 header (dimension over 32767?)");
    h1.vox_offset = 352;
    std::memcpy(h1.magic, "n+1\0", 4);
    hdr.resize(sizeof h1);
    std::memcpy(hdr.data(), &h1, sizeof h1);
  }
  const unsigned char ext[4] = {0, 0, 0, 0};
  const std::string tmp = temp_name_for(path);
  bool ok = true;
  if (is_gz_name(path)) {
    gzFile g = gzopen(tmp.c_str(), "wb1");  // level 1, like nibabel's default
    DEX_INPUT_CHECK(g != nullptr, path, ": cannot create ", tmp);
    ok = gzwrite(g, hdr.data(), static_cast<unsigned>(hdr.size())) == static_cast<int>(hdr.size()) &&
         gzwrite(g, ext, 4) == 4;
    const unsigned char* p = static_cast<const unsigned char*>(data);
    size_t left = nbytes;
    while (ok && left > 0) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(left, size_t(1) << 30));
      ok = gzwrite(g, p, chunk) == static_cast<int>(chunk);
      p += chunk;
      left -= chunk;
    }
    ok = (gzclose(g) == Z_OK) && ok;
  } else {
    FILE* f = std::fopen(tmp.c_str(), "wb");
    DEX_INPUT_CHECK(f != nullptr, path, ": cannot create ", tmp, " (", std::strerror(errno), ")");
    ok = std::fwrite(hdr.data(), 1, hdr.size(), f) == hdr.size() && std::fwrite(ext, 1, 4, f) == 4 &&
         std::fwrite(data, 1, nbytes, f) == nbytes;
    ok = (std::fclose(f) == 0) && ok;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    throw InputError(str(path, ": write failed (disk full or no permission?)"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw InputError(str(path, ": cannot rename the temporary file into place (", why, ")"));
  }
}

template <class S, class T>
std::vector<S> to_nifti_order(const VolumeT<T>& v) {
  const int64_t nx = v.shape[0], ny = v.shape[1], nz = v.shape[2];
  std::vector<S> out(static_cast<size_t>(v.size()));
  constexpr int64_t kB = 16;  // blocks of slices, as in convert_transpose
  for (int64_t k0 = 0; k0 < nz; k0 += kB) {
    const int64_t k1 = std::min(nz, k0 + kB);
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) {
        const T* in = v.data.data() + (i * ny + j) * nz;
        for (int64_t k = k0; k < k1; ++k) out[i + nx * (j + ny * k)] = static_cast<S>(in[k]);
      }
  }
  return out;
}

}  // namespace

NiftiMeta read_nifti_header(const std::string& path) {
  LoadedFile lf = load_file(path, false);
  return meta_from_nim(lf.nim.get(), path, lf.h.version);
}

Volume read_nifti(const std::string& path, NiftiMeta* meta) { return read_impl(path, meta); }

LabelVolume read_nifti_labels(const std::string& path, NiftiMeta* meta) {
  Volume f = read_impl(path, meta);
  LabelVolume l;
  l.shape = f.shape;
  l.affine = f.affine;
  l.data.resize(f.data.size());
  for (size_t i = 0; i < f.data.size(); ++i) {
    const float v = f.data[i];
    const float r = std::nearbyint(v);
    if (!(std::fabs(v - r) <= 1e-3f && r >= 0 && r <= 255)) {
      const int64_t c = static_cast<int64_t>(i);
      throw InputError(str(path, ": label voxel (", c / (f.shape[1] * f.shape[2]), ",", (c / f.shape[2]) % f.shape[1],
                           ",", c % f.shape[2], ") is ", v, "; labels must be integers in [0, 255]"));
    }
    l.data[i] = static_cast<uint8_t>(r);
  }
  return l;
}

void write_nifti(const std::string& path, const Volume& v, NiftiDType dt, const NiftiMeta* like) {
  check_output_path(path);
  DEX_CHECK(static_cast<int64_t>(v.data.size()) == v.size() && v.size() > 0, "write_nifti: volume data size ",
            v.data.size(), " does not match its shape");
  const int version = like ? like->nifti_version : 1;
  switch (dt) {
    case NiftiDType::F32: {
      NimPtr nim = make_header(v.shape, v.affine, DT_FLOAT32, like);
      auto buf = to_nifti_order<float>(v);
      write_file(path, nim.get(), version, buf.data(), buf.size() * sizeof(float));
      break;
    }
    case NiftiDType::I16: {
      NimPtr nim = make_header(v.shape, v.affine, DT_INT16, like);
      VolumeT<float> r = v;
      for (auto& x : r.data) x = std::nearbyint(std::min(32767.f, std::max(-32768.f, x)));
      auto buf = to_nifti_order<int16_t>(r);
      write_file(path, nim.get(), version, buf.data(), buf.size() * sizeof(int16_t));
      break;
    }
    case NiftiDType::U8: {
      NimPtr nim = make_header(v.shape, v.affine, DT_UINT8, like);
      VolumeT<float> r = v;
      for (auto& x : r.data) x = std::nearbyint(std::min(255.f, std::max(0.f, x)));
      auto buf = to_nifti_order<uint8_t>(r);
      write_file(path, nim.get(), version, buf.data(), buf.size());
      break;
    }
  }
}

void write_nifti(const std::string& path, const LabelVolume& v, const NiftiMeta* like) {
  check_output_path(path);
  DEX_CHECK(static_cast<int64_t>(v.data.size()) == v.size() && v.size() > 0, "write_nifti: volume data size ",
            v.data.size(), " does not match its shape");
  NimPtr nim = make_header(v.shape, v.affine, DT_UINT8, like);
  auto buf = to_nifti_order<uint8_t>(v);
  write_file(path, nim.get(), like ? like->nifti_version : 1, buf.data(), buf.size());
}

}  // namespace dex
