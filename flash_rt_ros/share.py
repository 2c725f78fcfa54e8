"""Where the package's config/ files are at run time: next to the sources (a git checkout, `pip install -e`), in a
colcon install's share/flash_rt_ros/config (found through the ament index), or under <sys.prefix>/share."""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "flash_rt_ros"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def config_dirs() -> list[Path]:
    dirs = [SOURCE_ROOT / "config"]
    try:
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory(PACKAGE)) / "config")
    except (ImportError, LookupError, OSError, ValueError):   # no ament index, or the package is not in it
        pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE / "config")
    return dirs


def config_file(name: str) -> Path:
    """config/<name>; FileNotFoundError naming every place that was looked in."""
    dirs = config_dirs()
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"config/{name} not found in any of: {', '.join(str(d) for d in dirs)}")
