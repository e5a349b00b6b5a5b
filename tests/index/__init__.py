"""Tests of ``twn_rag.index``, one module per module they exercise. A package, so that its
module names (``index.test_manifest``) cannot clash with a test module elsewhere."""
