// Synthetic CT-like abdominal phantoms with spleen labels (seeded), the training set of every test and of the demo.
// Anatomy is built in world coordinates (RAS mm: +x = patient's right, +y = anterior, +z = superior) on a canonical
// RAS grid: air outside (-1000 HU), body ellipse with subcutaneous fat (-100) and a muscle wall (~50), an abdominal
// cavity of visceral fat (-105..-80) holding bowel loops (20-40) and gas pockets (-1000), the stomach (25-40, medial
// and anterior to the spleen, often touching it), liver (~60, patient's right), kidneys (~30), spine with vertebral
// bodies (cortex ~1000, cancellous ~400), discs and spinal canal, paraspinal muscles, and a spleen (~45) of varied
// shape (a deformed, rotated ellipsoid), size and position on the patient's left, posterior. Gaussian noise (sigma
// 10-20 HU). Non-contrast HU like ../shared/data/real-ct, whose spleen is mostly bordered by fat: there 22% of the
// 3-voxel shell around the spleen lies within +-30 HU of the spleen's mean; here 6-38% (mean 21%, 12 cases) of the
// 2-voxel shell. (Until 2026-11-27 the cavity was uniform soft tissue at 10-25 HU, 47-73% of the shell: the spleen's
// outline was harder to see than in a real CT.)
// The array is then stored in one of several orientations (RAS, LPS-like flips, axis-permuted) with the matching
// affine, so the world position of every structure does not depend on the storage orientation.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "data/orientation.h"
#include "data/volume.h"

namespace dex {

enum class PhantomSize { Small, Full };  // Small: 64-96 voxels per axis; Full: 512 x 512 x Z like MSD
enum class PhantomOrientation { Mixed = -1, LPS = 0, RAS = 1, PermutedALS = 2, PermutedSPL = 3 };
const char* phantom_orientation_name(PhantomOrientation o);
PhantomOrientation parse_phantom_orientation(const std::string& s);  // "mixed", "lps", "ras", "als", "spl"
// Storage map: stored (file) index -> canonical RAS index (data/orientation.h's out_to_in convention).
Orientation phantom_storage(PhantomOrientation o);

// Field of view. Abdomen: the whole abdominal cross-section, as in an MSD scan (the spleen is ~0.3% of the voxels).
// Spleen: a box around the spleen and its neighbours (stomach, kidney, body wall, bowel; 120-150 mm per axis, more
// where the spleen needs it, up to ~180 mm; never cutting the spleen), like a left-upper-quadrant crop: the spleen is
// ~5% of the voxels, so on a 32^3 network grid it has ~1000-3000 voxels, the order of a real spleen on the bundle's
// 128^3 grid (on whole-abdomen phantoms it has 74-157 at 32^3, mostly boundary). Same anatomy and random draws as Abdomen; only the grid differs.
enum class PhantomView { Abdomen, Spleen };
const char* phantom_view_name(PhantomView v);
PhantomView parse_phantom_view(const std::string& s);  // "abdomen", "spleen"

struct PhantomOptions {
  PhantomSize size = PhantomSize::Small;
  PhantomView view = PhantomView::Abdomen;
  PhantomOrientation orientation = PhantomOrientation::Mixed;  // Mixed: chosen by case index (cycles 0..3)
};

struct Phantom {
  Volume ct;           // HU, already rounded to integers in [-1024, 3071] (written as int16), stored orientation
  LabelVolume label;   // 1 = spleen, 0 = everything else; same grid and affine as ct
  PhantomOrientation orientation = PhantomOrientation::RAS;
  std::array<double, 3> spleen_center{0, 0, 0};  // world (RAS mm) centre of the spleen ellipsoid
  std::array<double, 3> body_center{0, 0, 0};    // world (RAS mm) centre of the body axis at mid-height
  std::array<double, 2> body_semi_axes{0, 0};    // the body's elliptic cross-section (mm): lateral (x), antero-posterior (y)
};

// Case `index` of the phantom set `seed`: a pure function of (seed, index, options).
Phantom make_phantom(uint64_t seed, int64_t index, const PhantomOptions& opt = {});

// Writes the MSD layout into `dir` (created if missing; its parent must exist): imagesTr/spleen_<i>.nii.gz (int16),
// labelsTr/spleen_<i>.nii.gz (uint8) for i = 1..count, imagesTs/spleen_<count+i>.nii.gz for the test_count test cases,
// and dataset.json (MSD keys: name, labels, modality, numTraining, numTest, training, test).
struct PhantomDatasetStats {
  double seconds = 0;    // total wall time (generation + writing)
  double generate_seconds = 0;
  int64_t voxels = 0;
};
PhantomDatasetStats write_phantom_dataset(const std::string& dir, int64_t count, uint64_t seed,
                                          const PhantomOptions& opt = {}, int64_t test_count = 0,
                                          bool verbose = false);

}  // namespace dex
