"""Ingest batching: by size, by age, acknowledgements in arrival order."""

from __future__ import annotations

from services.ingest.batcher import Batcher


def test_due_when_full() -> None:
    batcher = Batcher(max_points=3, max_wait_s=10)
    for i in range(3):
        assert not batcher.due(0.0)
        batcher.add_point(f"m v={i} {i}", ("t", b"p", 0), i, (i + 1, 1, 1), now_s=0.0)
    assert batcher.due(0.0)
    batch = batcher.take()
    assert batch.lines == ["m v=0 0", "m v=1 1", "m v=2 2"]
    assert batch.body() == b"m v=0 0\nm v=1 1\nm v=2 2\n"
    assert len(batcher) == 0 and not batcher.due(100.0)


def test_due_by_age_of_oldest_message() -> None:
    batcher = Batcher(max_points=100, max_wait_s=0.2)
    assert batcher.wait_s(5.0) is None
    batcher.add_point("m v=1 1", ("t", b"p", 0), 1, (1, 1, 1), now_s=5.0)
    batcher.add_point("m v=2 2", ("t", b"p", 0), 2, (2, 1, 1), now_s=5.15)
    assert not batcher.due(5.19)
    assert abs((batcher.wait_s(5.1) or 0) - 0.1) < 1e-9
    assert batcher.due(5.2)


def test_rejected_messages_keep_their_place_in_the_ack_order() -> None:
    batcher = Batcher(max_points=10, max_wait_s=1)
    batcher.add_point("m v=1 1", ("t", b"a", 0), 1, (1, 1, 1), now_s=0)
    batcher.add_ack((2, 1, 1), now_s=0)  # a dead-lettered message
    batcher.add_point("m v=3 3", ("t", b"c", 0), 3, (3, 1, 1), now_s=0)
    batch = batcher.take()
    assert [mid for mid, _, _ in batch.acks] == [1, 2, 3]
    assert len(batch.lines) == 2 and len(batch.origins) == 2


def test_only_rejections_still_make_a_batch_to_acknowledge() -> None:
    batcher = Batcher(max_points=2, max_wait_s=1)
    batcher.add_ack((1, 1, 1), now_s=0)
    batcher.add_ack((2, 1, 1), now_s=0)
    assert batcher.due(0)
    batch = batcher.take()
    assert batch.body() == b"" and len(batch.acks) == 2
