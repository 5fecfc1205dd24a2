"""Exceptions of private_billing.

Bad input (wrong lengths, NaN or infinite values, values out of range,
malformed bytes, data of another cycle, a bill for another household)
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
