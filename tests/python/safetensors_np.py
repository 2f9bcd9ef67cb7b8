"""Reads and writes safetensors files with numpy alone (no torch, no safetensors package).

The format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 "__metadata__": {"key": "value"}}, then the tensors' bytes (C order, little-endian), each at
[begin, end) of the data that follows the header.

    import safetensors_np as st
    st.save_file({"weight": np.ones((3,), np.float32)}, "w.safetensors", metadata={"format": "pt"})
    tensors, metadata = st.load_file("w.safetensors")

numpy has no bfloat16: load_file widens BF16 to float32 (exactly), and save_file writes a value
given as ("BF16", float_array) as BF16, rounding to nearest even. `python3 safetensors_np.py FILE`
prints a file's tensors.
"""

import json
import struct
import sys

import numpy as np

_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def _bf16_bits(a):
    """float32 values as bfloat16 bit patterns, rounded to nearest even (NaN kept NaN)."""
    bits = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    return np.where(nan, (bits >> 16) | 0x40, rounded).astype("<u2")


def save_file(tensors, path, metadata=None):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        value = tensors[name]
        if isinstance(value, tuple) and value[0] == "BF16":
            array = np.asarray(value[1], dtype=np.float32)
            data, dtype = _bf16_bits(array).tobytes(), "BF16"
        else:
            array = np.asarray(value)
            dtype = _NAMES[array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype]
            data = np.ascontiguousarray(array, dtype=_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for chunk in chunks:
            f.write(chunk)


def load_file(path):
    """Returns ({name: ndarray}, metadata). Raises ValueError on a malformed file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} beyond the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors, end = {}, 0
    for name, entry in header.items():
        begin, stop = entry["data_offsets"]
        shape = tuple(entry["shape"])
        chunk = data[begin:stop]
        if stop > len(data):
            raise ValueError(f"{path}: tensor {name!r} reaches past the data")
        if entry["dtype"] == "BF16":
            bits = np.frombuffer(chunk, dtype="<u2").astype("<u4") << 16
            array = bits.view("<f4")
        else:
            array = np.frombuffer(chunk, dtype=_DTYPES[entry["dtype"]])
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name!r}: {len(chunk)} bytes do not fit shape {list(shape)}")
        tensors[name] = array.reshape(shape)
        end = max(end, stop)
    if end != len(data):
        raise ValueError(f"{path}: {len(data) - end} bytes after the last tensor")
    return tensors, metadata


if __name__ == "__main__":
    for file in sys.argv[1:]:
        tensors, metadata = load_file(file)
        print(f"{file}: metadata {metadata}")
        for name, array in sorted(tensors.items()):
            print(f"  {name}: {array.dtype} {list(array.shape)}")
