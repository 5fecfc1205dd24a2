"""Exceptions of private_billing.

Bad input (wrong lengths, NaN or infinite values, values out of range,
malformed bytes, data of another cycle or community, a bill for another
household)
raises the built-in ``ValueError`` or ``TypeError`` with a message naming
the field at fault, and changes nothing. The package's own exceptions
below all derive from :class:`Error`.
"""


class Error(Exception):
    """Base class of the exceptions defined by private_billing."""


class NetworkError(Error, ConnectionError):
    """A server could not be reached in time, or answered something that
    is not a valid answer."""


class RefusedError(Error, ValueError):
    """A server (edge or core) refused a request; nothing changed there.

    ``code`` is the server's error code (``bad_request``, ``conflict``,
    ...) when it gave one."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class MaskingError(Error, ValueError):
    """A round of the SecAgg+ masking protocol refused (in
    :class:`~private_billing.LocalCommunity`): typically too few households
    are left to go on (fewer than ``min_members`` survived a round, or too
    few of a household's neighbours are left to confirm or to reveal the
    shares the edge needs). The edge stays in the round that refused, and
    the billing authority records nothing of it; a new cycle can start
    with ``advertise``.

    ``round`` names the round (``advertise``, ``share``, ``mask``,
    ``confirm``, ``reveal``, ``unmask``); ``waiting`` lists the households
    whose answers would let the edge unmask (empty unless the edge waits
    for some)."""

    def __init__(self, message: str, round: str = "", waiting=()) -> None:
        super().__init__(message)
        self.round = round
        self.waiting = list(waiting)
