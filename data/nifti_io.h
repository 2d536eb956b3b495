// NIfTI-1/NIfTI-2 reading and writing (.nii and .nii.gz) through nifti_clib.
// A Volume is C order over the file's array axes (axis 2 fastest); NIfTI stores axis 0 fastest, so reading and
// writing transpose. The affine follows nibabel: sform if sform_code > 0, else qform if qform_code > 0, else
// diag(pixdim). Every problem with a file (missing, truncated, corrupt, not NIfTI, wrong dimension, absurd header,
// bad geometry, NaN voxels) is a dex::InputError naming the file; the header is validated before nifti_clib
// allocates or reads voxel data.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "data/volume.h"

namespace dex {

// What a reader learns about a file, enough to write an output "in the input's geometry".
struct NiftiMeta {
  Mat4 affine = mat4_identity();            // voxel index -> world (RAS mm), nibabel's rule
  std::array<double, 3> spacing{1, 1, 1};   // pixdim[1..3] (mm)
  std::array<int64_t, 3> shape{0, 0, 0};    // dim[1..3]
  int datatype = 0;                         // NIfTI datatype code of the stored voxels (DT_INT16 = 4, ...)
  int sform_code = 0, qform_code = 0;
  Mat4 sform = mat4_identity();             // srow_x/y/z as stored (meaningful when sform_code > 0)
  Mat4 qform = mat4_identity();             // matrix from the quaternion fields (meaningful when qform_code > 0)
  std::array<double, 6> quatern{0, 0, 0, 0, 0, 0};  // quatern_b,c,d, qoffset_x,y,z
  double qfac = 1;
  int xyz_units = 0, time_units = 0;        // NIFTI_UNITS_* codes
  double scl_slope = 0, scl_inter = 0;      // as stored (slope 0 = no scaling)
  int nifti_version = 1;                    // 1 or 2
};

// Voxels as float32 with scl_slope/scl_inter applied. Accepts 3D or 4D with one volume.
Volume read_nifti(const std::string& path, NiftiMeta* meta = nullptr);
// Voxels as uint8 labels (values must be integers in [0, 255] after scaling, else InputError).
LabelVolume read_nifti_labels(const std::string& path, NiftiMeta* meta = nullptr);
// Header only (validated; no voxel data read).
NiftiMeta read_nifti_header(const std::string& path);

enum class NiftiDType { U8, I16, F32 };

// Writes v (its shape and v.affine) atomically: a temporary name in the same folder, then rename. ".nii.gz" (or
// ".gz") compresses. `like`: the input's header essentials (sform/qform codes, units, spacing); where v.affine equals
// like->affine the stored sform/qform are copied exactly. Without `like`: sform = qform = v.affine, codes 1 (scanner).
// The output folder must exist (InputError otherwise).
void write_nifti(const std::string& path, const Volume& v, NiftiDType dt = NiftiDType::F32, const NiftiMeta* like = nullptr);
void write_nifti(const std::string& path, const LabelVolume& v, const NiftiMeta* like = nullptr);  // uint8

}  // namespace dex
