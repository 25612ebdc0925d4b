"""Lines that tests record for the end of the run (printed by conftest's terminal summary)."""

LINES: list[str] = []


def add(line: str) -> None:
    LINES.append(line)
