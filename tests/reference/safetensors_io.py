"""Tiny, dependency-light reader/writer for the safetensors format.

Format (https://github.com/huggingface/safetensors):
  * 8 bytes: little-endian u64 N = length of the JSON header in bytes;
  * N bytes: UTF-8 JSON object
        {"__metadata__": {str: str, ...},            (optional)
         "<tensor name>": {"dtype": "F32", "shape": [d0, d1, ...],
                           "data_offsets": [begin, end]}, ...}
    padded at the end with ASCII spaces so that 8 + N is a multiple of 8;
  * the data buffer: raw little-endian tensor bytes. data_offsets are relative to the start
    of the buffer; tensors are contiguous (no holes, no overlap).

Supported dtypes: F32, F16, BF16, I32 (also F64, I64, U8 read-only convenience).
BF16 values are kept as their raw uint16 bit patterns (numpy has no bfloat16); use
`f32_to_bf16_bits` (round to nearest, ties to even) and `bf16_bits_to_f32` (exact).

Only numpy is needed.
"""

import json
import os
import struct

import numpy as np

# dtype name -> (numpy storage dtype, bytes per element)
_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bf16 bits
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
}


def f32_to_bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, round-to-nearest-even (NaN stays NaN)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    u = x.view(np.uint32).astype(np.uint64)
    rounded = (u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint64(16)).astype(np.uint16)) | np.uint16(0x0040)
    return out


def bf16_bits_to_f32(bits):
    """uint16 bf16 bit patterns -> float32 (exact)."""
    bits = np.ascontiguousarray(np.asarray(bits, dtype=np.uint16))
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def to_float64(dtype, arr):
    """Upcast a stored array to float64 exactly (BF16 arrays are uint16 bit patterns)."""
    if dtype == "BF16":
        return bf16_bits_to_f32(arr).astype(np.float64)
    return np.asarray(arr).astype(np.float64)


