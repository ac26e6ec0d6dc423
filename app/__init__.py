"""Adiuva server: the agent brain behind the Adiuva desktop app."""

import os
from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml's `[project] version`, the one place it is written.
    __version__ = version("adiuva-server")
except PackageNotFoundError as exc:
    msg = "adiuva-server is not installed: run `make install` (or `pip install -e .`)"
    raise ImportError(msg) from exc

# LiteLLM downloads its model cost map at import unless told to use the bundled
# copy; the server must never reach for the internet on its own. Set here, the
# first module every entry point imports, so it precedes any litellm import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
