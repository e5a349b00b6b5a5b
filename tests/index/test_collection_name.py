"""``twn_rag/index/collection_name.py``: Chroma's collection-name rules, one test per rule,
each verdict compared with what chromadb itself does with the name."""

import pytest

from twn_rag.index import TWNIndex
from twn_rag.index.collection_name import check_collection_name, collection_name_problem


def _chroma_accepts(client, name: str) -> bool:
    try:
        client.create_collection(name, embedding_function=None)
    except Exception:
        return False
    client.delete_collection(name)
    return True


REFUSED = {
    "too short": ("ab", "has 2 characters"),
    "too long": ("a" * 513, "has 513 characters"),
    "a character outside a-zA-Z0-9._-": ("my docs", "may contain only"),
    "a non-ASCII letter": ("dossiér", "may contain only"),
    "starts with a period": (".docs", "start and end with a letter or a digit"),
    "ends with a hyphen": ("docs-", "start and end with a letter or a digit"),
    "two consecutive periods": ("a..b", "two consecutive periods"),
    "an IPv4 address": ("127.0.0.1", "is an IPv4 address"),
    "another IPv4 address": ("0.1.2.3", "is an IPv4 address"),
}
ACCEPTED = {
    "three characters": "abc",
    "512 characters": "a" * 512,
    "dots, hyphens and underscores inside": "a.-_b",
    "numbers that are no IPv4 address (an octet above 255)": "999.1.1.1",
    "numbers that are no IPv4 address (leading zeros)": "01.02.03.04",
    "five dotted numbers": "1.2.3.4.5",
}


@pytest.mark.parametrize("name, reason", REFUSED.values(), ids=REFUSED)
def test_each_rule_refuses_what_chroma_refuses(chroma_client, name, reason):
    assert not _chroma_accepts(chroma_client, name)
    assert reason in collection_name_problem(name)
    with pytest.raises(ValueError, match=f"collection name {name!r} is not valid for Chroma: it"):
        check_collection_name(name)


@pytest.mark.parametrize("name", ACCEPTED.values(), ids=ACCEPTED)
def test_names_chroma_accepts_pass(chroma_client, name):
    assert _chroma_accepts(chroma_client, name)
    assert collection_name_problem(name) is None


@pytest.mark.parametrize("name", ["a..b", "127.0.0.1"])
def test_open_refuses_the_name_before_anything_is_created(tmp_path, embedder, name):
    with pytest.raises(ValueError, match="is not valid for Chroma"):
        TWNIndex.open(tmp_path / "index", embedder, collection=name)
    assert not (tmp_path / "index").exists()
