// NIfTI reader/writer: every datatype, scaling, the affine rule, NIfTI-2, big-endian, gzip, 4D-with-one-volume,
// atomic writing, and a clean InputError for every kind of bad file (hand-built headers, so the reader is not only
// checked against its own writer). Also reads every fuzzer regression file.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/nifti_io.h"
#include "tests/testing.h"

namespace dex {
namespace {

namespace fs = std::filesystem;

std::string tmp_dir() {
  static const std::string d = [] {
    const std::string p = ::testing::TempDir() + "dex_nifti_test_" + std::to_string(getpid());
    fs::create_directories(p);
    return p;
  }();
  return d;
}
std::string tmp(const std::string& name) { return tmp_dir() + "/" + name; }

// A NIfTI-1 (or NIfTI-2) file built byte by byte.
struct RawNifti {
  int version = 1;
  bool big_endian = false;
  int64_t dim[8] = {3, 4, 3, 2, 1, 1, 1, 1};
  int datatype = 16, bitpix = 32;
  double pixdim[8] = {1, 0.8, 0.9, 2.5, 1, 1, 1, 1};
  double vox_offset = -1;  // default: header + 4
  double scl_slope = 0, scl_inter = 0;
  int qform_code = 0, sform_code = 0;
  double quatern[6] = {0, 0, 0, 0, 0, 0};
  double srow[3][4] = {{0.8, 0, 0, 1}, {0, 0.9, 0, 2}, {0, 0, 2.5, 3}};
  std::string magic;  // default n+1 / n+2
  std::vector<unsigned char> data;

  template <class T>
  void put(std::vector<unsigned char>& b, size_t off, T v) const {
    unsigned char c[sizeof(T)];
    std::memcpy(c, &v, sizeof(T));
    if (big_endian) std::reverse(c, c + sizeof(T));
    std::memcpy(b.data() + off, c, sizeof(T));
  }
  std::vector<unsigned char> bytes() const {
    const size_t hs = version == 1 ? 348 : 540;
    const size_t vo = vox_offset < 0 ? hs + 4 : static_cast<size_t>(vox_offset);
    std::vector<unsigned char> b(std::max(vo, hs + 4), 0);
    if (version == 1) {
      put<int32_t>(b, 0, 348);
      for (int i = 0; i < 8; ++i) put<int16_t>(b, 40 + 2 * i, static_cast<int16_t>(dim[i]));
      put<int16_t>(b, 70, static_cast<int16_t>(datatype));
      put<int16_t>(b, 72, static_cast<int16_t>(bitpix));
      for (int i = 0; i < 8; ++i) put<float>(b, 76 + 4 * i, static_cast<float>(pixdim[i]));
      put<float>(b, 108, static_cast<float>(vox_offset < 0 ? hs + 4 : vox_offset));
      put<float>(b, 112, static_cast<float>(scl_slope));
      put<float>(b, 116, static_cast<float>(scl_inter));
      b[123] = 10;  // xyzt_units: mm + s
      put<int16_t>(b, 252, static_cast<int16_t>(qform_code));
      put<int16_t>(b, 254, static_cast<int16_t>(sform_code));
      for (int i = 0; i < 6; ++i) put<float>(b, 256 + 4 * i, static_cast<float>(quatern[i]));
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) put<float>(b, 280 + 16 * r + 4 * c, static_cast<float>(srow[r][c]));
      std::memcpy(b.data() + 344, magic.empty() ? "n+1\0" : magic.c_str(), 4);
    } else {
      put<int32_t>(b, 0, 540);
      std::memcpy(b.data() + 4, magic.empty() ? std::string("n+2\0\r\n\032\n", 8).data() : magic.c_str(), 8);
      put<int16_t>(b, 12, static_cast<int16_t>(datatype));
      put<int16_t>(b, 14, static_cast<int16_t>(bitpix));
      for (int i = 0; i < 8; ++i) put<int64_t>(b, 16 + 8 * i, dim[i]);
      for (int i = 0; i < 8; ++i) put<double>(b, 104 + 8 * i, pixdim[i]);
      put<int64_t>(b, 168, static_cast<int64_t>(vox_offset < 0 ? hs + 4 : vox_offset));
      put<double>(b, 176, scl_slope);
      put<double>(b, 184, scl_inter);
      put<int32_t>(b, 344, qform_code);
      put<int32_t>(b, 348, sform_code);
      for (int i = 0; i < 6; ++i) put<double>(b, 352 + 8 * i, quatern[i]);
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) put<double>(b, 400 + 32 * r + 8 * c, srow[r][c]);
      put<int32_t>(b, 500, 2);  // xyzt_units: mm
    }
    b.insert(b.end(), data.begin(), data.end());
    return b;
  }
  // Voxel values v(i,j,k) stored in NIfTI order (i fastest) as type T.
  template <class T>
  void fill(double (*f)(int64_t, int64_t, int64_t)) {
    data.clear();
    int64_t n1 = dim[1], n2 = dim[2], n3 = dim[3];
    for (int64_t k = 0; k < n3; ++k)
      for (int64_t j = 0; j < n2; ++j)
        for (int64_t i = 0; i < n1; ++i) {
          T v = static_cast<T>(f(i, j, k));
          unsigned char c[sizeof(T)];
          std::memcpy(c, &v, sizeof(T));
          if (big_endian) std::reverse(c, c + sizeof(T));
          data.insert(data.end(), c, c + sizeof(T));
        }
  }
  std::string write(const std::string& name) const {
    const std::string path = tmp(name);
    const auto b = bytes();
    if (name.size() > 3 && name.substr(name.size() - 3) == ".gz") {
      gzFile g = gzopen(path.c_str(), "wb");
      gzwrite(g, b.data(), static_cast<unsigned>(b.size()));
      gzclose(g);
    } else {
      std::ofstream f(path, std::ios::binary);
      f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    }
    return path;
  }
};

