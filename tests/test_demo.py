import re

from twn_rag import demo


def test_demo_indexes_searches_and_reports_the_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_OUTPUT", tmp_path / "out")
    demo.main()
    first = capsys.readouterr().out
    # 60 card pages and one frame per colour (8 s of video sampled at 1 frame/s)
    assert "indexed 2 files (68 items added, 0 old items removed), 0 unchanged, 0 skipped, 0 failed" in first
    searches = re.findall(r"search '(.*)' \(right answer: .*\); gate (\d\.\d\d), (no thought|thought '.*')", first)
    assert len(searches) == len(demo.demo_queries(demo.mini_world()))
    hits = re.findall(
        r"^  \d\.\d{3}  (cards\.pdf page \d+  'This is card number \d+\.'|colours\.mp4 t=\d+s  \(a \w+ frame\))$",
        first,
        re.M,
    )
    assert len(hits) == 3 * len(searches)
    assert "'This is card number 12.'" in hits[0]  # "number 12" needs no thought
    summary = re.search(r"for all (\d+) names TWN training never saw: (\d+) find the right card first", first)
    assert summary and int(summary[2]) <= int(summary[1]) == len(demo.mini_world().names("test"))
    assert "document budget: thought 0/68 items" in first and "query budget: thought" in first
    demo.main()  # a second run finds everything indexed
    assert "indexed 0 files (0 items added, 0 old items removed), 2 unchanged" in capsys.readouterr().out
