"""Setup for every test suite of the repository (``tests/`` and ``integrations/*/tests/``):
offline Hugging Face hub, and the shared fixtures of ``twn_rag.testing.pytest_plugin``."""

import os

# Before anything imports huggingface_hub, which reads these once, at import (the plugin
# below imports twn_rag, and with it huggingface_hub).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["twn_rag.testing.pytest_plugin"]
