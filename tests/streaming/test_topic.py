"""The topic's flat, segmented storage: every offset not yet committed keeps its time and id through
drops of committed records and segment growth, whatever the partitions' lags."""

from __future__ import annotations

import numpy as np

from capsim.serving.streaming.topic import Topic


def test_offsets_keep_their_records_through_drops_and_growth() -> None:
    rng = np.random.default_rng(3)
    topic = Topic(3, with_ids=True, capacity=4)
    expected: list[list[tuple[float, int]]] = [[], [], []]
    next_id = 0
    for chunk in range(40):
        n = int(rng.integers(1, 30))
        times = np.sort(rng.uniform(chunk, chunk + 1, n))
        keys = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])  # uneven: partition 0 lags far more
        ids = np.arange(next_id, next_id + n)
        next_id += n
        topic.append_chunk(keys, times, ids)
        for t, k, i in zip(times, keys, ids, strict=True):
            expected[k].append((float(t), int(i)))
        for p in range(3):  # commit part of what is there; partition 0 only a little
            share = 0.1 if p == 0 else 0.8
            end = topic.log_end(p)
            topic.committed[p] += int(share * (end - topic.committed[p]))
            topic.position[p] = topic.committed[p]
            rows = np.arange(topic.committed[p], end) - topic.origin[p]
            want = expected[p][int(topic.committed[p]) : end]
            assert end == len(expected[p])
            assert topic.times[rows].tolist() == [t for t, _ in want]
            assert topic.ids[rows].tolist() == [i for _, i in want]
    # memory follows each partition's own backlog: the small partitions' segments stay small
    assert topic.cap[2] < topic.cap[0] / 4
