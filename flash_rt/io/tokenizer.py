"""SentencePiece tokenizer loading (pi05_spec.md section 1b).

openpi tokenizes with the PaliGemma SentencePiece ``.model`` (257,152 ids, BOS 2, pad 0). No checkpoint ships it
and nothing is downloaded at run time, so we look where users already have it, in this order: an explicit
``tokenizer=``; the checkpoint directory; openpi's download cache (``$OPENPI_DATA_HOME/big_vision/
paligemma_tokenizer.model``, default ``~/.cache/openpi``); the Hugging Face hub cache of
``google/paligemma-3b-pt-224`` (``tokenizer.model``; ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``), where lerobot users have it. The file used is logged, and its vocabulary is checked
against the checkpoint's embedding rows: a token id past the table would read out of bounds, and a shared-cache
file of another size is not the vocabulary the checkpoint was trained with. When nothing is found the error says
both how to point at a file and how to skip it by passing pre-tokenized prompts.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import sentencepiece as spm

from flash_rt.errors import TokenizerError
from flash_rt.io.prompt import FlashRTWarning

log = logging.getLogger("flash_rt.tokenizer")

# Relative to the checkpoint directory, in the order we try them.
TOKENIZER_CANDIDATES = ("tokenizer.model", "paligemma_tokenizer.model", "assets/paligemma_tokenizer.model")
HF_REPO = "google/paligemma-3b-pt-224"
PALIGEMMA_VOCAB = 257152


def openpi_tokenizer_path() -> Path:
    """Where openpi's download cache keeps the PaliGemma tokenizer."""
    home = os.environ.get("OPENPI_DATA_HOME") or os.path.join("~", ".cache", "openpi")
    return Path(home).expanduser() / "big_vision" / "paligemma_tokenizer.model"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, as huggingface_hub resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"),
                                                     "huggingface")
    return Path(home).expanduser() / "hub"


def hf_tokenizer_path() -> Path | None:
    """tokenizer.model of the cached google/paligemma-3b-pt-224 snapshot: the revision refs/main names, else the
    newest snapshot that has the file; None when there is none."""
    repo = hf_hub_cache() / ("models--" + HF_REPO.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        cand = snaps / ref.read_text().strip() / "tokenizer.model"
        if cand.is_file():
            return cand
    found = [d / "tokenizer.model" for d in snaps.iterdir() if (d / "tokenizer.model").is_file()]
    return max(found, key=lambda f: f.stat().st_mtime) if found else None


class Tokenizer:
    """A thin wrapper over sentencepiece.SentencePieceProcessor with the calls the prompt encoder needs."""

    pad_id = 0  # openpi right-pads with 0 whatever the model's own pad piece is

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except Exception as exc:  # sentencepiece raises OSError / RuntimeError on bad files
            raise TokenizerError(
                f"cannot load SentencePiece model {self.path}: {exc}. The file is missing, truncated or "
                "not a SentencePiece .model (an HF tokenizer.json is not accepted)."
            ) from exc
        if self._sp.get_piece_size() <= 0:
            raise TokenizerError(f"SentencePiece model {self.path} has an empty vocabulary")

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS or EOS."""
        return self._sp.encode(text, out_type=int)

    def decode(self, ids) -> str:
        return self._sp.decode([int(i) for i in ids])

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def _base_dir(checkpoint_dir) -> Path | None:
    if checkpoint_dir is None:
        return None
    p = Path(checkpoint_dir)
    return p.parent if p.is_file() else p  # the checkpoint may be given as model.safetensors itself


def find_tokenizer(checkpoint_dir, explicit=None) -> Path:
    """Path of the SentencePiece model: ``explicit`` if given (a file, or a directory searched like a
    checkpoint), else the first of TOKENIZER_CANDIDATES found in ``checkpoint_dir``, else openpi's cache, else the
    HF hub cache (see the module docstring)."""
    if explicit is not None:
        p = Path(explicit)
        if p.is_file():
            return p
        if p.is_dir():
            for name in TOKENIZER_CANDIDATES:
                if (p / name).is_file():
                    return p / name
            raise TokenizerError(
                f"tokenizer= {str(p)!r} is a directory without any of {', '.join(TOKENIZER_CANDIDATES)}")
        raise TokenizerError(f"tokenizer= {str(p)!r} does not exist; pass the path of a SentencePiece .model file")
    base = _base_dir(checkpoint_dir)
    looked = []
    if base is not None:
        for name in TOKENIZER_CANDIDATES:
            cand = base / name
            if cand.is_file():
                return cand
            looked.append(str(cand))
    cand = openpi_tokenizer_path()
    if cand.is_file():
        return cand
    looked.append(str(cand))
    cand = hf_tokenizer_path()
    if cand is not None:
        return cand
    looked.append(str(hf_hub_cache() / ("models--" + HF_REPO.replace("/", "--")) / "snapshots/<rev>/tokenizer.model"))
    hint = ""
    if base is not None and (base / "tokenizer.json").is_file():
        hint = (f" ({base / 'tokenizer.json'} exists but is a Hugging Face tokenizer; flash_rt needs the "
                "SentencePiece .model.)")
    where = ", ".join(looked) if looked else "(no checkpoint directory given)"
    raise TokenizerError(
        "no SentencePiece tokenizer found; looked at " + where + "." + hint +
        " Pass tokenizer='/path/to/paligemma_tokenizer.model' to load_model, or give prompts pre-tokenized as "
        "(token_ids, mask) instead of a string."
    )


def _is_shared_cache(path: Path) -> bool:
    p = path.resolve()
    roots = (openpi_tokenizer_path().parent, hf_hub_cache())
    return any(p.is_relative_to(r.expanduser().resolve()) for r in roots)


def load_tokenizer(checkpoint_dir, explicit=None, vocab: int | None = None) -> Tokenizer:
    """find_tokenizer + load; a corrupt file raises TokenizerError. `vocab`: the checkpoint's embedding rows. A
    tokenizer with more pieces than that always fails (its ids would index past the table); one from a shared cache
    (openpi's, the HF hub's) must match it exactly, since nobody chose that file for this checkpoint. A smaller
    vocabulary chosen on purpose (a file in the checkpoint, or tokenizer=) only warns."""
    path = find_tokenizer(checkpoint_dir, explicit)
    tok = Tokenizer(path)
    log.info("tokenizer: %s (%d pieces)", path, tok.vocab_size)
    if vocab is not None and tok.vocab_size != vocab:
        shared = explicit is None and _is_shared_cache(path)
        if tok.vocab_size > vocab or shared:
            raise TokenizerError(
                f"tokenizer {path} has {tok.vocab_size} pieces but the checkpoint's token embedding has {vocab} rows: "
                f"not the vocabulary this checkpoint expects (PaliGemma's has {PALIGEMMA_VOCAB}). Pass the "
                "tokenizer the checkpoint was trained with as tokenizer='/path/to/paligemma_tokenizer.model'.")
        warnings.warn(f"tokenizer {path} has {tok.vocab_size} pieces, fewer than the checkpoint's {vocab} embedding "
                      "rows: ids stay in range, but check that it is the vocabulary the model was trained with",
                      FlashRTWarning)
    return tok
