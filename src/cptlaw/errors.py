"""The bad-input contract: one base class for every error a user can fix, and every such error class.

A leaf module (standard library only) so that every package, `laws/` included, can derive from `BadInput`
without importing torch or mlflow; the stages catch `BadInput` alone (`cptlaw.stages.exit_on_bad_input`).
Each class is re-exported by the module that raises it (e.g. `cptlaw.data.corpora.CorpusError`).
"""

from __future__ import annotations


class BadInput(Exception):
    """An input the user can fix (missing or corrupt data, an invalid setting, too few runs to fit, ...).

    The message's first line names the problem and the fix; it is what the command line prints.
    """


class CorpusError(BadInput, RuntimeError):
    """A corpus cannot be built or read; one-line message naming the domain / source / key."""


class ExtractError(BadInput, RuntimeError):
    """A source's files are missing or unreadable; one-line message naming the source."""


class FetchError(BadInput, RuntimeError):
    """A source could not be fetched; the message is one line that names the source and the fix."""


class TokenizerError(BadInput, RuntimeError):
    """The tokenizer cannot be trained or loaded; one-line message naming the key or path."""


class StoreError(BadInput, RuntimeError):
    """A token store is missing, truncated, built with another tokenizer or out of date with its corpus;
    one line naming the store and the stage to re-run."""


class SubsetError(BadInput, ValueError):
    """A regime or score file cannot be used; the message is one line naming the key or file."""


class MixtureError(BadInput, ValueError):
    """The stream cannot be built as asked; one line naming the key to change."""


class DecisionError(BadInput, ValueError):
    """A hard input problem of a decision stage; one line saying what is missing and how to get it."""


class ModelError(BadInput, ValueError):
    """A base model or size cannot be used; the message is one line that says what and where."""


class TrackingError(BadInput, RuntimeError):
    """The tracking store cannot be used; the message says how to fix it."""


class CSVError(BadInput, ValueError):
    """A points or hold-out CSV cannot be used; one line naming the file and column."""


class CPTConfigError(BadInput, ValueError):
    """A `cpt.*` setting is invalid; one line naming the key."""


class FitStageError(BadInput, RuntimeError):
    """Nothing to fit; the message says which runs to make."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its class name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