double pattern(int64_t i, int64_t j, int64_t k) { return static_cast<double>(i * 11 + j * 3 + k * 29 % 17) - 20; }
double pattern_pos(int64_t i, int64_t j, int64_t k) { return static_cast<double>(i * 11 + j * 3 + k * 29 % 17); }

void expect_pattern(const Volume& v, double (*f)(int64_t, int64_t, int64_t), double slope = 1, double inter = 0) {
  ASSERT_EQ(v.shape, (std::array<int64_t, 3>{4, 3, 2}));
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 2; ++k)
        ASSERT_EQ(v.at(i, j, k), static_cast<float>(f(i, j, k) * slope + inter)) << i << "," << j << "," << k;
}

void expect_input_error(const std::string& path, const std::string& fragment) {
  try {
    read_nifti(path);
    FAIL() << "no error for " << path;
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << "message does not name the file: " << m;
    EXPECT_NE(m.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << m;
  }
}

TEST(NiftiIO, ReadsEveryCommonDatatypeInArrayOrder) {
  struct Case { int dt, bitpix; const char* name; };
  for (const Case c : {Case{256, 8, "int8"}, Case{2, 8, "uint8"}, Case{4, 16, "int16"}, Case{512, 16, "uint16"},
                       Case{8, 32, "int32"}, Case{16, 32, "float32"}, Case{64, 64, "float64"}}) {
    SCOPED_TRACE(c.name);
    RawNifti r;
    r.datatype = c.dt;
    r.bitpix = c.bitpix;
    const bool is_unsigned = c.dt == 2 || c.dt == 512;
    auto f = is_unsigned ? pattern_pos : pattern;
    switch (c.dt) {
      case 256: r.fill<int8_t>(f); break;
      case 2: r.fill<uint8_t>(f); break;
      case 4: r.fill<int16_t>(f); break;
      case 512: r.fill<uint16_t>(f); break;
      case 8: r.fill<int32_t>(f); break;
      case 16: r.fill<float>(f); break;
      case 64: r.fill<double>(f); break;
    }
    NiftiMeta m;
    const Volume v = read_nifti(r.write(std::string(c.name) + ".nii"), &m);
    expect_pattern(v, f);
    EXPECT_EQ(m.datatype, c.dt);
    EXPECT_EQ(m.nifti_version, 1);
  }
}

TEST(NiftiIO, ScaleSlopeAndInterceptApplied) {
  RawNifti r;
  r.datatype = 4;
  r.bitpix = 16;
  r.scl_slope = 2;
  r.scl_inter = -1024;
  r.fill<int16_t>(pattern);
  expect_pattern(read_nifti(r.write("scl.nii")), pattern, 2, -1024);
  r.scl_slope = 0;  // 0 = no scaling
  expect_pattern(read_nifti(r.write("scl0.nii")), pattern);
}

TEST(NiftiIO, AffineFollowsSformThenQformThenPixdim) {
  RawNifti r;
  r.fill<float>(pattern);
  // Codes 0: diag(pixdim).
  NiftiMeta m;
  read_nifti(r.write("aff0.nii"), &m);
  EXPECT_EQ(m.affine[0][0], double(0.8f));
  EXPECT_EQ(m.affine[1][1], double(0.9f));
  EXPECT_EQ(m.affine[2][2], 2.5);
  EXPECT_EQ(m.affine[0][3], 0.0);
  // qform: quaternion (0,0,1) = 180 degrees about z -> x and y flipped, offsets as given.
  r.qform_code = 1;
  r.quatern[2] = 1;
  r.quatern[3] = 10;
  r.quatern[4] = -20;
  r.quatern[5] = 30;
  read_nifti(r.write("affq.nii"), &m);
  EXPECT_NEAR(m.affine[0][0], -0.8, 1e-6);
  EXPECT_NEAR(m.affine[1][1], -0.9, 1e-6);
  EXPECT_NEAR(m.affine[2][2], 2.5, 1e-6);
  EXPECT_NEAR(m.affine[0][3], 10, 1e-6);
  EXPECT_NEAR(m.affine[1][3], -20, 1e-6);
  EXPECT_EQ(m.qform_code, 1);
  // sform wins when both are set.
  r.sform_code = 2;
  r.srow[0][1] = 0.1;
  read_nifti(r.write("affs.nii"), &m);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_EQ(m.affine[i][j], double(static_cast<float>(r.srow[i][j])));
  EXPECT_EQ(m.sform_code, 2);
}

TEST(NiftiIO, ReadsNifti2BigEndianGzipAnd4DSingleVolume) {
  RawNifti r2;
  r2.version = 2;
  r2.sform_code = 1;
  r2.fill<float>(pattern);
  NiftiMeta m;
  expect_pattern(read_nifti(r2.write("v2.nii"), &m), pattern);
  EXPECT_EQ(m.nifti_version, 2);
  EXPECT_EQ(m.affine[1][3], 2.0);

  RawNifti be;
  be.big_endian = true;
  be.datatype = 4;
  be.bitpix = 16;
  be.fill<int16_t>(pattern);
  expect_pattern(read_nifti(be.write("be.nii")), pattern);

  RawNifti g;
  g.dim[0] = 4;
  g.dim[4] = 1;
  g.fill<float>(pattern);
  expect_pattern(read_nifti(g.write("g4d.nii.gz")), pattern);
}

TEST(NiftiIO, WriteRoundTripKeepsGeometryAndIsAtomic) {
  RawNifti r;
  r.qform_code = 1;
  r.sform_code = 1;
  r.quatern[2] = 1;
  r.srow[0][0] = -0.8;
  r.srow[1][1] = -0.9;
  r.fill<float>(pattern);
  NiftiMeta in_meta;
  const Volume v = read_nifti(r.write("src.nii"), &in_meta);
  for (const std::string name : {"out_f32.nii.gz", "out_f32.nii"}) {
    write_nifti(tmp(name), v, NiftiDType::F32, &in_meta);
    NiftiMeta m;
    const Volume w = read_nifti(tmp(name), &m);
    EXPECT_EQ(w.shape, v.shape);
    EXPECT_EQ(w.data, v.data);
    EXPECT_EQ(m.affine, in_meta.affine);
    EXPECT_EQ(m.qform, in_meta.qform);
    EXPECT_EQ(m.sform_code, 1);
    EXPECT_EQ(m.qform_code, 1);
    EXPECT_EQ(m.spacing, in_meta.spacing);
    EXPECT_EQ(m.datatype, 16);
    const NiftiMeta h = read_nifti_header(tmp(name));  // header only: same geometry
    EXPECT_EQ(h.affine, in_meta.affine);
    EXPECT_EQ(h.shape, v.shape);
  }
  // Labels (uint8) and int16.
  LabelVolume l;
  l.shape = v.shape;
  l.affine = v.affine;
  for (int64_t i = 0; i < v.size(); ++i) l.data.push_back(static_cast<uint8_t>(i % 3));
  write_nifti(tmp("lab.nii.gz"), l, &in_meta);
  NiftiMeta lm;
  const LabelVolume l2 = read_nifti_labels(tmp("lab.nii.gz"), &lm);
  EXPECT_EQ(l2.data, l.data);
  EXPECT_EQ(lm.datatype, 2);
  EXPECT_EQ(lm.affine, in_meta.affine);
  write_nifti(tmp("i16.nii.gz"), v, NiftiDType::I16, &in_meta);
  EXPECT_EQ(read_nifti(tmp("i16.nii.gz")).data, v.data);  // pattern values are integers
  // Without `like`: the volume's own affine.
  Volume a = v;
  a.affine[0][3] = 5.5;
  a.affine[0][1] = 0.25;
  write_nifti(tmp("noli.nii"), a);
  const Volume b = read_nifti(tmp("noli.nii"));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(b.affine[i][j], a.affine[i][j], 1e-6);
  // No temporary files left behind; a missing folder is an error, not created.
  for (const auto& e : fs::directory_iterator(tmp_dir()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  EXPECT_THROW(write_nifti(tmp("no/such/folder/x.nii.gz"), v), InputError);
  EXPECT_FALSE(fs::exists(tmp("no")));
  EXPECT_THROW(write_nifti(tmp("bad_ext.img"), v), InputError);
}

TEST(NiftiIO, BadFilesAreInputErrorsNamingFileAndProblem) {
  expect_input_error(tmp("does_not_exist.nii.gz"), "not found");
  {
    std::ofstream(tmp("text.nii")) << "this is not a NIfTI file, but it is long enough to hold a header? no.";
    expect_input_error(tmp("text.nii"), "not a NIfTI");
  }
  RawNifti ok;
  ok.fill<float>(pattern);
  {  // truncated voxel data
    auto b = ok.bytes();
    b.resize(b.size() - 10);
    std::ofstream(tmp("trunc.nii"), std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
    expect_input_error(tmp("trunc.nii"), "truncated");
  }
  {  // truncated gzip stream
    const std::string p = ok.write("full.nii.gz");
    std::ifstream f(p, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::ofstream(tmp("trunc.nii.gz"), std::ios::binary).write(s.data(), static_cast<std::streamsize>(s.size() / 2));
    expect_input_error(tmp("trunc.nii.gz"), "truncated");
    // corrupt deflate data (header intact: flip bytes near the end)
    for (size_t i = s.size() - 12; i < s.size() - 8; ++i) s[i] = static_cast<char>(s[i] ^ 0x5a);
    std::ofstream(tmp("corrupt.nii.gz"), std::ios::binary).write(s.data(), static_cast<std::streamsize>(s.size()));
    expect_input_error(tmp("corrupt.nii.gz"), "gzip");
  }
  {  // gzip content under a plain name
    const std::string p = ok.write("gz_named.nii.gz");
    fs::copy_file(p, tmp("gz_named.nii"), fs::copy_options::overwrite_existing);
    expect_input_error(tmp("gz_named.nii"), "gzip");
  }
  RawNifti r2d = ok;
  r2d.dim[0] = 2;
  expect_input_error(r2d.write("2d.nii"), "2D");
  RawNifti r4d = ok;
  r4d.dim[0] = 4;
  r4d.dim[4] = 3;
  r4d.data.insert(r4d.data.end(), ok.data.begin(), ok.data.end());
  r4d.data.insert(r4d.data.end(), ok.data.begin(), ok.data.end());
  expect_input_error(r4d.write("4d.nii"), "3 entries along dimension 4");
  RawNifti z = ok;
  z.pixdim[2] = 0;
  expect_input_error(z.write("zero_spacing.nii"), "spacing");
  RawNifti nsp = ok;
  nsp.pixdim[3] = NAN;
  expect_input_error(nsp.write("nan_spacing.nii"), "spacing");
  RawNifti sing = ok;
  sing.sform_code = 1;
  sing.srow[2][0] = 0;
  sing.srow[2][1] = 0;
  sing.srow[2][2] = 0;
  expect_input_error(sing.write("singular.nii"), "not invertible");
  RawNifti nanv = ok;
  nanv.fill<float>([](int64_t i, int64_t j, int64_t k) { return (i == 2 && j == 1 && k == 1) ? NAN : 1.0; });
  expect_input_error(nanv.write("nan_voxel.nii"), "voxel (2,1,1)");
  RawNifti huge = ok;
  huge.dim[1] = huge.dim[2] = huge.dim[3] = 30000;
  expect_input_error(huge.write("huge.nii"), "absurd");
  expect_input_error(huge.write("huge.nii.gz"), "absurd");
  RawNifti lie = ok;
  lie.dim[1] = lie.dim[2] = lie.dim[3] = 500;  // 500 MB claimed by a tiny gzip file
  expect_input_error(lie.write("lie.nii.gz"), "impossible");
  RawNifti dt = ok;
  dt.datatype = 128;  // RGB24
  dt.bitpix = 24;
  expect_input_error(dt.write("rgb.nii"), "datatype");
  RawNifti bp = ok;
  bp.bitpix = 16;
  expect_input_error(bp.write("bitpix.nii"), "bitpix");
  RawNifti vo = ok;
  vo.vox_offset = 100;
  expect_input_error(vo.write("voxoff.nii"), "vox_offset");
  RawNifti mg = ok;
  mg.magic = std::string("ni1\0", 4);
  expect_input_error(mg.write("pair.nii"), "single-file");
  expect_input_error(ok.write("wrong_ext.img"), "NIfTI file name");
  // Labels that are not integers in [0, 255].
  RawNifti lab = ok;
  lab.fill<float>([](int64_t i, int64_t, int64_t) { return i == 3 ? 0.5 : 1.0; });
  EXPECT_THROW(read_nifti_labels(lab.write("frac_label.nii")), InputError);
}

// The committed bad files (tests/data/nifti/) and every fuzzer seed and regression must read cleanly or fail with
// InputError, never crash or throw anything else.
TEST(NiftiIO, CommittedBadFilesAndFuzzRegressionsFailCleanly) {
  int files = 0, errors = 0;
  for (const std::string& dir : {std::string(DEX_TEST_DATA) + "/nifti", std::string(DEX_SOURCE_DIR) + "/fuzz/regressions",
                                std::string(DEX_SOURCE_DIR) + "/fuzz/seeds"}) {
    if (!fs::exists(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file() || e.path().extension() == ".md") continue;
      // The fuzz target names each input by its gzip magic; do the same.
      std::ifstream f(e.path(), std::ios::binary);
      std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      const bool gz = s.size() >= 2 && static_cast<unsigned char>(s[0]) == 0x1f && static_cast<unsigned char>(s[1]) == 0x8b;
      const std::string p = tmp("reg_" + e.path().stem().string() + (gz ? ".nii.gz" : ".nii"));
      std::ofstream(p, std::ios::binary).write(s.data(), static_cast<std::streamsize>(s.size()));
      ++files;
      try {
        read_nifti(p);
      } catch (const InputError&) {
        ++errors;
      }
    }
  }
  EXPECT_GE(files, 4);
  EXPECT_GE(errors, 1);  // the committed bad files
}

}  // namespace
}  // namespace dex
