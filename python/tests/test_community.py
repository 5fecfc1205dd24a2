"""In-process community: the encrypted path equals the plaintext model,
exactly, for every billing model; the masking rounds (pairwise keys from
the member list, dropout correction) run in LocalCommunity."""

from decimal import Decimal

import numpy as np
import pytest

import private_billing as pb
from private_billing import (
    BillingModel,
    CycleContext,
    Data,
    HiddenBill,
    HiddenData,
    LocalCommunity,
    plaintext_bills,
)

from conftest import community_dict


def parts(c, model):
    ctx = CycleContext(c["cycle_id"], model=model, **c["prices"])
    data = {
        str(h["id"]): Data(
            c["cycle_id"], promises_kwh=h["promises_kwh"], actual_kwh=h["actual_kwh"]
        )
        for h in c["households"]
    }
    return ctx, data


@pytest.mark.parametrize("model", ["ucs", "ucs-reference", BillingModel.PROPORTIONAL])
def test_encrypted_bills_equal_the_plaintext_model(model):
    c = community_dict(households=5, slots=12, seed=3)
    ctx, data = parts(c, model)
    community = LocalCommunity(data)
    bills = community.bill(ctx, data, max_workers=4)
    expected = plaintext_bills(ctx, data)
    assert set(bills) == set(data)
    for h in data:
        assert bills[h] == expected[h]
        assert bills[h].bill == expected[h].bill
        assert bills[h].reward == expected[h].reward
        assert isinstance(bills[h].bill, Decimal)
        assert bills[h].cycle_id == c["cycle_id"]
        assert bills[h].household_id == h
    assert all(b.bill >= 0 and b.reward >= 0 for b in bills.values())


def test_readme_example_is_exact():
    ctx = CycleContext(1, trading=[0.21, 0.24], retail=[0.32, 0.35], feed_in=[0.06, 0.06])
    data = {
        "house-001": Data(1, promises_kwh=[0.4, -0.8], actual_kwh=[0.45, -0.7]),
        "house-002": Data(1, promises_kwh=[0.3, 0.5], actual_kwh=[0.3, 0.6]),
        "house-003": Data(1, promises_kwh=[-0.5, 0.2], actual_kwh=[-0.6, 0.1]),
    }
    bills = LocalCommunity(data).bill(ctx, data)
    assert bills["house-002"].bill == Decimal("0.218")
    assert bills["house-002"].reward == 0
    assert bills["house-001"].total == Decimal("-0.0735")
    assert str(bills["house-003"].reward) == "0.11850000"


def test_dropout_correction_round():
    c = community_dict(households=5, slots=6, seed=4)
    ctx, data = parts(c, "ucs")
    community = LocalCommunity(data)
    survivors = dict(list(data.items())[:4])
    bills = community.bill(ctx, survivors)
    assert set(bills) == set(survivors)
    assert bills == plaintext_bills(ctx, survivors)


def test_the_rounds_by_hand_with_serialized_messages():
    """What LocalCommunity does, spelled out: the seed's data flow."""
    c = community_dict(households=3, slots=4, seed=5)
    ctx, data = parts(c, "ucs")
    ids = list(data)
    identities = {h: pb.IdentityKey.generate() for h in ids}
    members = {h: k.public for h, k in identities.items()}
    households = {h: pb.HidingContext(h, identities[h], members) for h in ids}
    billing = pb.SharedBilling(min_members=3)
    for h in ids:
        billing.register_member(h, households[h].public_key())
    billing.record_context(ctx)
    for h in ids:
        wire = households[h].hide(data[h], ctx).serialize()
        assert isinstance(wire, bytes)
        billing.record_data(HiddenData.deserialize(wire))
    assert billing.is_ready(ctx.cycle_id)
    hidden = billing.compute_bills(ctx.cycle_id)
    expected = plaintext_bills(ctx, data)
    for h in ids:
        hb = HiddenBill.deserialize(hidden[h].serialize())
        assert hb == hidden[h]
        assert households[h].decrypt(hb) == expected[h]


def test_vectors_accept_lists_tuples_numpy_and_decimals():
    a = Data(1, promises_kwh=[0.5, 1, Decimal("-0.25")], actual_kwh=(0.5, 1.0, -0.25))
    b = Data(
        1,
        promises_kwh=np.array([0.5, 1.0, -0.25]),
        actual_kwh=np.array([0.5, 1.0, -0.25], dtype=np.float32),
    )
    assert a.promises_kwh == b.promises_kwh == [Decimal("0.5"), Decimal("1"), Decimal("-0.25")]
    assert a.actual_kwh == b.actual_kwh
    ctx = CycleContext(2, trading=np.full(3, 0.2), retail=np.full(3, 0.3), feed_in=[0.05] * 3)
    assert ctx.trading == [Decimal("0.2")] * 3
    assert ctx.slots == 3 and ctx.model == "ucs"
    ints = Data(1, promises_kwh=np.arange(3), actual_kwh=np.arange(3, dtype=np.int32))
    assert ints.actual_kwh == [Decimal(0), Decimal(1), Decimal(2)]


def test_rounding_warns_or_is_refused():
    with pytest.warns(UserWarning, match="rounded half away from zero"):
        d = Data(1, promises_kwh=[0.5005], actual_kwh=[0.1])
    assert d.promises_kwh == [Decimal("0.501")]
    with pytest.raises(ValueError, match="finer than the unit"):
        Data(1, promises_kwh=[0.5005], actual_kwh=[0.1], strict_units=True)


def test_hide_releases_the_gil():
    """While a thread hides, other Python threads keep running: with the
    GIL held they would get about one turn per hide."""
    import threading
    import time

    ids = [f"m{i:04}" for i in range(1000)]
    me = pb.IdentityKey.generate()
    members = {h: pb.IdentityKey.generate().public for h in ids[1:]}
    members[ids[0]] = me.public
    hc = pb.HidingContext(ids[0], me, members)
    slots = 672
    ctx = CycleContext(1, trading=[0.2] * slots, retail=[0.3] * slots, feed_in=[0.05] * slots)
    d = Data(1, promises_kwh=[0.5] * slots, actual_kwh=[0.4] * slots)
    hides = 20
    done = threading.Event()

    def work():
        for _ in range(hides):
            hc.hide(d, ctx)
        done.set()

    worker = threading.Thread(target=work)
    turns = 0
    worker.start()
    while not done.is_set():
        turns += 1
        time.sleep(0.0005)
    worker.join()
    assert turns > 5 * hides, turns
