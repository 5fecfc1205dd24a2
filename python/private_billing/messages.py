"""Messages to the servers, as in the original system, and ``send``.

``DataMessage`` and ``GetBillMessage`` go to a household's core (its JSON
household API, docs/api.md); ``ContextMessage`` goes to the edge, signed
with the operator's key (the key file written by ``pbill keygen`` or
:func:`private_billing.keygen`). Nothing is pickled.

The original's first argument (the sender, ``None`` in its examples) is
accepted and ignored: ``DataMessage(None, data)`` and ``DataMessage(data)``
are the same message.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Union

from ._native import (
    Bill,
    CycleContext,
    Data,
    _bill_from_api,
    core_request,
    put_context,
    put_roster,
)
from .errors import NetworkError, RefusedError

TCPAddress = str
"""An endpoint such as ``"tcp://127.0.0.1:6000"`` (any object whose
``str()`` is one works)."""


def _payload(kind: str, args: tuple) -> Any:
    if len(args) == 2:
        return args[1]
    if len(args) == 1:
        return args[0]
    raise TypeError(f"{kind} takes the payload, optionally after the sender (None)")


class DataMessage:
    """A household's data for a cycle, for its core: ``DataMessage(data)``
    or ``DataMessage(None, data)``."""

    def __init__(self, *args: Any, strict_units: bool = False) -> None:
        data = _payload("DataMessage", args)
        if not isinstance(data, Data):
            raise TypeError(f"DataMessage takes a Data, not {type(data).__name__}")
        self.data: Data = data
        self.strict_units = bool(strict_units)

    def _request(self) -> Dict[str, Any]:
        submit: Dict[str, Any] = {
            "cycle_id": self.data.cycle_id,
            "promises_kwh": [str(v) for v in self.data.promises_kwh],
            "actual_kwh": [str(v) for v in self.data.actual_kwh],
        }
        if self.strict_units:
            submit["strict_units"] = True
        return {"submit": submit}


class ContextMessage:
    """A cycle's context, for the edge: ``ContextMessage(context)`` or
    ``ContextMessage(None, context)``."""

    def __init__(self, *args: Any) -> None:
        context = _payload("ContextMessage", args)
        if not isinstance(context, CycleContext):
            raise TypeError(
                f"ContextMessage takes a CycleContext, not {type(context).__name__}"
            )
        self.context: CycleContext = context


class RosterMessage:
    """The community's member list, for the edge, signed by the operator:
    ``RosterMessage({member_id: node_id, ...}, version=1)``. Every core
    checks it against the operator key pinned in its ``core.toml``
    (``operator = ...``); a member left out of a new version is revoked."""

    def __init__(self, members: Dict[str, str], version: int = 1) -> None:
        if not isinstance(members, dict):
            raise TypeError(
                f"RosterMessage takes a dict of member id to node id, not {type(members).__name__}"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a positive integer, not {version!r}")
        self.members: Dict[str, str] = {str(k): str(v) for k, v in members.items()}
        self.version: int = version


class GetBillMessage:
    """Asks a core for its bill of a cycle: ``GetBillMessage(cycle_id)``
    or ``GetBillMessage(None, cycle_id)``."""

    def __init__(self, *args: Any) -> None:
        cycle_id = _payload("GetBillMessage", args)
        if isinstance(cycle_id, bool) or not isinstance(cycle_id, int):
            raise TypeError(f"cycle_id must be an integer, not {type(cycle_id).__name__}")
        if not 0 <= cycle_id < 2**64:
            raise ValueError(f"cycle_id {cycle_id} is out of range (0 to 2^64 - 1)")
        self.cycle_id: int = cycle_id


class StatusMessage:
    """Asks a core for its state (member, edge, whether the edge admitted
    it, its cycles): ``send`` returns the answer as a dict."""


Message = Union[DataMessage, ContextMessage, RosterMessage, GetBillMessage, StatusMessage]


def _core(address: str, request: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    answer = core_request(address, json.dumps(request), float(timeout))
    try:
        reply = json.loads(answer)
    except ValueError as e:
        raise NetworkError(f"the core answered something that is not JSON: {e}") from None
    if not isinstance(reply, dict) or len(reply) != 1:
        raise NetworkError("unexpected answer from the core")
    if "error" in reply:
        err = reply["error"]
        raise RefusedError(f"the core refused ({err.get('code')}): {err.get('message')}",
                           str(err.get("code", "")))
    return reply


def send(
    msg: Message,
    address: TCPAddress,
    *,
    key: Union[str, "os.PathLike[str]", None] = None,
    edge_id: Optional[str] = None,
    community: Optional[str] = None,
    timeout: float = 30.0,
) -> Union[Dict[str, Any], Bill, None]:
    """Sends a message and returns the answer.

    * ``DataMessage`` to a core: the core's ``accepted`` answer as a dict
      (``cycle_id``, ``slots``, ``state``, ``rounded``).
    * ``GetBillMessage`` to a core: the :class:`Bill`, or ``None`` while
      the cycle is not billed yet.
    * ``StatusMessage`` to a core: its ``status`` answer as a dict.
    * ``RosterMessage`` to the edge: the member list's fingerprint (as
      the households' cores log it) once recorded; needs the same three
      keyword arguments as ``ContextMessage``.
    * ``ContextMessage`` to the edge: ``None`` once recorded; needs
      ``key``, the operator's key file, ``edge_id`` (the edge's node id,
      64 hex digits: it pins the edge's key for the encrypted link) and
      ``community`` (both are signed into the request).

    Raises :class:`RefusedError` when the server refuses (nothing changed
    there) and :class:`NetworkError` when it cannot be reached within
    ``timeout`` seconds.
    """
    address = str(address)
    if isinstance(msg, RosterMessage):
        if key is None or edge_id is None or community is None:
            raise TypeError(
                "a RosterMessage is signed by the operator for one edge and community: pass "
                "key=<operator key file>, edge_id=<edge node id>, community=<name>"
            )
        return put_roster(address, sorted(msg.members.items()), msg.version, os.fspath(key),
                          edge_id, community, float(timeout))
    if isinstance(msg, ContextMessage):
        if key is None or edge_id is None or community is None:
            raise TypeError(
                "a ContextMessage is signed for one edge and community: pass "
                "key=<operator key file>, edge_id=<edge node id>, community=<name>"
            )
        put_context(address, msg.context, os.fspath(key), edge_id, community, float(timeout))
        return None
    if isinstance(msg, DataMessage):
        reply = _core(address, msg._request(), timeout)
        if "accepted" not in reply:
            raise NetworkError(f"unexpected answer from the core: {list(reply)}")
        return dict(reply["accepted"])
    if isinstance(msg, GetBillMessage):
        reply = _core(address, {"get_bill": {"cycle_id": msg.cycle_id}}, timeout)
        if "pending" in reply:
            return None
        if "bill" not in reply:
            raise NetworkError(f"unexpected answer from the core: {list(reply)}")
        b = reply["bill"]
        return _bill_from_api(int(b["cycle_id"]), str(b["bill"]), str(b["reward"]))
    if isinstance(msg, StatusMessage):
        reply = _core(address, {"status": {}}, timeout)
        if "status" not in reply:
            raise NetworkError(f"unexpected answer from the core: {list(reply)}")
        return dict(reply["status"])
    raise TypeError(
        "send takes a DataMessage, ContextMessage, RosterMessage, GetBillMessage or "
        f"StatusMessage, not {type(msg).__name__}"
    )
