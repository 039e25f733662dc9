"""The `Secret` records carry for a password or a connection string holding one.

The engine hands secrets across as plain strings (a UniFFI custom type); the generated bindings wrap
every one in this class (see `uniffi.toml`), so a record that holds one never prints it: its `str`
and `repr` are `***`, and only the engine reads the value back out. Where a record field takes a
secret, a plain `str` is accepted too.
"""

from __future__ import annotations


class Secret:
    """A password or a connection string holding one; prints as `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if isinstance(value, Secret):
            value = value._value
        if not isinstance(value, str):
            raise TypeError("a Secret wraps a str")
        self._value = value

    def is_empty(self) -> bool:
        """True when the secret is the empty string."""
        return not self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def expose(value: Secret | str) -> str:
    """The text the engine receives (the bindings' lowering of a `Secret` field)."""
    return value._value if isinstance(value, Secret) else value
