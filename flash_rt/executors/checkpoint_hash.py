"""The identity of a checkpoint's bytes: a full-content hash of every shard, remembered per file identity.

Why: the weight cache and the calibration cache are keyed on this hash. Before, it covered the size plus the first
and last 64 KiB of the first shard only, so two fine-tunes of one base model (same size, same header, a frozen head
at the end, or a change in a later shard) got the same key and the second silently ran on the first one's FP8
weights and scales. Now every byte of every shard is hashed (SHA-256 over 64 MiB pieces hashed in parallel, then
over their digests), so a collision is impossible in practice (128-bit key; an accidental match needs ~2^64
checkpoints). SHA-256 rather than BLAKE2b: hashlib's SHA-256 is OpenSSL's, with the CPU's SHA instructions --
0.9-1.5 GB/s a core against BLAKE2b's 0.6-0.7 GB/s on the same CPU.

Hashing 7 GB costs seconds (docs/weight_cache.md has the measured rate), so each file's digest is remembered in a
small JSON index next to the weight cache (`checkpoint_hashes.json`), under the file's identity: resolved path,
size, mtime_ns, ctime_ns, inode and device. Any write to the file changes mtime and ctime (ctime cannot be set back
by the user, unlike mtime), so a warm start re-stats each shard and rehashes nothing, and a modified file is hashed
again. A file that changes while it is hashed is not remembered. Like git's "racily clean" rule, a remembered digest
is trusted only when the file's mtime and ctime lie at least RACY_NS before the moment it was hashed: file systems
stamp times at a coarse tick, so a rewrite in the same tick as the hashed write would keep every field equal. The index is a cache of a pure function: a
corrupt or unreadable index is reported (warning + log) and rebuilt, an unwritable one only costs a rehash next start.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("flash_rt.weight_cache")

INDEX_NAME = "checkpoint_hashes.json"
INDEX_VERSION = 1
ALGO = "sha256-tree64m"
KEY_HEX = 32            # 128-bit checkpoint key
MAX_INDEX_ENTRIES = 512
READ_CHUNK = 8 << 20
PIECE = 64 << 20          # the tree's leaf size: pieces hash in parallel
RACY_NS = 1_000_000_000   # 1 s: coarser than any time stamp tick a checkpoint's file system uses (FAT's is 2 s mtime)


class HashIndexWarning(UserWarning):
    """The checkpoint hash index was unreadable (rebuilt) or could not be written (rehash next start)."""


def file_identity(f: Path) -> dict:
    """What must be unchanged for a remembered digest of `f` to still hold."""
    st = f.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
            "dev": st.st_dev}


def hash_file(f: str | os.PathLike, workers: int | None = None) -> str:
    """SHA-256 tree digest of the whole file: SHA-256 over (a tag, u64 piece size, the SHA-256 of every PIECE-byte
    piece in order). Why a tree: the pieces hash in parallel threads (hashlib releases the GIL), so a 7 GB checkpoint
    hashes at the speed of all cores, not one. Each thread streams its piece in READ_CHUNK reads."""
    size = os.path.getsize(f)
    n = max(1, -(-size // PIECE))
    fd = os.open(f, os.O_RDONLY)
    try:
        def piece(i: int) -> bytes:
            h = hashlib.sha256()
            off, end = i * PIECE, min(size, (i + 1) * PIECE)
            while off < end:
                b = os.pread(fd, min(READ_CHUNK, end - off), off)
                if not b:
                    raise OSError(f"{f}: file shrank while it was hashed")
                h.update(b)
                off += len(b)
            return h.digest()

        w = workers or min(n, os.cpu_count() or 1, 32)
        if w == 1:
            parts = [piece(i) for i in range(n)]
        else:
            with ThreadPoolExecutor(max_workers=w) as ex:
                parts = list(ex.map(piece, range(n)))
    finally:
        os.close(fd)
    return hashlib.sha256(b"flash_rt-sha256-tree-v1\0" + struct.pack("<Q", PIECE) + b"".join(parts)).hexdigest()


class HashIndex:
    """{resolved path: identity + digest}, a JSON file written atomically. Not a trust boundary: it only saves
    rehashing files this machine has hashed before."""

    def __init__(self, root: str | os.PathLike | None):
        self.path = None if root is None else Path(root).expanduser() / INDEX_NAME
        self.entries: dict[str, dict] = {}
        self.hashed: list[str] = []      # files hashed (not remembered) by this instance, for logs and tests
        self._dirty = False
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
            if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION or doc.get("algo") != ALGO \
                    or not isinstance(doc.get("files"), dict):
                raise ValueError(f"not a version-{INDEX_VERSION} {ALGO} index")
            self.entries = {k: v for k, v in doc["files"].items() if isinstance(v, dict)}
        except (OSError, ValueError, UnicodeDecodeError) as e:
            msg = f"checkpoint hash index '{self.path}' is unusable ({e}); rebuilding it (checkpoints are rehashed)"
            warnings.warn(msg, HashIndexWarning, stacklevel=3)
            log.warning(msg)
            self.entries, self._dirty = {}, True

    def digest(self, f: Path) -> str:
        key = str(f.resolve())
        ident = file_identity(f)
        e = self.entries.get(key)
        if e is not None and {k: e.get(k) for k in ident} == ident and isinstance(e.get("digest"), str) \
                and isinstance(e.get("hashed_at_ns"), int) \
                and max(ident["mtime_ns"], ident["ctime_ns"]) + RACY_NS <= e["hashed_at_ns"]:
            return e["digest"]
        t0 = time.time_ns()
        d = hash_file(f)
        self.hashed.append(key)
        if file_identity(f) == ident:      # unchanged while hashed: safe to remember
            self.entries.pop(key, None)
            self.entries[key] = {**ident, "hashed_at_ns": t0, "digest": d}
            self._dirty = True
        return d

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        items = list(self.entries.items())[-MAX_INDEX_ENTRIES:]   # newest last: drop the oldest
        doc = {"version": INDEX_VERSION, "algo": ALGO, "files": dict(items)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_NAME}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError as e:
            msg = f"could not write checkpoint hash index '{self.path}': {e}; the checkpoint is rehashed next start"
            warnings.warn(msg, HashIndexWarning, stacklevel=3)
            log.warning(msg)


def checkpoint_files(path: str | os.PathLike) -> list[Path]:
    """Every safetensors file of a checkpoint (dir, file or shard index), in shard order."""
    from flash_rt.executors.safetensors_io import resolve_checkpoint_files
    return list(resolve_checkpoint_files(path)[0])


def files_hash(files, names, index_root: str | os.PathLike | None = None, tag: bytes = b"flash_rt-checkpoint-v2") -> str:
    """32 hex chars naming the content of `files` (paths) listed under `names` (what identifies each file inside
    its checkpoint): the first 128 bits of SHA-256 over (tag, then per file in order: its name, u64 little-endian size,
    hash_file's tree digest of all its bytes). `index_root`: the directory of the digest index (normally the weight
    cache's root); None hashes every file now and remembers nothing."""
    idx = HashIndex(index_root)
    h = hashlib.sha256()
    h.update(tag + b"\0")
    for f, name in zip(files, names):
        h.update(name.encode() + b"\0" + struct.pack("<Q", f.stat().st_size) + bytes.fromhex(idx.digest(f)))
    idx.save()
    if idx.hashed:
        log.info("checkpoint hash: hashed %d file(s) in full: %s", len(idx.hashed), idx.hashed)
    return h.hexdigest()[:KEY_HEX]


def checkpoint_hash(path: str | os.PathLike, index_root: str | os.PathLike | None = None) -> str:
    """The key of a safetensors checkpoint: files_hash over every shard in order, named by file name."""
    files = checkpoint_files(path)
    return files_hash(files, [f.name for f in files], index_root)