class SafetensorsFile:
    """Parsed single .safetensors file. tensors[name] = (dtype_str, numpy array)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", data[:8])
        if 8 + n > len(data):
            raise ValueError(f"{path}: header length {n} exceeds file size")
        header = json.loads(data[8:8 + n].decode("utf-8"))
        buf = memoryview(data)[8 + n:]
        self.metadata = header.pop("__metadata__", None) or {}
        for k, v in self.metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"{path}: __metadata__ must map str -> str")
        self.tensors = {}
        self.order = []
        spans = []
        for name, info in header.items():
            dt = info["dtype"]
            if dt not in _DTYPES:
                raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
            npdt = _DTYPES[dt]
            count = int(np.prod(shape)) if shape else 1
            if end - begin != count * npdt.itemsize or begin < 0 or end > len(buf):
                raise ValueError(f"{path}: tensor {name}: bad data_offsets {begin},{end} "
                                 f"for shape {shape} dtype {dt}")
            arr = np.frombuffer(buf[begin:end], dtype=npdt).reshape(shape).copy()
            self.tensors[name] = (dt, arr)
            self.order.append(name)
            spans.append((begin, end, name))
        spans.sort()
        pos = 0
        for begin, end, name in spans:
            if begin != pos:
                raise ValueError(f"{path}: hole or overlap before tensor {name}")
            pos = end
        if pos != len(buf):
            raise ValueError(f"{path}: {len(buf) - pos} trailing bytes after last tensor")

    def get_f64(self, name):
        dt, arr = self.tensors[name]
        return to_float64(dt, arr)


def read_safetensors(path):
    """-> (dict name -> (dtype_str, np.ndarray), metadata dict)."""
    f = SafetensorsFile(path)
    return f.tensors, f.metadata


def _encode_tensor(dtype, arr):
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype}")
    arr = np.asarray(arr)
    if dtype == "BF16":
        if arr.dtype == np.uint16:
            bits = arr
        else:
            bits = f32_to_bf16_bits(arr.astype(np.float32))
        out = np.ascontiguousarray(bits, dtype="<u2")
    else:
        out = np.ascontiguousarray(arr.astype(_DTYPES[dtype]))
    return list(out.shape), out.tobytes()


def serialize(tensors, metadata=None):
    """tensors: list of (name, dtype_str, array) in the order to lay them out (or a dict,
    laid out in insertion order). For BF16, array may be float (rounded RNE) or uint16 bits.
    Returns the file bytes."""
    items = list(tensors.items()) if isinstance(tensors, dict) else list(tensors)
    if isinstance(tensors, dict):
        items = [(k, v[0], v[1]) for k, v in items]
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, dtype, arr in items:
        if name in header:
            raise ValueError(f"duplicate tensor {name}")
        shape, raw = _encode_tensor(dtype, arr)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    pad = (8 - (8 + len(hj)) % 8) % 8
    hj += b" " * pad
    return struct.pack("<Q", len(hj)) + hj + b"".join(blobs)


def write_safetensors(path, tensors, metadata=None):
    data = serialize(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def tensor_nbytes(dtype, arr):
    return int(np.prod(np.shape(arr))) * _DTYPES[dtype].itemsize


def write_sharded(directory, tensors, num_shards, metadata=None, sort_within_shard=True):
    """Split the ordered tensor list into `num_shards` files model-0000K-of-0000N.safetensors
    (contiguous runs of roughly equal byte size, each tensor whole; like save_pretrained, which
    fills shards in state-dict order, with each file's tensors laid out sorted by name) and write
    model.safetensors.index.json = {"metadata": {"total_size": bytes}, "weight_map": {name: file}}
    (json indent=2, sort_keys=True, like transformers' save_pretrained). Returns file names."""
    items = list(tensors)
    if num_shards < 1 or num_shards > len(items):
        raise ValueError("bad shard count")
    sizes = [tensor_nbytes(dt, a) for _, dt, a in items]
    total = sum(sizes)
    shards = [[] for _ in range(num_shards)]
    acc = 0
    for i, (item, sz) in enumerate(zip(items, sizes)):
        # shard index by the tensor's starting byte position; keep at least one tensor per shard
        k = min(num_shards - 1, (acc * num_shards) // total)
        remaining_items = len(items) - i
        empty_after = sum(1 for s in shards[k + 1:] if not s)
        if remaining_items <= empty_after:
            k = next(j for j in range(num_shards) if not shards[j])
        shards[k].append(item)
        acc += sz
    if any(not s for s in shards):
        raise ValueError("could not fill every shard; use fewer shards")
    names = []
    weight_map = {}
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{num_shards:05d}.safetensors"
        if sort_within_shard:
            shard = sorted(shard, key=lambda item: item[0])
        write_safetensors(os.path.join(directory, fname), shard,
                          metadata=metadata if metadata is not None else {"format": "pt"})
        for name, _, _ in shard:
            weight_map[name] = fname
        names.append(fname)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return names


def load_checkpoint_f64(directory):
    """Load every tensor of a HF checkpoint directory (model.safetensors, or the shards listed in
    model.safetensors.index.json) as float64 arrays. Returns (dict name -> f64 array,
    dict name -> stored dtype)."""
    idx = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
    else:
        files = ["model.safetensors"]
        index = None
    out, dtypes = {}, {}
    for fn in files:
        st = SafetensorsFile(os.path.join(directory, fn))
        for name in st.order:
            if name in out:
                raise ValueError(f"tensor {name} appears in more than one shard")
            if index is not None and index["weight_map"].get(name) != fn:
                raise ValueError(f"index says {name} is in {index['weight_map'].get(name)}, found in {fn}")
            out[name] = st.get_f64(name)
            dtypes[name] = st.tensors[name][0]
    if index is not None:
        missing = set(index["weight_map"]) - set(out)
        if missing:
            raise ValueError(f"index lists tensors not found in shards: {sorted(missing)[:5]}")
    return out, dtypes
