"""Every file and symbol the integrator docs name exists, so the docs cannot drift from the code.

Parsed from backticked spans of docs/adding_new_model.md, docs/plugin_model_template.md, docs/stable_api.md and the
template's README: a path (has a "/" and ends in a file suffix, or ends in "/") must exist, resolved from the repo
root, then from flash_rt/; a dotted `flash_rt.x.y` name must import, attribute by attribute. Spans with
placeholders (`<m>`, `<hw>`, `mymodel`, ...) are the pattern, not a file, and are skipped.
"""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["docs/adding_new_model.md", "docs/plugin_model_template.md", "docs/stable_api.md",
        "flash_rt/frontends/torch/_template/README.md"]
PLACEHOLDER = re.compile(r"<|>|\{|mymodel|MyModel|pi06|/path/to|\*")
# names inside a user's checkpoint directory (its layout), not files of this repository
CHECKPOINT_LAYOUT = ("params/", "assets/")
SUFFIXES = (".py", ".md", ".yaml", ".json", ".txt", ".toml")
# dotted names that are not Python symbols, and what they must equal instead
NAMES = {"flash_rt.pipelines": lambda: importlib.import_module("flash_rt.hardware").ENTRY_POINT_GROUP,
         "flash_rt.tokenizer": lambda: importlib.import_module("flash_rt.io.tokenizer").log.name}  # a logger


def _spans(doc: str) -> list[str]:
    text = (ROOT / doc).read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)        # code blocks: checked by running them elsewhere
    return [s.strip() for s in re.findall(r"`([^`\n]+)`", text)]


def _paths(doc):
    for s in _spans(doc):
        s = s.split("::")[0].split(" ")[0].rstrip(",.;:")
        if "/" in s and not PLACEHOLDER.search(s) and (s.endswith(SUFFIXES) or s.endswith("/")) \
                and not s.startswith(("http", "~") + CHECKPOINT_LAYOUT):
            yield s


def _symbols(doc):
    for s in _spans(doc):
        for m in re.finditer(r"\bflash_rt(?:\.[A-Za-z_]\w*)+", s):
            if not PLACEHOLDER.search(s):
                yield m.group(0)


def _resolve_symbol(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(name)


@pytest.mark.parametrize("doc", DOCS)
def test_named_files_exist(doc):
    missing = [p for p in _paths(doc) if not any((base / p).exists() for base in (ROOT, ROOT / "flash_rt"))]
    assert not missing, f"{doc} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_named_symbols_exist(doc):
    missing = []
    for name in sorted(set(_symbols(doc))):
        if name in NAMES:
            assert NAMES[name]() == name, f"{doc}: {name} names something that is now {NAMES[name]()}"
            continue
        try:
            _resolve_symbol(name)
        except (ImportError, AttributeError) as e:
            missing.append(f"{name} ({type(e).__name__}: {e})")
    assert not missing, f"{doc} names symbols that do not exist: {missing}"


def test_the_parser_finds_what_the_docs_name():
    """Guard against a parser that checks nothing: the integrator docs name many files and symbols."""
    paths = {p for d in DOCS for p in _paths(d)}
    symbols = {s for d in DOCS for s in _symbols(d)}
    assert {"frontends/torch/_pi05_cpu_spec.py", "flash_rt/frontends/torch/_template/README.md",
            "test/unit/test_template.py"} <= paths
    assert {"flash_rt.api.LOADER_OPTIONS", "flash_rt.hardware.register_pipeline",
            "flash_rt.testing.first_light.ROUTES"} <= symbols
    assert _resolve_symbol("flash_rt.api.frontend_options")
    with pytest.raises(AttributeError):
        _resolve_symbol("flash_rt.api.no_such_thing")
