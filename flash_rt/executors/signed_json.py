"""Small JSON cache files that carry their own sha256 (calibration scales, smoothing factors, outlier site groups).

Why: a cache file that is truncated, hand-edited into other valid JSON, or written by another version must be
detected and rebuilt, never used (docs/weight_cache.md, docs/calibration.md). The digest covers the canonical JSON of
every field but 'sha256'; the write goes to a temporary file first and is renamed into place, so a crash mid-write
leaves the old file or none, never half of one."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from flash_rt.errors import CacheError


def content_digest(doc: dict) -> str:
    """sha256 of the canonical JSON of every field but 'sha256' (the cache files' self-check)."""
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_signed_json(path, doc: dict) -> Path:
    """Write `doc` plus its 'sha256' to `path` atomically (parent directories are created). Returns the path."""
    doc = dict(doc, sha256=content_digest(doc))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return path


def read_signed_json(path, what: str, version, expect: dict) -> dict:
    """The document of a signed cache file, checked: readable JSON, `version`, the sha256, and every field of
    `expect` equal (ckpt_hash and the like). Raises CacheError saying which check failed ("<what> <path>: ..."), or
    FileNotFoundError when there is no file (a miss, not damage)."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CacheError(f"{what} {path} is unreadable ({e})") from e
    if not isinstance(doc, dict) or doc.get("version") != version:
        raise CacheError(f"{what} {path}: version {doc.get('version') if isinstance(doc, dict) else '?'}, "
                         f"expected {version}")
    if doc.get("sha256") != content_digest(doc):
        raise CacheError(f"{what} {path}: checksum mismatch (stored sha256 {doc.get('sha256')!r}); the file is "
                         "corrupt or was edited")
    for k, v in expect.items():
        if doc.get(k) != v:
            raise CacheError(f"{what} {path}: {k} is {doc.get(k)!r}, expected {v!r}")
    return doc
