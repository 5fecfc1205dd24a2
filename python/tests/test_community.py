"""In-process community: the encrypted path equals the plaintext model,
exactly, for every billing model; LocalCommunity runs the SecAgg+ rounds
(pb-secagg) with households dropping out between them, and the PRZS path
(pairwise keys from the member list, dropout correction) runs by hand."""

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


def test_bill_with_a_household_missing():
    c = community_dict(households=5, slots=6, seed=4)
    ctx, data = parts(c, "ucs")
    community = LocalCommunity(data)
    survivors = dict(list(data.items())[:4])
    bills = community.bill(ctx, survivors)
    assert set(bills) == set(survivors)
    assert bills == plaintext_bills(ctx, survivors)
    assert community.dropped == [list(data)[4]]
    assert community.round == "done"


@pytest.mark.parametrize("model", ["ucs", "ucs-reference", "proportional"])
def test_secagg_rounds_with_dropouts_before_masking_and_before_unmasking(model):
    """The rounds one by one. h1 leaves after sharing (before masking): it
    is not in the sum and gets no bill. h2 leaves after masking and h3
    after confirming (both before the unmasking): their data is in the
    survivors' sum (the edge recovers their self masks from the others'
    shares), the edge bills them, but they are not there to decrypt. Every
    household still there gets exactly the plaintext bill of the survivor
    set."""
    c = community_dict(households=8, slots=6, seed=31)
    ctx, data = parts(c, model)
    ids = list(data)
    community = LocalCommunity(ids)
    assert community.household_ids == ids
    assert community.degree == 7  # complete graph at 8 households
    assert community.round is None

    assert community.advertise(ctx) == sorted(ids)
    assert community.round == "share"
    assert community.share() == sorted(ids)
    assert community.round == "mask"

    h1, h2, h3 = ids[1], ids[2], ids[3]
    community.drop(h1)
    survivors = community.mask(data)
    assert survivors == sorted(h for h in ids if h != h1)
    assert community.survivors == survivors
    assert community.round == "confirm"

    community.drop(h2)
    assert community.confirm() == sorted(h for h in survivors if h != h2)
    community.drop(h3)
    there = [h for h in ids if h not in (h1, h2, h3)]
    assert community.reveal() == sorted(there)
    assert community.round == "reveal"
    assert community.dropped == sorted([h1, h2, h3])

    bills = community.unmask()
    assert community.round == "done"
    assert list(bills) == there
    expected = plaintext_bills(ctx, {h: data[h] for h in survivors})
    for h in there:
        assert bills[h] == expected[h]
        assert bills[h].household_id == h
    # Dropped after masking: billed (its data is in the sum), its bill
    # waits for it. Dropped before masking: not billed at all.
    hidden = community.hidden_bills
    assert sorted(hidden) == survivors
    assert h1 not in hidden
    for h in (h2, h3):
        assert community.households[h].decrypt(hidden[h]) == expected[h]
    # Without h2 and h3 in the sum the bills would differ: the sum really
    # is the survivor set's.
    assert plaintext_bills(ctx, {h: data[h] for h in there}) != {h: expected[h] for h in there}


def test_too_few_left_before_masking_is_refused_and_records_nothing():
    c = community_dict(households=5, slots=4, seed=32)
    ctx, data = parts(c, "ucs")
    ids = list(data)
    community = LocalCommunity(ids)
    community.advertise(ctx)
    community.share()
    community.drop(*ids[:3])
    with pytest.raises(pb.MaskingError, match="mask round refused: the member list has 2 members, at least 3") as e:
        community.mask(data)
    assert isinstance(e.value, pb.Error) and isinstance(e.value, ValueError)
    assert e.value.round == "mask" and e.value.waiting == []
    assert community.round == "mask" and community.survivors is None
    # The billing authority recorded none of the two survivors' data.
    with pytest.raises(ValueError, match="not ready: waiting for 5"):
        community.billing.compute_bills(ctx.cycle_id)
    # A later cycle runs with everyone again.
    ctx2 = CycleContext(8, trading=ctx.trading, retail=ctx.retail, feed_in=ctx.feed_in)
    data2 = {h: Data(8, promises_kwh=d.promises_kwh, actual_kwh=d.actual_kwh) for h, d in data.items()}
    assert community.bill(ctx2, data2) == plaintext_bills(ctx2, data2)


def test_too_few_left_before_unmasking_is_refused():
    """5 households: each needs 3 of its 4 neighbours to confirm before it
    reveals; with 2 gone after masking only 2 are left to confirm."""
    c = community_dict(households=5, slots=4, seed=33)
    ctx, data = parts(c, "proportional")
    ids = list(data)
    community = LocalCommunity(ids)
    community.advertise(ctx)
    community.share()
    community.mask(data)
    community.drop(ids[0], ids[1])
    assert community.confirm() == sorted(ids[2:])
    with pytest.raises(pb.MaskingError, match="reveal round: .* refused: 2 neighbours confirmed this survivor set, at least 3 must") as e:
        community.reveal()
    assert e.value.round == "reveal"
    # The edge cannot tell who left: it waits for every survivor's answers.
    with pytest.raises(pb.MaskingError, match=r"unmask round refused: waiting for 5 member\(s\) to reveal shares") as e:
        community.unmask()
    assert e.value.round == "unmask"
    assert sorted(e.value.waiting) == sorted(ids)
    assert community.waiting == e.value.waiting
    assert community.hidden_bills == {}


def test_rounds_refuse_bad_calls_clearly():
    ids = ["a", "b", "c", "d"]
    ctx = CycleContext(1, trading=[0.2], retail=[0.3], feed_in=[0.05])
    data = {h: Data(1, promises_kwh=[1], actual_kwh=[0.5]) for h in ids}
    community = LocalCommunity(ids)
    with pytest.raises(ValueError, match="no cycle in progress"):
        community.share()
    with pytest.raises(ValueError, match="no cycle in progress"):
        community.drop("a")
    community.advertise(ctx)
    with pytest.raises(ValueError, match="zz is not a member"):
        community.drop("zz")
    with pytest.raises(pb.MaskingError, match="confirm"):
        community.confirm()
    community.share()
    with pytest.raises(pb.MaskingError, match="share round"):
        community.share()
    with pytest.raises(ValueError, match="no data for d"):
        community.mask({h: data[h] for h in ids[:3]})
    with pytest.raises(ValueError, match="x is not a member"):
        community.mask({**data, "x": data["a"]})
    with pytest.raises(TypeError, match="must be a Data"):
        community.mask({**data, "a": 1})
    with pytest.raises(ValueError, match="cycle"):
        community.mask({**data, "a": Data(2, promises_kwh=[1], actual_kwh=[1])})
    with pytest.raises(ValueError, match="max_workers"):
        community.mask(data, max_workers=0)
    # None of those changed anything: the cycle goes on.
    assert community.mask(data, max_workers=2) == ids
    community.confirm()
    community.reveal()
    assert community.unmask() == plaintext_bills(ctx, data)
    with pytest.raises(pb.MaskingError, match="unmask"):
        community.unmask()
    with pytest.raises(ValueError, match="listed twice"):
        LocalCommunity(["a", "a", "b"])
    with pytest.raises(ValueError, match="at least 3 households, not 2"):
        LocalCommunity(["a", "b"])
    with pytest.raises(ValueError, match="community must not be empty"):
        LocalCommunity(ids, community="")
    with pytest.raises(ValueError, match="not members of this community"):
        community.bill(ctx, {"zz": data["a"]})


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
