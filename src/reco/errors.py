"""Errors that reach a person: each says what went wrong, where, and how to fix it."""

from __future__ import annotations


class RecoError(Exception):
    """Base of reco's own errors; the CLI prints the message without a traceback."""


class ValidationError(RecoError):
    """Input data broke a rule. Nothing was changed.

    ``problems`` lists every problem found (each a sentence naming file, row, column
    and the fix), so a user can repair a file in one go.
    """

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        lines = [f"{head}{len(self.problems)} problem(s) found; nothing was changed."]
        lines += [f"  - {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


class NotFittedError(RecoError):
    """A model was used before ``fit`` (or ``load``)."""


class ArtifactError(RecoError):
    """A saved model or model version is missing, incomplete or corrupted."""


class ConfigurationError(RecoError):
    """A setting or parameter cannot work (e.g. a catalogue too large for EASE)."""


class NotApplicableError(RecoError):
    """A model cannot learn from this data (e.g. content model, no item text).

    Training and the pipeline catch it and switch that source off with a log line;
    it is not a failure of the run.
    """
