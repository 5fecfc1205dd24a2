"""Every class of bad input raises ValueError or TypeError with a clear
message, never a Rust panic, and changes nothing already recorded."""

import os

import numpy as np
import pytest

import private_billing as pb
from private_billing import CycleContext, Data, HiddenBill, HiddenData, LocalCommunity

PRICES = dict(trading=[0.2, 0.2, 0.2], retail=[0.3, 0.3, 0.3], feed_in=[0.05, 0.05, 0.05])


def data(cycle=1, p=(1, -1, 0.5), a=(1.2, -0.5, 0.5)):
    return Data(cycle, promises_kwh=list(p), actual_kwh=list(a))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(promises_kwh=[1, 2], actual_kwh=[1]), ValueError, "actual_kwh has 1 values, expected 2"),
        (dict(promises_kwh=[], actual_kwh=[]), ValueError, "empty"),
        (dict(promises_kwh=[float("nan")], actual_kwh=[1]), ValueError, r"promises_kwh\[0\]: NaN"),
        (dict(promises_kwh=[1], actual_kwh=[float("-inf")]), ValueError, r"actual_kwh\[0\]: infinity"),
        (dict(promises_kwh=[1], actual_kwh=[np.nan]), ValueError, "NaN"),
        (dict(promises_kwh=[100.001], actual_kwh=[1]), ValueError, "beyond the limit of 100 kWh"),
        (dict(promises_kwh=[10**30], actual_kwh=[1]), ValueError, "beyond the limit"),
        (dict(promises_kwh=["abc"], actual_kwh=[1]), ValueError, r"promises_kwh\[0\]"),
        (dict(promises_kwh=[None], actual_kwh=[1]), TypeError, "expected a number, not NoneType"),
        (dict(promises_kwh=[True], actual_kwh=[1]), TypeError, "boolean"),
        (dict(promises_kwh="1,2", actual_kwh=[1]), TypeError, "sequence of numbers"),
        (dict(promises_kwh=5, actual_kwh=[1]), TypeError, "sequence of numbers"),
        (dict(promises_kwh=np.zeros((2, 2)), actual_kwh=[1]), ValueError, "one-dimensional"),
        (dict(promises_kwh=[1], actual_kwh=[1], household_id="bad id!"), ValueError, "household_id"),
    ],
)
def test_bad_data(kwargs, error, match):
    with pytest.raises(error, match=match):
        Data(1, **kwargs)


@pytest.mark.parametrize(
    "cycle, error",
    [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), ("1", TypeError), (True, TypeError)],
)
def test_bad_cycle_id(cycle, error):
    with pytest.raises(error, match="cycle_id"):
        Data(cycle, promises_kwh=[1], actual_kwh=[1])


def test_bad_context():
    with pytest.raises(ValueError, match="retail has 2 values, expected 3"):
        CycleContext(1, trading=[0.2] * 3, retail=[0.3] * 2, feed_in=[0.05] * 3)
    with pytest.raises(ValueError, match=r"trading\[1\]: NaN"):
        CycleContext(1, trading=[0.2, float("nan")], retail=[0.3] * 2, feed_in=[0.05] * 2)
    with pytest.raises(ValueError, match="beyond the limit of 100"):
        CycleContext(1, trading=[101], retail=[0.3], feed_in=[0.05])
    with pytest.raises(ValueError, match="unknown billing model"):
        CycleContext(1, model="flat", **PRICES)
    with pytest.raises(TypeError, match="model must be"):
        CycleContext(1, model=3, **PRICES)
    with pytest.raises(TypeError):
        CycleContext(1, trading=[0.2])  # missing keyword arguments


@pytest.mark.parametrize(
    "blob",
    [b"", b"abc", bytes(6), bytes(1000), os.urandom(4096), b"HDAT" + os.urandom(500)],
)
def test_deserialize_refuses_bad_bytes(blob):
    for cls in (HiddenData, HiddenBill, pb.DropoutCorrection):
        with pytest.raises(ValueError):
            cls.deserialize(blob)


