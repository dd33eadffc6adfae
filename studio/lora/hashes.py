"""The additional-network hashes and model hashes kohya writes into a LoRA's metadata (``sshs_*``, ``ss_sd_model_hash``,
``ss_new_sd_model_hash``), computed as kohya sd-scripts and A1111 compute them."""
from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping

import torch


def addnet_hashes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as kohya's ``precalculate_safetensors_hashes`` computes them.

    The file is serialised with only the ``ss_*`` metadata; the model hash is the SHA-256 of everything after the
    header, the legacy hash the first 8 hex digits of the SHA-256 of the 64 KiB at offset 1 MiB.
    """
    from safetensors.torch import save

    data = save(dict(tensors), {k: v for k, v in metadata.items() if k.startswith("ss_")})
    header = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[8 + header :]).hexdigest()
    legacy_hash = hashlib.sha256(data[0x100000 : 0x100000 + 0x10000]).hexdigest()[:8]
    return model_hash, legacy_hash


def a1111_legacy_model_hash(path: str | os.PathLike) -> str:
    """A1111's old 8-digit model hash (``ss_sd_model_hash``): SHA-256 of the 64 KiB at offset 1 MiB."""
    with open(path, "rb") as handle:
        handle.seek(0x100000)
        return hashlib.sha256(handle.read(0x10000)).hexdigest()[:8]


@functools.lru_cache(maxsize=4)
def _sha256_of(path: str, _size: int, _mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a whole file (kohya's ``ss_new_sd_model_hash``), computed once per file version."""
    stat = os.stat(path)
    return _sha256_of(str(path), stat.st_size, stat.st_mtime)
