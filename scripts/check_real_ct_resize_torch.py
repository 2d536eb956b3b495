#!/usr/bin/python3
"""Reference Dice values for tests/data/test_real_ct.cpp: the real-ct spleen label resized to 128^3 and back with
PyTorch itself (legacy nearest / area), as MONAI does. Needs /usr/bin/python3 with numpy + torch; not run by CI."""
import gzip
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/real-ct/labelsTr/case_a.nii.gz"
d = gzip.open(path).read()
nx, ny, nz = struct.unpack("<3h", d[42:48])
vo = int(struct.unpack("<f", d[108:112])[0])
a = np.frombuffer(d[vo:vo + nx * ny * nz], dtype=np.uint8).reshape(nz, ny, nx).transpose(2, 1, 0).astype(np.float32)
t = torch.tensor(a)[None, None]


def dice(x, y):
    x, y = x > 0.5, y > 0.5
    return 2 * (x & y).sum() / (x.sum() + y.sum())


l128 = F.interpolate(t, size=(128, 128, 128), mode="nearest")
print("nearest/nearest", dice(F.interpolate(l128, size=a.shape, mode="nearest").numpy(), a))
ab = F.interpolate(torch.cat([1 - l128, l128], 1), size=a.shape, mode="area")
print("nearest/area argmax", dice((ab[0, 1] > ab[0, 0]).numpy(), a))
a128 = F.interpolate(t, size=(128, 128, 128), mode="area")
print("area/area", dice(F.interpolate(a128, size=a.shape, mode="area").numpy()[0, 0], a))
