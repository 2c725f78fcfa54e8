"""A tiny real SentencePiece model for tests.

The PaliGemma tokenizer cannot be downloaded here, so tests train a ~512-piece model at test time with the
same special ids (pad 0, eos 1, bos 2, unk 3) and byte fallback so any text encodes. It exercises the real
sentencepiece code path; only the vocabulary is different from PaliGemma's.
"""

from __future__ import annotations

import io
from pathlib import Path

import sentencepiece as spm

_TASKS = (
    "pick up the red block and place it in the bowl",
    "put the black bowl on the plate",
    "open the top drawer of the cabinet",
    "close the microwave door",
    "push the plate to the front of the stove",
    "turn on the stove",
    "put both the alphabet soup and the tomato sauce in the basket",
    "stack the green cup on the yellow cup",
    "move the robot arm to the left wrist camera view",
    "grasp the handle, then pull slowly",
    "fold the towel in half; do not drop it!",
    "put_the_cream_cheese in the bowl?",
)


def _corpus():
    """Deterministic sentences covering the Pi0.5 prompt grammar, digits 0..255 and punctuation."""
    for i, task in enumerate(_TASKS):
        for k in range(8):
            state = " ".join(str((i * 37 + k * 11 + j * 29) % 256) for j in range(8))
            yield f"Task: {task}, State: {state};\nAction: "
            yield task.capitalize() + "."
    yield " ".join(str(n) for n in range(256))
    yield "Task: State: Action: , ; : . ! ? - _ ( ) [ ] \" ' / + = * # @ & %"


def build_tiny_tokenizer(path, vocab_size: int = 512) -> Path:
    """Train a SentencePiece BPE model and write it to ``path`` (a .model file, or a directory that gets
    ``tokenizer.model``). ids: pad 0, eos 1, bos 2, unk 3, like PaliGemma. Deterministic; ~0.02 s.
    Writes nothing but that one file."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.model"
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_corpus(),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,  # Gemma/PaliGemma do not prepend a space
        user_defined_symbols=["\n"],
        num_threads=1,
        minloglevel=2,
    )
    path.write_bytes(buf.getvalue())
    return path
