"""Errors raised by flash_rt.

Every error says what was wrong and what was expected, so a robot operator reading a log line can fix the
input without reading our source. All of them derive from FlashRTError; the input-side ones are also
ValueError so generic callers that catch ValueError keep working.
"""


class FlashRTError(Exception):
    """Base class of every error flash_rt raises on purpose."""


class CheckpointError(FlashRTError, ValueError):
    """The checkpoint is missing, truncated, or its tensors do not match the model's key schema."""


class TokenizerError(FlashRTError, ValueError):
    """No usable SentencePiece model, or a prompt that cannot be tokenized as asked."""


class InputError(FlashRTError, ValueError):
    """An observation (image, state, prompt, noise) has the wrong shape, dtype or values."""


class HardwareError(FlashRTError, RuntimeError):
    """The (model, framework, hardware) combination is not supported, or detection failed."""


class CacheError(FlashRTError, RuntimeError):
    """A weight or calibration cache entry is corrupt; callers rebuild it and report this."""
