"""The bad-input contract: one base class for every error a user can fix, and its one-line message.

A leaf module (standard library only) so that every package, `laws/` included, can derive its errors from
`BadInput` without importing anything heavy; the stages catch `BadInput` alone (`exit_on_bad_input`).
"""

from __future__ import annotations


class BadInput(Exception):
    """An input the user can fix (missing or corrupt data, an invalid setting, too few runs to fit, ...).

    The message's first line names the problem and the fix; it is what the command line prints.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its class name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
