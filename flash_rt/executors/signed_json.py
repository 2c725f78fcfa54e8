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
