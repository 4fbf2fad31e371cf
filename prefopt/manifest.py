"""What a saved folder holds (a checkpoint, a run's model/): each file's name, size and checksum, recorded when the
folder is saved and compared before it is loaded, so that a truncated or corrupted file is named in a message instead
of failing deep inside safetensors or torch.load.

The checksums are taken right after the trainer has written the files: safetensors and torch.save write them
themselves, so the bytes are read back once, usually from the page cache, with xxHash (XXH3-128, far faster than the
read). A folder without a manifest (a checkpoint marker reading `step N`) still gets the checks that need no record:
a safetensors file's header must describe exactly the bytes the file holds, a torch.save zip file must end with its
directory.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import xxhash

log = logging.getLogger(__name__)

CHECKSUM = "xxh3_128"
_CHUNK = 16 * 2**20
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_MAX_SAFETENSORS_HEADER = 100 * 2**20  # safetensors' own limit


@dataclass(frozen=True)
class Damage:
    """A file of a saved folder that does not match what was saved: `name` relative to the folder."""

    name: str
    problem: str

    def __str__(self) -> str:
        return f"{self.name} {self.problem}"


def checksum(path: Path) -> str:
    digest = xxhash.xxh3_128()
    buffer = memoryview(bytearray(_CHUNK))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(buffer[:n])
    return digest.hexdigest()


def record(folder: Path, step: int | None = None, skip: tuple[str, ...] = ()) -> dict:
    """Names (relative to `folder`), sizes and checksums of every file in it but `skip`."""
    started = time.perf_counter()
    files = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name not in skip:
            files[name] = {"size": path.stat().st_size, CHECKSUM: checksum(path)}
    total = sum(entry["size"] for entry in files.values())
    log.info(
        "%s: %d files, %.1f MiB checksummed in %.2f s",
        folder,
        len(files),
        total / 2**20,
        time.perf_counter() - started,
        extra={"console": False},
    )
    return {"step": step, "files": files}


def write(folder: Path, path: Path, step: int | None = None) -> None:
    """The manifest of `folder` into `path` (inside it), atomically: `path` exists only once it is whole."""
    manifest = record(folder, step, skip=(path.name, path.name + ".tmp"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read(path: Path) -> dict | None:
    """The manifest in `path`; None when there is none (no file, or a marker written before manifests: `step N`).

    Raises ValueError when the file is there but is no manifest (cut short, overwritten)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    if text.startswith("step "):
        return None
    manifest = json.loads(text)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError("not a manifest")
    return manifest


def find_damage(folder: Path, manifest_path: Path, checksums: bool = True) -> Damage | None:
    """The first file of `folder` that is not as it was saved, else None: against the manifest in `manifest_path`
    (missing, another size, with `checksums` other bytes), and a structure check of every weights file.

    Sizes and headers come first: they cost no read of the data, and they find what truncation leaves."""
    folder = Path(folder)
    try:
        manifest = read(manifest_path)
    except (OSError, ValueError, UnicodeDecodeError):
        return Damage(manifest_path.name, "is unreadable: the record of what was saved is itself damaged")
    recorded = manifest["files"] if manifest else {}
    for name, entry in recorded.items():
        path = folder / name
        if not path.is_file():
            return Damage(name, "is missing")
        size = path.stat().st_size
        if size != entry["size"]:
            how = "cut short" if size < entry["size"] else "longer than it was"
            return Damage(name, f"holds {size:,} bytes, {entry['size']:,} when it was saved ({how})")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        problem = _structure_problem(path)
        if problem:
            return Damage(path.relative_to(folder).as_posix(), problem)
    if checksums:
        for name, entry in recorded.items():
            if checksum(folder / name) != entry[CHECKSUM]:
                return Damage(name, f"has other bytes than when it was saved (its {CHECKSUM} checksum differs)")
    return None


def _structure_problem(path: Path) -> str | None:
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    if path.suffix in _TORCH_SUFFIXES:
        return _torch_file_problem(path)
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes the header describes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"holds {size} bytes, fewer than a safetensors header (cut short)"
        header_size = struct.unpack("<Q", head)[0]
        if header_size > _MAX_SAFETENSORS_HEADER or 8 + header_size > size:
            return f"is not a whole safetensors file: its header length points past its end ({size:,} bytes)"
        try:
            header = json.loads(f.read(header_size))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "is not a whole safetensors file: its header is not valid"
    expected = 8 + header_size + end
    if expected != size:
        how = "cut short" if size < expected else "longer than its header says"
        return f"holds {size:,} bytes, its safetensors header describes {expected:,} ({how})"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """torch.save writes a zip file, whose directory is at its end; a file cut short has none."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if not magic:
        return "is empty"
    if magic == b"PK" and not zipfile.is_zipfile(path):
        return "is not a whole torch.save file: the end of the file is missing (cut short)"
    return None
