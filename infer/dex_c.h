/* dex C API: DeepEdit spleen segmentation for programs in any language.
 * An opaque handle per loaded model; every call returns a dex_status; on failure the handle's message getter
 * (or, for create, the caller's error buffer) says what went wrong. Buffers are owned by the caller.
 * Volumes are float32 in C order over the file's array axes (axis 2 fastest): voxel (i,j,k) of a NIfTI file is
 * at ((i*ny + j)*nz + k). Clicks are voxel indices (i,j,k) in that same array order. */
#ifndef DEX_C_H
#define DEX_C_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dex_segmenter dex_segmenter;

typedef enum {
  DEX_OK = 0,
  DEX_ERR_INPUT = 1,    /* the caller's input: file, clicks, shapes, options */
  DEX_ERR_INTERNAL = 2, /* anything else (out of memory, device failure) */
  DEX_ERR_ARGUMENT = 3  /* a null pointer or a too-small buffer */
} dex_status;

/* device: "cpu" or "cuda"; precision: "fp32" or "fp16". err (may be NULL) receives a message on failure. */
dex_status dex_segmenter_create(const char* model_path, const char* device, const char* precision,
                                dex_segmenter** out, char* err, size_t err_len);
void dex_segmenter_destroy(dex_segmenter* s);

/* affine: 16 doubles, row-major voxel->world (RAS mm) 4x4 matrix. */
dex_status dex_segmenter_set_image(dex_segmenter* s, const float* voxels, const int64_t shape[3],
                                   const double affine[16]);
/* Reads a NIfTI file (.nii/.nii.gz) and sets it as the image. */
dex_status dex_segmenter_set_image_file(dex_segmenter* s, const char* path);

/* The shape of the image last set (after dex_segmenter_set_image_file, to size the output buffers). */
dex_status dex_segmenter_image_shape(const dex_segmenter* s, int64_t shape[3]);

/* spleen/background: n*3 doubles (i,j,k), may be NULL when n == 0. mask: shape[0]*shape[1]*shape[2] bytes
 * (0/1). probability: NULL or as many floats (spleen probability). */
dex_status dex_segmenter_segment(dex_segmenter* s, const double* spleen, size_t n_spleen, const double* background,
                                 size_t n_background, uint8_t* mask, size_t mask_len, float* probability,
                                 size_t probability_len);

/* The message of the handle's last failed call ("" if none). Valid until the next call on the handle. */
const char* dex_segmenter_error(const dex_segmenter* s);

#ifdef __cplusplus
}
#endif
#endif /* DEX_C_H */
