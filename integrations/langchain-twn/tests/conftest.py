"""The tests of ``langchain-twn``, laid out as LangChain's partner packages lay theirs out:
``unit_tests/`` (``TWNEmbeddings`` on its own, and the standard unit suite) and
``integration_tests/`` (with a real Chroma store, and the standard integration suite).

The shared fixtures (``tiny_ckpt``, ``embedder``, ``document_texts``, ``image_files``,
``chroma_client``) come from ``twn_rag.testing.pytest_plugin``, registered in the repository's
top-level ``conftest.py``. This conftest, loaded in pytest's default ``prepend`` import mode,
puts this folder on ``sys.path``, so both suites import ``tiny_twn_params`` from it.
"""
