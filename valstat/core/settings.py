"""The analysis settings every layer reads: one object instead of scattered constants."""

from __future__ import annotations

from dataclasses import dataclass

from valstat.errors import ValstatError


@dataclass(frozen=True)
class Settings:
    """How valstat analyses a store or a history.

    level: confidence level of every interval and noise test (alpha = 1 - level).
    collapse_threshold: the learning rate counts as collapsed below this fraction of its start.
    count_diverged: whether runs whose training loss became NaN/inf ("diverged") count in the
      statistics; when false they are listed and counted, but left out of every number.
    """

    level: float = 0.95
    collapse_threshold: float = 0.01
    count_diverged: bool = False

    def __post_init__(self):
        if not 0.5 <= self.level < 1:
            raise ValstatError(f"level must be in [0.5, 1), got {self.level!r}")
        if not 0 < self.collapse_threshold < 1:
            raise ValstatError(f"collapse_threshold must be in (0, 1), got {self.collapse_threshold!r}")

    @property
    def alpha(self) -> float:
        """Significance level of the noise tests: 1 - level."""
        return round(1.0 - self.level, 12)


DEFAULT = Settings()
