"""The Home and Floating supervisors, their sub-agents, prompts and models."""

import os

# LiteLLM downloads its model cost map at import unless told to use the bundled
# copy; agents must never reach for the internet on their own. Set here, before
# any module of this package imports litellm.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
