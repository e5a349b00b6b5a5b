"""``TWNConfig`` (``twn_rag/config.py``): the text token cap in ``twn_config.json``."""

import json

import pytest

from twn_rag.config import CONFIG_FILENAME, DEFAULT_MAX_INPUT_TOKENS, TWNConfig


def test_max_input_tokens_is_saved_loaded_and_defaults_for_older_files(tmp_path):
    assert TWNConfig().max_input_tokens == DEFAULT_MAX_INPUT_TOKENS == 2048
    TWNConfig(max_input_tokens=None).save(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILENAME).read_text())["max_input_tokens"] is None
    assert TWNConfig.load(tmp_path).max_input_tokens is None  # null: no cap
    (tmp_path / CONFIG_FILENAME).write_text(json.dumps({"gate_threshold": 0.4}))  # written before the cap
    assert TWNConfig.load(tmp_path).max_input_tokens == DEFAULT_MAX_INPUT_TOKENS


def test_a_cap_below_one_token_is_refused():
    with pytest.raises(ValueError, match="max_input_tokens"):
        TWNConfig(max_input_tokens=0)
