"""Scripted language models for tests: an OpenAI-compatible server and a fake chat model.

Importing anything from this package first sets `LITELLM_LOCAL_MODEL_COST_MAP`, so a
later `import litellm` (or `langchain_litellm`) reads the bundled cost map instead of
trying to download one. Python runs this file before any module of the package, test
modules included, which is why the variable is set here rather than in each module.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
