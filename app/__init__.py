"""Adiuva server: the agent brain behind the Adiuva desktop app."""

import os

__version__ = "0.1.0"

# LiteLLM downloads its model cost map at import unless told to use the bundled
# copy; the server must never reach for the internet on its own. Set here, the
# first module every entry point imports, so it precedes any litellm import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
