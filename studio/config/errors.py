"""The one exception the configuration layer raises, carrying every problem found at once."""
from __future__ import annotations

from typing import Iterable


class ConfigError(ValueError):
    """A configuration that cannot be used, with all of its problems.

    ``problems`` holds one readable sentence per problem (already prefixed with the file and line where known);
    ``issues`` holds the same problems as ``(key, message)`` pairs, ``key`` being ``None`` for problems that are
    not about one setting (a YAML syntax error, say). ``str(error)`` lists them all.
    """

    def __init__(self, problems: Iterable[str], issues: Iterable[tuple[str | None, str]] | None = None) -> None:
        self.problems: list[str] = list(problems)
        self.issues: list[tuple[str | None, str]] = (
            list(issues) if issues is not None else [(None, p) for p in self.problems]
        )
        super().__init__(self._render())

    @classmethod
    def from_issues(cls, issues: Iterable[tuple[str | None, str]], prefix: str = "") -> "ConfigError":
        """Build from ``(key, message)`` pairs, prefixing each sentence with ``prefix`` (e.g. ``"my.yaml: "``)."""
        issues = list(issues)
        return cls([f"{prefix}{message}" for _, message in issues], issues)

    def _render(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        lines = [f"{len(self.problems)} configuration problems:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)
