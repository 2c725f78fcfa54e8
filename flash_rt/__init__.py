"""flash_rt: realtime inference for vision-language-action robot policies (Pi0.5)."""
__version__ = "0.1.0"

from flash_rt.api import Policy, load_model  # noqa: E402
from flash_rt.hardware import register_pipeline  # noqa: E402

__all__ = ["load_model", "Policy", "register_pipeline", "__version__"]
