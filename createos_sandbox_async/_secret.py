"""``SecretStr``: a string that never shows itself (access tokens, noVNC tokens in models).

Apart from the models so that the converter (``_convert``) can learn it without importing a model
module, and so that importing a model module changes no converter.
"""

from __future__ import annotations

import hmac

__all__ = ["SecretStr"]


class SecretStr:
    """A string that never shows itself: repr and str print ``'**********'``.

    Why a class and not ``field(repr=False)``: the value also stays out of f-strings, ``str()``,
    ``attrs.asdict`` dumps and log lines. Call :meth:`get_secret_value` where you really need it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The plaintext; keep it out of logs."""
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretStr):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[type[SecretStr], tuple[str]]:
        return (SecretStr, (self._value,))
