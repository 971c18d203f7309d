"""EventTimeline: a run's events handed out in time order, held while something not
known yet could still be dated before them."""

from __future__ import annotations

from labrig.orchestrator.events import EventKind, EventTimeline, PendingEvent

K = EventKind


def test_events_come_out_in_time_order_and_wait_for_the_bound() -> None:
    tl = EventTimeline()
    tl.add(K.step_started, 0.0, {"step_id": 1})
    tl.add(K.step_started, 42.0, {"step_id": 2})
    tl.add(K.step_started, 78.0, {"step_id": 3})
    # step 1 is not reported yet: its end falls at 42 at the earliest
    assert [e.data["step_id"] for e in tl.due((42.0, 0))] == [1]
    tl.add(K.step_ended, 78.0, {"step_id": 2})
    tl.add(K.step_ended, 42.0, {"step_id": 1})
    tl.add(K.cycle_ended, 78.0, {"cycle": 1})
    got = [(e.time_s, e.kind) for e in tl.due(None)]
    assert got == [
        (42.0, K.step_ended),
        (42.0, K.step_started),
        (78.0, K.step_ended),
        (78.0, K.cycle_ended),
        (78.0, K.step_started),
    ]
    assert len(tl) == 0


def test_a_cycle_that_may_be_over_holds_what_the_host_did_after_it() -> None:
    tl = EventTimeline()
    tl.add(K.step_ended, 100.0, {"step_id": 2})
    tl.add(K.checkpoint_started, 130.0, {"checkpoint": "eis"})
    bound = (100.0, 1)  # the cycle may have ended at its last record, 100
    assert [e.kind for e in tl.due(bound)] == [K.step_ended]
    tl.add(K.cycle_ended, 100.0, {"cycle": 1})
    assert [e.kind for e in tl.due(None)] == [K.cycle_ended, K.checkpoint_started]


def test_nothing_is_dated_before_what_was_handed_out_and_pending_round_trips() -> None:
    tl = EventTimeline()
    tl.add(K.paused, 50.0, {})
    assert [e.time_s for e in tl.due(None)] == [50.0]
    tl.add(K.notify, 40.0, {"message": "late"})
    tl.add(K.resumed, 60.0, {})
    held = tl.pending()
    again = EventTimeline()
    again.extend(PendingEvent.from_list(e.to_list()) for e in held)
    assert [(e.kind, e.time_s) for e in again.pending()] == [(K.notify, 40.0), (K.resumed, 60.0)]
    assert [e.time_s for e in tl.due(None)] == [50.0, 60.0]
