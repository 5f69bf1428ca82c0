"""The request log's batch books and arrival-time lookups: what the replicas' hot path relies on."""

from __future__ import annotations

import math

import numpy as np

from capsim.metrics.request_log import COMPLETED, IN_FLIGHT, Columns, RequestLog


def test_books_spread_batches_onto_their_rows() -> None:
    log = RequestLog(capacity=8)
    first = log.append_arrivals(np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]))
    book_a, book_b = log.batch_book(0), log.batch_book(3)
    book_a.ids.append([first + 0])
    book_a.start_s.append(0.0)
    book_a.end_s.append(0.5)
    book_b.ids.append([first + 1, first + 2, first + 4])  # a batch of three
    book_b.start_s.append(0.4)
    book_b.end_s.append(0.9)
    book_b.ids.append([first + 5])  # still in service at the end of the run
    book_b.start_s.append(0.6)
    book_b.end_s.append(math.nan)
    log.apply_book(book_a)  # one book early, as a replica does every BatchBook.APPLY_AT batches
    assert not book_a.ids and not book_a.start_s and not book_a.end_s
    cols = log.view()  # the rest on demand
    assert not book_b.ids
    np.testing.assert_array_equal(cols["start_s"], [0.0, 0.4, 0.4, np.nan, 0.4, 0.6])
    np.testing.assert_array_equal(cols["end_s"], [0.5, 0.9, 0.9, np.nan, 0.9, np.nan])
    assert cols["batch_size"].tolist() == [1, 3, 3, 0, 3, 1]
    assert cols["replica"].tolist() == [0, 3, 3, -1, 3, 3]
    assert cols["outcome"].tolist() == [COMPLETED, COMPLETED, COMPLETED, IN_FLIGHT, COMPLETED, IN_FLIGHT]


def test_arrival_time_is_a_python_float_from_any_chunk_still_in_the_log() -> None:
    flushed: list[Columns] = []
    log = RequestLog(capacity=4, flush=lambda cols: flushed.append({k: v.copy() for k, v in cols.items()}))
    first = log.append_arrivals(np.array([1.0, 2.0, 3.0]))
    book = log.batch_book(0)
    book.ids.append([first])  # request 0 finishes: the next chunk flushes it out of the log
    book.start_s.append(1.0)
    book.end_s.append(1.5)
    second = log.append_arrivals(np.array([4.0, 5.0, 6.0]))
    assert log.base == 1 and len(flushed) == 1  # row 0 left the log; ids 1 and 2 are in an older chunk
    for request_id, expected in ((first + 1, 2.0), (first + 2, 3.0), (second, 4.0), (second + 2, 6.0)):
        value = log.arrival_time_s(request_id)
        assert type(value) is float and value == expected  # never a numpy scalar (it would reach the clock)
