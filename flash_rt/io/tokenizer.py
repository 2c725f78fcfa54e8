"""SentencePiece tokenizer loading (pi05_spec.md section 1b).

openpi tokenizes with the PaliGemma SentencePiece ``.model`` (257,152 ids, BOS 2, pad 0). The file is not
shipped inside model checkpoints and cannot be downloaded at run time here, so we look for it next to the
checkpoint and, if it is absent, tell the user both how to point at it and how to skip it entirely by
passing pre-tokenized prompts.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm

from flash_rt.errors import TokenizerError

# Relative to the checkpoint directory, in the order we try them.
TOKENIZER_CANDIDATES = ("tokenizer.model", "paligemma_tokenizer.model", "assets/paligemma_tokenizer.model")


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
    checkpoint), else the first of TOKENIZER_CANDIDATES found in ``checkpoint_dir``."""
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


def load_tokenizer(checkpoint_dir, explicit=None) -> Tokenizer:
    """find_tokenizer + load; a corrupt file raises TokenizerError."""
    return Tokenizer(find_tokenizer(checkpoint_dir, explicit))