def test_deserialize_refuses_truncated_and_non_bytes():
    ctx = CycleContext(1, **PRICES)
    ids = ["a", "b", "c"]
    community = LocalCommunity(ids)
    wire = community.households["a"].hide(data(), ctx).serialize()
    assert HiddenData.deserialize(wire).household_id == "a"
    for cut in (1, 10, len(wire) // 2, len(wire) - 1):
        with pytest.raises(ValueError):
            HiddenData.deserialize(wire[:cut])
    with pytest.raises(ValueError, match="trailing"):
        HiddenData.deserialize(wire + b"\0")
    with pytest.raises(ValueError):
        HiddenBill.deserialize(wire)
    with pytest.raises(TypeError, match="bytes"):
        HiddenData.deserialize(bytearray(wire))
    with pytest.raises(TypeError):
        HiddenData.deserialize("text")


def test_foreign_data_and_wrong_keys_change_nothing():
    ctx = CycleContext(1, **PRICES)
    ids = ["a", "b", "c"]
    community = LocalCommunity(ids)
    other = LocalCommunity(["a", "b", "x"])
    billing = community.billing
    billing.record_context(ctx)
    hd = {h: community.households[h].hide(data(), ctx) for h in ids}
    billing.record_data(hd["a"])
    # Data of another cycle, of a household that is not a member, twice
    # the same.
    ctx2 = CycleContext(2, **PRICES)
    with pytest.raises(ValueError, match="no context recorded for cycle 2"):
        billing.record_data(community.households["b"].hide(data(cycle=2), ctx2))
    with pytest.raises(ValueError, match="x is not a member"):
        billing.record_data(other.households["x"].hide(data(), ctx))
    with pytest.raises(ValueError, match="already submitted"):
        billing.record_data(hd["a"])
    # Hiding data of a cycle under another cycle's context, or another
    # household's data.
    with pytest.raises(ValueError, match="cycle"):
        community.households["b"].hide(data(cycle=2), ctx)
    named = Data(1, promises_kwh=[1, 1, 1], actual_kwh=[1, 1, 1], household_id="c")
    with pytest.raises(ValueError, match="c's, not b's"):
        community.households["b"].hide(named, ctx)
    with pytest.raises(ValueError, match="data has 2 slots, the cycle has 3"):
        community.households["b"].hide(Data(1, promises_kwh=[1, 1], actual_kwh=[1, 1]), ctx)
    with pytest.raises(ValueError, match="not ready"):
        billing.compute_bills(1)
    # A different context for the recorded cycle is refused.
    with pytest.raises(ValueError, match="different context"):
        billing.record_context(CycleContext(1, model="proportional", **PRICES))
    billing.record_data(hd["b"])
    billing.record_data(hd["c"])
    hidden = billing.compute_bills(1)
    # A bill decrypted with the wrong household's keys.
    with pytest.raises(ValueError, match="a's, not b's"):
        community.households["b"].decrypt(hidden["a"])
    with pytest.raises(ValueError, match="a's, not x's"):
        other.households["x"].decrypt(hidden["a"])
    # Nothing changed: every household still gets the plaintext bill.
    expected = pb.plaintext_bills(ctx, {h: data() for h in ids})
    for h in ids:
        assert community.households[h].decrypt(hidden[h]) == expected[h]
    with pytest.raises(ValueError, match="billed already"):
        billing.compute_bills(1)


def test_registration_and_correction_errors():
    community = LocalCommunity(["a", "b", "c"])
    with pytest.raises(ValueError, match="registered already"):
        community.billing.register_member("a", community.households["a"].public_key())
    with pytest.raises(ValueError, match="members key"):
        pb.HidingContext("a", pb.IdentityKey.generate(), {"a b": b"\0" * 32})
    with pytest.raises(ValueError, match="32 bytes"):
        pb.HidingContext("a", pb.IdentityKey.generate(), {"a": b"\0" * 31})
    with pytest.raises(ValueError, match="not a member|NotAMember|member"):
        pb.HidingContext("z", pb.IdentityKey.generate(), {"a": pb.IdentityKey.generate().public})
    with pytest.raises(ValueError, match="32 bytes"):
        pb.IdentityKey.from_bytes(b"short")
    # The PRZS dropout round, by hand (what the network runs today).
    ids = ["a", "b", "c"]
    identities = {h: pb.IdentityKey.generate() for h in ids}
    members = {h: k.public for h, k in identities.items()}
    households = {h: pb.HidingContext(h, identities[h], members) for h in ids}
    billing = pb.SharedBilling()
    for h in ids:
        billing.register_member(h, households[h].public_key())
    ctx = CycleContext(1, **PRICES)
    billing.record_context(ctx)
    corr = households["a"].dropout_correction(ctx, ["c"])
    with pytest.raises(ValueError, match="unexpected dropout correction"):
        billing.record_correction(corr)
    with pytest.raises(ValueError, match="at least 3"):
        billing.declare_dropouts(1)
    with pytest.raises(ValueError, match="c is not a peer"):
        community.households["a"].dropout_correction(ctx, ["c"])


def test_hidden_data_of_another_community_is_refused_and_changes_nothing():
    """Two communities with the same member ids: the billing authority
    tells their data apart by the community it names."""
    ctx = CycleContext(1, **PRICES)
    ids = ["a", "b", "c"]
    ours = LocalCommunity(ids, community="north")
    theirs = LocalCommunity(ids, community="south")
    assert ours.billing.community == "north"
    billing = ours.billing
    billing.record_context(ctx)
    foreign = theirs.households["a"].hide(data(), ctx)
    assert theirs.households["a"].community == "south"
    assert foreign.community == "south" and foreign.household_id == "a"
    with pytest.raises(ValueError, match='data of community "south", this billing authority bills community "north"'):
        billing.record_data(foreign)
    # Through the wire too: the community travels with the data.
    with pytest.raises(ValueError, match="community"):
        billing.record_data(HiddenData.deserialize(foreign.serialize()))
    # Nothing changed: a's own data is accepted, and the cycle bills exactly.
    hd = {h: ours.households[h].hide(data(), ctx) for h in ids}
    assert hd["a"].community == "north"
    for h in ids:
        billing.record_data(hd[h])
    with pytest.raises(ValueError, match="community"):
        billing.record_data(foreign)
    hidden = billing.compute_bills(1)
    expected = pb.plaintext_bills(ctx, {h: data() for h in ids})
    for h in ids:
        assert ours.households[h].decrypt(hidden[h]) == expected[h]
    # A billing authority of no particular community accepts any.
    anyone = pb.SharedBilling(community=None)
    assert anyone.community is None
    anyone.register_member("a", theirs.households["a"].public_key())
    anyone.record_context(ctx)
    anyone.record_data(foreign)
    with pytest.raises(ValueError, match="community must not be empty"):
        pb.SharedBilling(community="")


def test_hidden_data_bytes_of_format_version_1_are_refused_clearly():
    """HiddenData written before it named its community (format version 1)
    is refused with what changed, not as malformed bytes."""
    ctx = CycleContext(1, **PRICES)
    wire = bytearray(LocalCommunity(["a", "b", "c"]).households["a"].hide(data(), ctx).serialize())
    assert wire[:4] == b"PBHD" and int.from_bytes(wire[4:6], "little") == 2
    wire[4:6] = (1).to_bytes(2, "little")
    with pytest.raises(ValueError, match="format version 1 is from an earlier release.*names its community"):
        HiddenData.deserialize(bytes(wire))
