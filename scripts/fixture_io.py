"""Writer for dex's test fixture format (read by tests/testing.h: load_fixture).

"DEXFIX1\n", then per tensor: u32 name_len, name, u32 dtype (0=f32, 1=f64, 2=i64, 3=u8), u32 ndim,
i64 dims[ndim], raw little-endian data in C order. Run generators with /usr/bin/python3 (Debian's torch).
"""
import struct

import numpy as np

_CODES = {np.dtype("float32"): 0, np.dtype("float64"): 1, np.dtype("int64"): 2, np.dtype("uint8"): 3}


def write_fixture(path, tensors):
    """tensors: dict name -> numpy array (or torch tensor)."""
    with open(path, "wb") as f:
        f.write(b"DEXFIX1\n")
        for name, a in tensors.items():
            if hasattr(a, "detach"):
                a = a.detach().cpu().numpy()
            a = np.ascontiguousarray(a)
            if a.dtype not in _CODES:
                a = a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64)
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<II", _CODES[a.dtype], a.ndim))
            for d in a.shape:
                f.write(struct.pack("<q", d))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
