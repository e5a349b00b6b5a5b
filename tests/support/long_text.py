"""A page's worth (or many pages' worth) of varied text, for the token-cap tests."""


def long_page_text(characters: int = 40_000) -> str:
    """``characters`` characters of numbered invoice lines (no two lines alike)."""
    lines, length, n = [], 0, 0
    while length < characters:
        line = f"Line {n}: the invoice total is {n * 7} euros, paid on day {n % 28 + 1}."
        lines.append(line)
        length += len(line) + 1
        n += 1
    return " ".join(lines)[:characters]
