"""The per-step training log a user can plot: JSON lines or CSV, one record per optimizer step."""

from __future__ import annotations

import csv
import json
from pathlib import Path

LOG_FORMATS = ("jsonl", "csv")


class LossLog:
    """Append-only log of step records (dicts with a ``step`` key) at ``path``.

    ``truncate(step)`` drops records after ``step``, so a resumed run does not log a step twice.
    """

    def __init__(self, path: str | Path, fmt: str = "jsonl"):
        if fmt not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {LOG_FORMATS}, got {fmt!r}")
        self.path = Path(path)
        self.format = fmt

    def read(self) -> list[dict]:
        """All records, oldest first (numbers parsed back from CSV)."""
        if not self.path.is_file():
            return []
        with self.path.open(encoding="utf-8", newline="") as handle:
            if self.format == "jsonl":
                return [json.loads(line) for line in handle if line.strip()]
            return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]

    def truncate(self, step: int) -> None:
        """Keep only the records with ``step <= step`` (all gone for 0)."""
        records = [r for r in self.read() if r.get("step", 0) <= step]
        self._rewrite(records)

    def append(self, record: dict) -> None:
        if self.format == "jsonl":
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=False) + "\n")
            return
        header = self._header()
        if header is not None and set(record) <= set(header):
            with self.path.open("a", encoding="utf-8", newline="") as handle:
                csv.DictWriter(handle, fieldnames=header).writerow(record)
        else:  # new columns: rewrite with the wider header (rare: once per new metric)
            self._rewrite([*self.read(), record])

    def _header(self) -> list[str] | None:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return None
        with self.path.open(encoding="utf-8", newline="") as handle:
            return next(csv.reader(handle), None)

    def _rewrite(self, records: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "jsonl":
            self.path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            return
        header: list[str] = []
        for record in records:
            header.extend(k for k in record if k not in header)
        with self.path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(records)


def _number(text: str) -> int | float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
