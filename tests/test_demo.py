from twn_rag import demo


def test_demo_indexes_searches_and_reports_the_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_CACHE", tmp_path / "cache")
    monkeypatch.setattr(demo, "DEMO_OUTPUT", tmp_path / "out")
    demo.main()
    first = capsys.readouterr().out
    assert "indexed 2 files (9 items added, 0 old items removed), 0 unchanged, 0 skipped, 0 failed" in first
    hits = [line for line in first.splitlines() if line.startswith("  ") and line.count("\t") == 5]
    assert len(hits) == 6  # 3 for each of the 2 queries
    assert "document budget: thought" in first and "token budget 48" in first
    demo.main()  # a second run finds everything indexed
    assert "indexed 0 files (0 items added, 0 old items removed), 2 unchanged" in capsys.readouterr().out
