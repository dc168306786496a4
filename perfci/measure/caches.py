"""What a start starts from: the engine's on-disk caches for this build and model, and the model files' residency
in the OS page cache. Measured before every start, so a start's label says what it was, not what was asked.

Each engine adapter declares its caches (`Adapter.caches`): directories under this build's and model's compile
cache root (`$PERFCI_CACHE/compile/<build key>/<model>-<config hash>`), which perfci points the engine's cache
variables at, so "this build's cache" is one well-defined set of directories that a cold start empties without
touching another build's. A cache `decides` the label when the build fills it on every start (vLLM's compile
cache with torch.compile on); the others (spill-over directories such as TORCHINDUCTOR_CACHE_DIR, which vLLM
bypasses with its own) are recorded and emptied but do not decide.

The label (`state`):
- `warm`: every deciding cache holds entries;
- `cold`: every deciding cache is empty and the model's weight files are not in the page cache;
- `cold-weights-cached`: the caches are empty but most weight bytes are resident (nothing could drop them);
- `mixed`: some deciding caches hold entries and some do not — neither cold nor warm;
- `priming`: the untimed start that fills empty caches before a requested warm start (set by the runner);
- with no deciding cache (an engine that keeps nothing on disk) the start is what the suite asked for.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Every label a start can carry, and what it means (the dashboard and reports say it beside the numbers).
STATES = {
    "cold": "every engine cache for this build empty, weights not in the page cache",
    "warm": "every engine cache for this build populated",
    "cold-weights-cached": "engine caches empty, but the weights were in the OS page cache",
    "mixed": "some engine caches populated, some empty: neither cold nor warm",
    "priming": "untimed start that filled empty caches before a warm start",
    "n/a": "a running endpoint: perfci started nothing",
}
# Weight files at least this resident (by bytes) make a cold start `cold-weights-cached`.
RESIDENT_SHARE_CACHED = 0.5
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".npz", ".msgpack")


@dataclass(frozen=True, slots=True)
class Cache:
    """One cache an engine uses: a name, its directory, and whether it decides the start's label."""

    name: str
    path: Path
    decides: bool = True


def inspect(cache: Cache) -> dict[str, int | bool]:
    """Entries (files) and bytes under the cache's directory; populated when it holds any file."""
    entries = size = 0
    for root, _dirs, files in os.walk(cache.path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:  # removed while walking (an engine's lock file)
                continue
            entries += 1
            size += st.st_size
    return {"populated": entries > 0, "decides": cache.decides, "entries": entries, "bytes": size}


def inspect_all(caches: Sequence[Cache]) -> dict[str, dict[str, int | bool]]:
    return {c.name: inspect(c) for c in caches}


def empty(caches: Iterable[Cache]) -> None:
    """Remove the caches' contents (a cold start); the directories stay, so the engine finds its paths."""
    for c in caches:
        if c.path.exists():
            shutil.rmtree(c.path)
        c.path.mkdir(parents=True, exist_ok=True)


def state(measured: dict[str, dict[str, int | bool]], *, requested: str, weights: dict | None) -> str:
    """The label of a start from what was measured before it (pure; see the module doc)."""
    deciding = [m["populated"] for m in measured.values() if m["decides"]]
    if not deciding:
        return requested
    if all(deciding):
        return "warm"
    if any(deciding):
        return "mixed"
    if weights and weights["bytes"] and weights["resident_bytes"] >= RESIDENT_SHARE_CACHED * weights["bytes"]:
        return "cold-weights-cached"
    return "cold"


# --- model files in the OS page cache -------------------------------------------------------------------


def weight_files(model_path: str) -> list[Path]:
    """The weight files an engine reads for `model_path`: in a local directory, or in the Hugging Face hub
    cache's snapshots of a hub id (symlinks resolved to their blobs). None for a model that has none (perfci's
    tiny model loads dummy weights)."""
    local = Path(model_path).expanduser()
    if local.is_dir():
        roots = [local]
    else:
        hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or "~/.cache/huggingface") / "hub")
        roots = list((hub.expanduser() / f"models--{model_path.replace('/', '--')}" / "snapshots").glob("*"))
    found = {p.resolve() for r in roots for p in r.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file()}
    return sorted(found)


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte))
_MAP_FAILED = ctypes.c_void_p(-1).value


def resident_bytes(path: Path) -> int:
    """Bytes of `path` in the page cache: mincore(2) over a read-only shared mapping of the file (what
    vmtouch and fincore do). Mapping reads nothing; mincore only asks the kernel which pages are present."""
    size = path.stat().st_size
    if size == 0:
        return 0
    page = mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap {path.name}: {os.strerror(ctypes.get_errno())}")
        try:
            pages = (size + page - 1) // page
            vec = (ctypes.c_ubyte * pages)()
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path.name}: {os.strerror(ctypes.get_errno())}")
            resident = sum(b & 1 for b in vec)
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)
    # The last page counts only for the bytes the file has in it.
    tail = size - (pages - 1) * page
    return (resident - (vec[-1] & 1)) * page + (vec[-1] & 1) * tail


def drop_from_page_cache(paths: Iterable[Path]) -> None:
    """Ask the kernel to drop the files' clean pages (posix_fadvise DONTNEED; no root needed). Pages another
    process has mapped and locked stay: the residency measured afterwards tells."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def weights(files: Sequence[Path], *, dropped: bool) -> dict[str, int | bool] | None:
    """The weight files' page-cache residency; None for a model without weight files."""
    if not files:
        return None
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "resident_bytes": sum(resident_bytes(f) for f in files), "dropped": dropped}  # fmt: skip
