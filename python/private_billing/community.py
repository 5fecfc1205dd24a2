"""A whole community in one process: every household's keys, the billing
authority, and the rounds of the masking protocol.

This is the one place that knows those rounds. Today they are: member
identity keys are exchanged (the member list), every household derives its
pairwise PRZS masking keys from that list; each household submits its
hidden data; if members drop out, the billing authority declares them and
every survivor sends a dropout correction; then the bills are computed and
each household decrypts its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterable, Mapping, Optional

from ._native import (
    Bill,
    CycleContext,
    Data,
    HiddenData,
    HidingContext,
    IdentityKey,
    SharedBilling,
)


class LocalCommunity:
    """Households and their billing authority in this process.

    ``household_ids`` are strings (1 to 64 characters of
    ``[A-Za-z0-9_.-]``); ``min_members`` is the smallest number of
    households billed together (never fewer than 2).
    """

    def __init__(
        self,
        household_ids: Iterable[str],
        *,
        community: str = "local",
        min_members: int = 3,
    ) -> None:
        ids = [str(h) for h in household_ids]
        identities = {h: IdentityKey.generate() for h in ids}
        members = {h: k.public for h, k in identities.items()}
        #: Each household's keys (its ``HidingContext``), by id.
        self.households: Dict[str, HidingContext] = {
            h: HidingContext(h, identities[h], members, community=community) for h in ids
        }
        #: The billing authority.
        self.billing = SharedBilling(min_members=min_members)
        for h, ctx in self.households.items():
            self.billing.register_member(h, ctx.public_key())

    def bill(
        self,
        context: CycleContext,
        data: Mapping[str, Data],
        *,
        max_workers: Optional[int] = None,
    ) -> Dict[str, Bill]:
        """Bills one cycle: households in ``data`` submit (hidden in a
        thread pool), the others are declared dropped out and the
        survivors correct for them; returns every survivor's decrypted
        bill."""
        self.billing.record_context(context)
        unknown = [h for h in data if h not in self.households]
        if unknown:
            raise ValueError(f"not members of this community: {unknown}")
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            hidden = list(
                pool.map(lambda h: self.households[h].hide(data[h], context), data)
            )
        for hd in hidden:
            self.billing.record_data(HiddenData.deserialize(hd.serialize()))
        if len(data) < len(self.households):
            dropped = self.billing.declare_dropouts(context.cycle_id)
            for h in data:
                corr = self.households[h].dropout_correction(context, dropped)
                self.billing.record_correction(corr)
        hidden_bills = self.billing.compute_bills(context.cycle_id)
        return {h: self.households[h].decrypt(hb) for h, hb in hidden_bills.items()}
