"""A whole community in one process: every household's keys, the billing
authority, and the rounds of the SecAgg+ masking protocol (``pb-secagg``,
docs/design.md section 4.2) that the edge and the cores run.

``LocalCommunity``'s methods are the rounds of a cycle, each one a call
into ``pb_secagg::Client`` at every household still there and into
``pb_secagg::server::Server`` at the edge:

1. ``advertise(context)``: the edge checks the operator-signed member list
   and records the cycle's context; each household draws its cycle secrets
   and advertises its signed key bundle;
2. ``share()``: each household sends Shamir shares of its secrets to its
   neighbours in the masking graph, encrypted to each;
3. ``mask(data)``: each household hides its data (GLWE ciphertexts of its
   billed vectors, its aggregate contributions), masks the contributions
   and submits; the edge announces the survivor set;
4. ``confirm()``: each survivor signs the survivor set;
5. ``reveal()``: each survivor answers, for each neighbour, the share the
   edge needs (the self-mask seed of a survivor, the mask key of a
   household that dropped after sharing);
6. ``unmask()``: the edge unmasks the survivors' sum, bills every survivor,
   and each survivor still there decrypts its bill.

``drop(*household_ids)`` makes households leave the cycle in progress
between two rounds. A round that cannot go on (too few households left)
raises :class:`~private_billing.MaskingError`.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

from ._native import Bill, CycleContext, Data
from ._native import LocalCommunity as _NativeCommunity


class LocalCommunity(_NativeCommunity):
    """Households and their billing authority in this process.

    ``household_ids`` are strings (1 to 64 characters of
    ``[A-Za-z0-9_.-]``) or integers; ``min_members`` is the smallest
    number of households billed together (never fewer than 3), which must
    also survive every round.
    """

    def bill(
        self,
        context: CycleContext,
        data: Mapping[str, Data],
        *,
        max_workers: Optional[int] = None,
    ) -> Dict[str, Bill]:
        """Bills one cycle by running every round: households with an entry
        in ``data`` take part, the others drop out before the mask round
        (after sharing); returns every survivor's decrypted bill."""
        members = set(self.household_ids)
        given = {str(h) for h in data}
        unknown = sorted(given - members)
        if unknown:
            raise ValueError(f"not members of this community: {unknown}")
        self.advertise(context)
        self.share()
        absent = [h for h in self.household_ids if h not in given]
        if absent:
            self.drop(*absent)
        self.mask(data, max_workers=max_workers)
        self.confirm()
        self.reveal()
        return self.unmask()
