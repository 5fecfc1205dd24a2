"""private_billing: encrypted billing of energy communities.

The names of the original Python system on the Rust engine. See
``docs/python.md`` in the repository for a guide and the seed's snippets
next to ours.

Amounts come back as exact ``decimal.Decimal``; vectors accept lists,
tuples and one-dimensional numpy arrays of numbers (``int``, ``float``,
``decimal.Decimal`` or numeric strings), read exactly as written and
rounded half away from zero to 1 Wh and 0.00001 currency per kWh (a
``UserWarning`` counts the rounded values; ``strict_units=True`` refuses
them instead).
"""

from __future__ import annotations

import enum
import json
import os
from decimal import Decimal
from typing import Any, Dict, Mapping, Union

from . import _native
from ._native import (
    Bill,
    CycleContext,
    Data,
    DropoutCorrection,
    HiddenBill,
    HiddenData,
    HidingContext,
    IdentityKey,
    PublicKey,
    ServerHandle,
    SharedBilling,
    keygen,
    launch_core,
    launch_edge,
    plaintext_bills,
)
from .community import LocalCommunity
from .errors import Error, MaskingError, NetworkError, RefusedError

__all__ = [
    "Bill",
    "BillingModel",
    "CycleContext",
    "Data",
    "DropoutCorrection",
    "Error",
    "HiddenBill",
    "HiddenData",
    "HidingContext",
    "IdentityKey",
    "LocalCommunity",
    "MaskingError",
    "NetworkError",
    "PublicKey",
    "RefusedError",
    "ServerHandle",
    "SharedBilling",
    "keygen",
    "launch_core",
    "launch_edge",
    "plaintext_bills",
    "simulate",
]


class BillingModel(str, enum.Enum):
    """How a slot's imbalance cost is shared (docs/design.md section 5).
    Wherever a model is asked for, its name as a string works too."""

    UCS = "ucs"
    """Universal Cost Split, cost-neutral (the default)."""
    UCS_REFERENCE = "ucs-reference"
    """The Python original's formula (its divisors)."""
    PROPORTIONAL = "proportional"
    """Imbalance cost split in proportion to over-amounts."""

    def __str__(self) -> str:
        return self.value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a JSON value of a community")


def simulate(
    community: Union[Mapping[str, Any], str, "os.PathLike[str]"],
    model: Union[str, BillingModel] = "ucs",
    plaintext: bool = False,
    *,
    min_members: int = 3,
    strict_units: bool = False,
) -> Dict[Union[str, int], Bill]:
    """Bills a community in this process, as ``pbill simulate`` does.

    ``community`` is a dict shaped like ``pbill simulate``'s JSON input
    (``cycle_id``, ``prices`` with ``trading``, ``retail``, ``feed_in``,
    ``households`` with ``id``, ``promises_kwh``, ``actual_kwh``), or the
    path of such a file. Returns ``{household_id: Bill}`` in input order,
    ids as given. The whole cryptographic pipeline runs (keys, masking,
    encryption, billing, decryption) unless ``plaintext=True``; both give
    the same bills and refuse the same inputs (``ValueError``).
    """
    model = str(model.value if isinstance(model, BillingModel) else model)
    if isinstance(community, (str, os.PathLike)):
        path = os.fspath(community)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no community file at {path}")
        return _native.simulate_file(path, model, bool(plaintext), min_members, strict_units)
    if not isinstance(community, Mapping):
        raise TypeError(
            f"community must be a dict or a path, not {type(community).__name__}"
        )
    text = json.dumps(community, default=_json_default)
    return _native.simulate_text(text, model, bool(plaintext), min_members, strict_units)
