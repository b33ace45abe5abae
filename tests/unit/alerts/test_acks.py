"""``AckLedger``: a message is acknowledged only once judged and what it caused is durable,
and never before a message that arrived earlier."""

from __future__ import annotations

from dataclasses import dataclass

from services.alerts.acks import AckLedger


@dataclass(slots=True)
class Pub:
    """A publish as the ledger sees paho's ``MQTTMessageInfo``: PUBACKed or not."""

    mid: int
    done: bool = False

    def is_published(self) -> bool:
        return self.done


def test_a_message_that_caused_nothing_is_acknowledged_at_once() -> None:
    ledger = AckLedger()
    ledger.judged(1)
    ledger.judged(2)
    assert ledger.take_ready() == [1, 2]
    assert ledger.take_ready() == [] and len(ledger) == 0


def test_a_message_waits_for_the_puback_of_its_alert_and_holds_back_later_ones() -> None:
    ledger = AckLedger()
    alert = Pub(900)
    ledger.judged(1, [alert])
    ledger.judged(2)
    ledger.judged(3)
    assert ledger.take_ready() == []  # 2 and 3 are judged, but 1 came first
    ledger.settle(published_mid=900)  # paho's callback comes before is_published says so
    assert ledger.take_ready() == [1, 2, 3]


def test_a_publish_acknowledged_before_the_message_was_entered_does_not_hold_it() -> None:
    ledger = AckLedger()
    ledger.judged(1, [Pub(900, done=True)])
    assert ledger.take_ready() == [1]


def test_held_messages_wait_for_the_restore_and_for_what_judging_them_caused() -> None:
    ledger = AckLedger()
    ledger.judged(1, held=True)
    ledger.judged(2, held=True)
    ledger.judged(0)  # a QoS 0 message (retained state): nothing to acknowledge
    assert ledger.take_ready() == []
    fired = Pub(901)
    ledger.judged(0, [fired], releases_held=True)  # the sync marker: 1 and 2 judged now
    assert ledger.take_ready() == []
    fired.done = True
    ledger.settle()
    assert ledger.take_ready() == [1, 2]


def test_a_new_connection_drops_what_the_old_one_had_pending() -> None:
    ledger = AckLedger()
    ledger.judged(1, [Pub(900)])
    ledger.judged(2)
    ledger.new_connection()  # the broker redelivers 1 and 2; their old ids mean nothing now
    ledger.settle(published_mid=900)
    assert ledger.take_ready() == [] and len(ledger) == 0
    ledger.judged(1)  # the redelivery, under a packet id of the new connection
    assert ledger.take_ready() == [1]


def test_a_durable_without_packet_id_is_waited_for_until_it_says_so() -> None:
    # The outbox barrier: records a full disk could not take yet.
    ledger = AckLedger()
    journaled = Pub(0)
    ledger.judged(5, [journaled])
    ledger.settle(published_mid=0)
    assert ledger.take_ready() == []
    journaled.done = True
    ledger.settle()
    assert ledger.take_ready() == [5]


def test_many_held_messages_share_one_wait_for_the_restores_publishes() -> None:
    ledger = AckLedger()
    for mid in range(1, 5001):
        ledger.judged(mid, held=True)
    alerts = [Pub(60_000 + n) for n in range(2000)]
    ledger.judged(0, alerts, releases_held=True)
    for alert in alerts[:-1]:  # PUBACKs come in publish order
        alert.done = True
        ledger.settle()
    assert ledger.take_ready() == [] and len(ledger) == 5001
    ledger.settle(published_mid=alerts[-1].mid)
    assert ledger.take_ready() == list(range(1, 5001))
