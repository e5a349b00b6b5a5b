import threading

import pytest

from twn_rag.loaders.prefetch import prefetched


def test_items_arrive_in_order_from_another_thread():
    threads = []

    def produce():
        for i in range(50):
            threads.append(threading.current_thread())
            yield i

    assert list(prefetched(produce(), max_ahead=4)) == list(range(50))
    assert {t.name for t in threads} == {"twn-rag-prefetch"}


def test_an_error_is_raised_where_it_happened_in_the_stream():
    def produce():
        yield 1
        yield 2
        raise ValueError("page 3 is damaged")

    seen = []
    with pytest.raises(ValueError, match="page 3 is damaged"):
        for item in prefetched(produce(), max_ahead=8):
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_stops_the_producer_and_closes_it_in_its_thread():
    produced, closed_in = [], []

    def produce():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed_in.append(threading.current_thread().name)

    stream = prefetched(produce(), max_ahead=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed_in == ["twn-rag-prefetch"]
    assert len(produced) <= 3 + 2 + 1  # never more than max_ahead beyond what was consumed
