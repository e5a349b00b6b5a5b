"""The one result-metadata schema (``twn_rag/result_metadata.py``): what every route writes, and
reading records written in the current schema, in ``TWNIndex``'s old one and in the
integrations' old one (before ``twn_thought_used``)."""

import numpy as np
import pytest

from twn_rag import EmbeddingResult
from twn_rag.result_metadata import (
    QUERY_RESULT_METADATA_KEYS,
    QUERY_TEXT_TRUNCATION_KEYS,
    RESULT_METADATA_KEYS,
    TEXT_TRUNCATION_KEYS,
    RecordedResult,
    current_metadata,
    query_result_metadata,
    recorded_result,
    result_metadata,
)

VECTOR = np.ones(4, dtype=np.float32) / 2


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (EmbeddingResult(VECTOR, "It is a chart.", 5, 0.75), ("It is a chart.", 0.75, 5, True)),
        (EmbeddingResult(VECTOR, None, 0, 0.25), ("", 0.25, 0, False)),
        # A thought was generated but decoded empty: twn_thought alone could not say it thought.
        (EmbeddingResult(VECTOR, "", 1, 0.5), ("", 0.5, 1, True)),
    ],
)
def test_written_and_read_back(result, expected):
    written = result_metadata(result)
    assert tuple(written) == RESULT_METADATA_KEYS and tuple(written.values()) == expected
    assert [type(v) for v in written.values()] == [str, float, int, bool]
    recorded = recorded_result({"source": "a.pdf", **written})
    assert recorded == RecordedResult(result.thought, result.thought_tokens, result.gate_score)
    assert result_metadata(recorded) == written
    assert dict(zip(RESULT_METADATA_KEYS, query_result_metadata(result).values())) == written
    assert tuple(query_result_metadata(result)) == QUERY_RESULT_METADATA_KEYS


def test_twn_index_records_of_the_old_schema_read_as_the_current_one():
    thought = {"source": "a.pdf", "gate_score": 0.8, "thought_tokens": 3, "thought_used": True, "thought": "A page."}
    no_thought = {"source": "b.pdf", "gate_score": 0.1, "thought_tokens": 0, "thought_used": False}
    assert recorded_result(thought) == RecordedResult("A page.", 3, 0.8)
    assert recorded_result(no_thought) == RecordedResult(None, 0, 0.1)
    assert current_metadata(thought) == {"source": "a.pdf", **result_metadata(RecordedResult("A page.", 3, 0.8))}
    assert current_metadata(no_thought) == {"source": "b.pdf", **result_metadata(RecordedResult(None, 0, 0.1))}


def test_integration_records_before_thought_used_read_as_the_current_one():
    old = {"twn_thought": "", "twn_gate_score": 0.3, "twn_thought_tokens": 0, "name": "x"}
    assert recorded_result(old) == RecordedResult(None, 0, 0.3)
    assert recorded_result({**old, "twn_thought": "Hm.", "twn_thought_tokens": 2}) == RecordedResult("Hm.", 2, 0.3)
    assert current_metadata(old) == {**old, "twn_thought_used": False}


def test_records_without_a_result_are_left_alone():
    # A user's own "thought" key, in a record that twn-rag did not embed, is not mistaken for ours.
    plain = {"source": "notes", "thought": "mine"}
    assert recorded_result(plain) is None and recorded_result(None) is None
    assert current_metadata(plain) == plain
    current = {"twn_gate_score": 0.5, "twn_thought": "", "twn_thought_tokens": 0, "twn_thought_used": False}
    assert current_metadata({**current, "thought": "mine"}) == {**current, "thought": "mine"}


def test_a_text_cut_to_the_token_cap_is_recorded_and_read_back():
    cut = EmbeddingResult(VECTOR, None, 0, 0.25, text_tokens_original=9876)
    written = result_metadata(cut)
    assert written == {
        **result_metadata(EmbeddingResult(VECTOR, None, 0, 0.25)),
        "twn_text_truncated": True,
        "twn_text_tokens_original": 9876,
    }
    assert tuple(written)[len(RESULT_METADATA_KEYS) :] == TEXT_TRUNCATION_KEYS
    recorded = recorded_result({"source": "a.pdf", **written})
    assert recorded == RecordedResult(None, 0, 0.25, text_tokens_original=9876)
    assert current_metadata({"source": "a.pdf", **written}) == {"source": "a.pdf", **written}
    assert query_result_metadata(cut)["twn_query_text_tokens_original"] == 9876
    assert set(query_result_metadata(cut)) == {*QUERY_RESULT_METADATA_KEYS, *QUERY_TEXT_TRUNCATION_KEYS}
