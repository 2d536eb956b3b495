// Writes the tiny valid NIfTI files that seed the fuzzer (fuzz/seeds/), using dex's own writer.
#include <cstdio>
#include <string>

#include "data/nifti_io.h"

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "fuzz/seeds";
  dex::Volume v;
  v.shape = {4, 3, 2};
  v.data.resize(24);
  for (int i = 0; i < 24; ++i) v.data[i] = static_cast<float>(i * 7 % 11) - 3.f;
  v.affine[0][0] = -0.8; v.affine[1][1] = -0.8; v.affine[2][2] = 2.5; v.affine[0][3] = 10;
  dex::write_nifti(dir + "/f32.nii", v);
  dex::write_nifti(dir + "/i16.nii.gz", v, dex::NiftiDType::I16);
  dex::LabelVolume l;
  l.shape = {2, 2, 3};
  l.data = {0, 1, 1, 0, 2, 0, 1, 1, 0, 0, 0, 1};
  dex::write_nifti(dir + "/u8.nii", l);
  dex::NiftiMeta m2;
  m2.nifti_version = 2;
  m2.affine = v.affine;
  m2.sform_code = 1;
  m2.sform = v.affine;
  m2.spacing = {0.8, 0.8, 2.5};
  m2.xyz_units = 2;
  dex::write_nifti(dir + "/f32_v2.nii", v, dex::NiftiDType::F32, &m2);
  std::printf("seeds written to %s\n", dir.c_str());
  return 0;
}
