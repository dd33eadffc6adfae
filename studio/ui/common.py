"""Small helpers shared by the tabs."""
from __future__ import annotations


def error_text(error: BaseException | str) -> str:
    """A readable one-block message for the page (config and dataset errors list every problem)."""
    text = str(error) or type(error).__name__
    return f"✗ {text}"


def ok_text(text: str) -> str:
    return text


def parse_numbers(text: str, kind=float, name: str = "values") -> list:
    """``"0.4, 0.5 0.6"`` → ``[0.4, 0.5, 0.6]``; a clear error naming the bad item."""
    items = [t for t in (text or "").replace(",", " ").split() if t]
    values = []
    for item in items:
        try:
            values.append(kind(item))
        except ValueError:
            raise ValueError(f"{name}: {item!r} is not a number; write them separated by commas") from None
    if not values:
        raise ValueError(f"{name}: write at least one number")
    return values
