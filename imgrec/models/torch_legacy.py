"""Read a PyTorch checkpoint in torch's legacy (pre-zip) format into numpy arrays, without torch.

The format: five pickles in a row — the magic number, the protocol version (1001), system information, the
object itself (here a state dict whose tensors point at storages by persistent id), and the list of
storage keys — followed by each storage's raw bytes in that key order (an 8-byte little-endian element
count, then the elements). A restricted unpickler admits only the few names such a file uses, so reading
an untrusted checkpoint cannot run code.
"""
from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
STORAGE_TYPES = {  # torch storage class -> numpy element type
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    dtype: Any
    key: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        assert self.storage.data is not None
        itemsize = self.storage.data.itemsize
        if not self.size:
            return self.storage.data[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(self.storage.data[self.offset:], shape=self.size,
                                               strides=[s * itemsize for s in self.stride])
        return np.ascontiguousarray(view)


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_TYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(STORAGE_TYPES[storage_type.name], key, int(numel))
        return storage


def load_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """The checkpoint's state dict as {name: numpy array}."""
    with open(path, "rb") as fh:
        data = fh.read()
    stream = io.BytesIO(data)
    safe = lambda: _Unpickler(stream, {}).load()  # noqa: E731
    if safe() != MAGIC:
        raise ValueError(f"{path}: not a legacy torch checkpoint (magic number)")
    if safe() != PROTOCOL:
        raise ValueError(f"{path}: unsupported checkpoint protocol")
    info = safe()
    if not info.get("little_endian", True):
        raise ValueError(f"{path}: big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    state = _Unpickler(stream, storages).load()
    keys = _Unpickler(stream, storages).load()
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", stream.read(8))
        if numel != storage.numel:
            raise ValueError(f"{path}: storage {key} holds {numel} elements, the tensor said {storage.numel}")
        size = numel * np.dtype(storage.dtype).itemsize
        storage.data = np.frombuffer(stream.read(size), dtype=storage.dtype, count=numel)
    return {name: value.array() if isinstance(value, _TensorRef) else value for name, value in state.items()}
