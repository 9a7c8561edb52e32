"""Where the files shipped beside the code are: the demo DBC set, the example configuration, the
systemd units (``[tool.setuptools.data-files]`` in pyproject.toml).

An installed package has them under ``<venv>/share/edgemon/``; a source checkout (editable
install, tests) has them in the checkout itself. ``scripts/install-gateway.sh`` copies them from
the venv into ``/etc/edgemon``, where they are configuration.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def share_dir(prefix: str = sys.prefix) -> Path | None:
    """``<prefix>/share/edgemon`` when the package was installed with its data files."""
    path = Path(prefix) / "share" / "edgemon"
    return path if (path / "dbc").is_dir() else None


def dbc_dir(prefix: str = sys.prefix) -> Path:
    """The shipped DBC set: the installed one, else this checkout's ``dbc/``."""
    shared = share_dir(prefix)
    return shared / "dbc" if shared is not None else _CHECKOUT / "dbc"


def demo_dbc(prefix: str = sys.prefix) -> Path:
    return dbc_dir(prefix) / "demo_vehicle.dbc"


def demo_map(prefix: str = sys.prefix) -> Path:
    return dbc_dir(prefix) / "demo_vehicle.map.toml"
