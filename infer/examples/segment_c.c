/* Example: segment a CT with dex through the C API only.
 * Usage: dex-segment-c MODEL CT.nii.gz [i j k]   (optional spleen click, file voxel indices)
 * Prints the number of spleen voxels. */
#include <stdio.h>
#include <stdlib.h>

#include "infer/dex_c.h"

int main(int argc, char** argv) {
  if (argc != 3 && argc != 6) {
    fprintf(stderr, "usage: %s MODEL CT.nii.gz [i j k]\n", argv[0]);
    return 2;
  }
  char err[1024];
  dex_segmenter* s = NULL;
  if (dex_segmenter_create(argv[1], "cpu", "fp32", &s, err, sizeof err) != DEX_OK) {
    fprintf(stderr, "error: %s\n", err);
    return 2;
  }
  if (dex_segmenter_set_image_file(s, argv[2]) != DEX_OK) {
    fprintf(stderr, "error: %s\n", dex_segmenter_error(s));
    dex_segmenter_destroy(s);
    return 2;
  }
  int64_t shape[3];
  dex_segmenter_image_shape(s, shape);
  size_t cap = (size_t)(shape[0] * shape[1] * shape[2]);
  unsigned char* mask = (unsigned char*)malloc(cap);
  double click[3];
  size_t n = 0;
  if (argc == 6) {
    click[0] = atof(argv[3]);
    click[1] = atof(argv[4]);
    click[2] = atof(argv[5]);
    n = 1;
  }
  dex_status st = dex_segmenter_segment(s, n ? click : NULL, n, NULL, 0, mask, cap, NULL, 0);
  if (st != DEX_OK) {
    fprintf(stderr, "error: %s\n", dex_segmenter_error(s));
    free(mask);
    dex_segmenter_destroy(s);
    return st == DEX_ERR_INPUT ? 2 : 1;
  }
  long long count = 0;
  for (size_t i = 0; i < cap; ++i) count += mask[i];
  printf("spleen voxels: %lld\n", count);
  free(mask);
  dex_segmenter_destroy(s);
  return 0;
}
