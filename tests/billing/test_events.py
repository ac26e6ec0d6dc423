"""Reading Stripe's events (current and older API shapes) and the rule for their order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.billing.events import (
    MalformedEventError,
    checkout_state,
    invoice_outcome,
    subscription_state,
    supersedes,
)
from app.tiers.matrix import Tier

PRICES = {"price_pro": Tier.PRO, "price_team": Tier.TEAM}
T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_subscription_in_the_current_shape_period_on_its_item() -> None:
    user_id = uuid.uuid4()
    state = subscription_state(
        {
            "id": "sub_1",
            "object": "subscription",
            "customer": "cus_1",
            "status": "active",
            "cancel_at_period_end": True,
            "metadata": {"user_id": str(user_id), "tier": "power"},
            "items": {
                "data": [
                    {
                        "price": {"id": "price_team"},
                        "quantity": 3,
                        "current_period_end": int(T1.timestamp()),
                    }
                ]
            },
        },
        prices=PRICES,
    )

    # The price decides the tier; the metadata is only a fallback.
    assert (state.tier, state.seats, state.status) == (Tier.TEAM, 3, "active")
    assert (state.customer_id, state.user_id) == ("cus_1", user_id)
    assert (state.current_period_end, state.cancel_at_period_end) == (T1, True)


def test_a_subscription_in_the_older_shape_and_an_unknown_price() -> None:
    state = subscription_state(
        {
            "id": "sub_1",
            "customer": {"id": "cus_1", "object": "customer"},
            "status": "past_due",
            "current_period_end": int(T0.timestamp()),
            "metadata": {"tier": "pro", "user_id": "not-a-uuid"},
            "items": {"data": [{"price": "price_elsewhere"}]},
        },
        prices=PRICES,
    )

    assert (state.tier, state.seats, state.customer_id) == (Tier.PRO, None, "cus_1")
    assert (state.current_period_end, state.user_id) == (T0, None)


def test_a_subscription_without_id_or_status_is_malformed() -> None:
    with pytest.raises(MalformedEventError):
        subscription_state({"object": "subscription", "status": "active"}, prices=PRICES)


@pytest.mark.parametrize(
    ("payment_status", "status"),
    [("paid", "active"), ("no_payment_required", "active"), ("unpaid", "incomplete")],
)
def test_a_completed_checkout_is_active_once_paid(payment_status: str, status: str) -> None:
    user_id = uuid.uuid4()
    state = checkout_state(
        {
            "mode": "subscription",
            "subscription": "sub_1",
            "customer": "cus_1",
            "payment_status": payment_status,
            "client_reference_id": str(user_id),
            "metadata": {"tier": "free", "seats": "0"},
        }
    )

    assert state is not None
    assert (state.status, state.user_id) == (status, user_id)
    assert (state.tier, state.seats) == (None, None)  # free is no paid tier; 0 no seat count


def test_a_one_off_payment_checkout_is_not_about_a_subscription() -> None:
    assert checkout_state({"mode": "payment", "customer": "cus_1"}) is None


def test_an_invoice_names_its_subscription_in_either_shape() -> None:
    current = invoice_outcome(
        {"parent": {"subscription_details": {"subscription": "sub_1"}}, "customer": "cus_1"},
        paid=True,
    )
    older = invoice_outcome({"subscription": "sub_2"}, paid=False)
    one_off = invoice_outcome({"customer": "cus_1"}, paid=True)

    assert current is not None
    assert (current.subscription_id, current.paid) == ("sub_1", True)
    assert older is not None
    assert (older.subscription_id, older.paid) == ("sub_2", False)
    assert one_off is None


@pytest.mark.parametrize(
    ("stored", "incoming", "applies"),
    [
        pytest.param((100, "active", T0), (200, "past_due", T0), True, id="newer"),
        pytest.param((200, "past_due", T0), (100, "active", T0), False, id="older"),
        pytest.param((100, "active", T1), (200, "active", T0), False, id="older-period"),
        pytest.param((100, "active", T0), (200, "active", T1), True, id="renewal"),
        pytest.param((100, "canceled", T0), (200, "active", T0), False, id="never-revived"),
        pytest.param((100, "active", T0), (100, "incomplete", None), False, id="same-second-back"),
        pytest.param((100, "incomplete", None), (100, "active", T0), True, id="same-second-on"),
        pytest.param((100, "active", T0), (100, "past_due", T0), True, id="same-second-same"),
        pytest.param((100, "active", T0), (100, "canceled", T0), True, id="same-second-end"),
    ],
)
def test_supersedes(
    stored: tuple[int, str, datetime | None],
    incoming: tuple[int, str, datetime | None],
    applies: bool,
) -> None:
    assert (
        supersedes(
            stored_at=stored[0],
            stored_status=stored[1],
            stored_period_end=stored[2],
            event_created=incoming[0],
            status=incoming[1],
            period_end=incoming[2],
        )
        is applies
    )
