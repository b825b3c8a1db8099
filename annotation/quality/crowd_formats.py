"""Readers for public crowdsourcing files: labels in long, wide, count and YAML layouts, and
pairwise comparisons as rows or win counts. Django-free; the import service stores the result.

Formats (``read_labels(path, fmt=...)`` / ``read_comparisons(path, fmt=...)``):

- ``long``: one judgment per row: item, worker, answer (CSV, TSV, or whitespace-separated with no
  header). Known headers are recognised (Snow et al. ``orig_id, !amt_worker_ids, response, gold``;
  Zheng et al. ``question|id, worker, answer``); a ``gold`` column or a separate truth file
  (``item, truth``, header optional) gives the known answers.
- ``coders``: one row per coder, one column per unit, empty cells missing (Krippendorff's layout);
  a first column named ``coder`` is the coder's name.
- ``subjects``: one row per subject (first column), one column per rater (Fleiss' layout).
- ``counts``: one row per subject, one column per category, cells count the raters who chose it.
- ``cubam``: CUBAM YAML, ``{worker: {item: true|false}}``, truth ``{item: true|false}``.
- ``pairs``: comparisons with ``left, right, winner`` (left|right|tie) and optional ``worker``
  and ``prompt`` columns (evalica, LLMFAO).
- ``pair_counts``: win counts: ``home.team, away.team, home.wins, away.wins`` (BradleyTerry2's
  baseball) or ``cited, citing, count`` (the cited journal wins; the diagonal is dropped).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

ITEM_COLUMNS = ("orig_id", "question", "id", "item", "task", "q")
WORKER_COLUMNS = ("!amt_worker_ids", "worker", "worker_id", "annotator", "rater")
ANSWER_COLUMNS = ("response", "answer", "label")
GOLD_COLUMNS = ("gold", "truth")
LABEL_FORMATS = ("long", "coders", "subjects", "counts", "cubam")
PAIR_FORMATS = ("pairs", "pair_counts")


@dataclass
class CrowdLabels:
    """Judgments as parallel lists of strings, and known answers by item."""

    items: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    truth: dict[str, str] = field(default_factory=dict)

    def add(self, item: str, worker: str, answer: str) -> None:
        self.items.append(item)
        self.workers.append(worker)
        self.answers.append(answer)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class CrowdComparisons:
    """One comparison per entry: the two sides, who won (left|right|tie), who judged, and the
    prompt both sides answered (empty when the data has none)."""

    left: list[str] = field(default_factory=list)
    right: list[str] = field(default_factory=list)
    winner: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    def add(self, left: str, right: str, winner: str, worker: str = "", prompt: str = "") -> None:
        self.left.append(left)
        self.right.append(right)
        self.winner.append(winner)
        self.workers.append(worker)
        self.prompts.append(prompt)

    def __len__(self) -> int:
        return len(self.left)


def _text(path: Path | str) -> str:
    return Path(path).read_text(encoding="utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


def _rows(text: str, path: Path) -> list[list[str]]:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return []
    if path.suffix == ".tsv" or "\t" in lines[0] and "," not in lines[0]:
        return list(csv.reader(io.StringIO("\n".join(lines)), delimiter="\t"))
    if "," in lines[0]:
        return list(csv.reader(io.StringIO("\n".join(lines))))
    return [line.split() for line in lines]


def _pick(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def _looks_like_header(row: list[str]) -> bool:
    return not all(cell.strip().lstrip("-").replace(".", "", 1).isdigit() for cell in row)


def read_truth(path: Path | str) -> dict[str, str]:
    """``item, truth`` rows (header optional); a repeated item keeps its first truth."""
    path = Path(path)
    rows = _rows(_text(path), path)
    if (
        rows
        and _looks_like_header(rows[0])
        and rows[0][0].strip().lower() in (*ITEM_COLUMNS, "item")
    ):
        rows = rows[1:]
    truth: dict[str, str] = {}
    for row in rows:
        if len(row) >= 2:
            truth.setdefault(row[0].strip(), row[1].strip())
    return truth


def read_long(path: Path | str, *, truth_path: Path | str | None = None) -> CrowdLabels:
    path = Path(path)
    rows = _rows(_text(path), path)
    if not rows:
        raise ValueError(f"{path.name} holds no rows")
    labels = CrowdLabels()
    gold_at = None
    if _looks_like_header(rows[0]):
        header, body = rows[0], rows[1:]
        item_at, worker_at = _pick(header, ITEM_COLUMNS), _pick(header, WORKER_COLUMNS)
        answer_at, gold_at = _pick(header, ANSWER_COLUMNS), _pick(header, GOLD_COLUMNS)
        missing = [
            name
            for name, at in (("item", item_at), ("worker", worker_at), ("answer", answer_at))
            if at is None
        ]
        if missing:
            raise ValueError(f"{path.name}: no {', '.join(missing)} column in {header}")
    else:
        body, item_at, worker_at, answer_at = rows, 0, 1, 2
    for number, row in enumerate(body, start=2):
        if len(row) <= max(item_at, worker_at, answer_at):
            raise ValueError(f"{path.name} line {number}: expected item, worker and answer")
        item = row[item_at].strip()
        labels.add(item, row[worker_at].strip(), row[answer_at].strip())
        if gold_at is not None and row[gold_at].strip():
            labels.truth.setdefault(item, row[gold_at].strip())
    if truth_path is not None:
        labels.truth.update(read_truth(truth_path))
    return labels


def read_coders(path: Path | str) -> CrowdLabels:
    path = Path(path)
    rows = _rows(_text(path), path)
    labels = CrowdLabels()
    named = rows and rows[0] and rows[0][0].strip().lower() == "coder"
    if named:
        units, rows = [c.strip() for c in rows[0][1:]], rows[1:]
    for number, row in enumerate(rows, start=1):
        coder = row[0].strip() if named else f"coder-{number}"
        cells = row[1:] if named else row
        for index, cell in enumerate(cells):
            if cell.strip():
                unit = units[index] if named else f"unit-{index + 1}"
                labels.add(unit, coder, cell.strip())
    return labels


def read_subjects(path: Path | str) -> CrowdLabels:
    path = Path(path)
    rows = _rows(_text(path), path)
    header, body = rows[0], rows[1:]
    labels = CrowdLabels()
    for row in body:
        subject = row[0].strip()
        for rater, cell in zip(header[1:], row[1:], strict=False):
            if cell.strip():
                labels.add(subject, rater.strip(), cell.strip())
    return labels


def read_counts(path: Path | str) -> CrowdLabels:
    """Counts become judgments by anonymous raters ``slot-1`` … ``slot-n`` per subject: the
    layout does not say who chose what, and agreement statistics do not need to know."""
    path = Path(path)
    rows = _rows(_text(path), path)
    header, body = rows[0], rows[1:]
    labels = CrowdLabels()
    for row in body:
        subject, slot = row[0].strip(), 0
        for category, cell in zip(header[1:], row[1:], strict=True):
            for _ in range(int(cell or 0)):
                slot += 1
                labels.add(subject, f"slot-{slot}", category.strip())
    return labels


def read_cubam(path: Path | str, *, truth_path: Path | str | None = None) -> CrowdLabels:
    import yaml

    def text(value) -> str:
        return ("1" if value else "0") if isinstance(value, bool) else str(value)

    data = yaml.safe_load(_text(path))
    labels = CrowdLabels()
    for worker, answers in data.items():
        for item, answer in answers.items():
            labels.add(str(item), str(worker), text(answer))
    if truth_path is not None:
        labels.truth = {str(k): text(v) for k, v in yaml.safe_load(_text(truth_path)).items()}
    return labels


def read_labels(path: Path | str, *, fmt: str, truth_path: Path | str | None = None) -> CrowdLabels:
    if fmt == "long":
        return read_long(path, truth_path=truth_path)
    if fmt == "cubam":
        return read_cubam(path, truth_path=truth_path)
    readers = {"coders": read_coders, "subjects": read_subjects, "counts": read_counts}
    if fmt not in readers:
        raise ValueError(f"unknown label format {fmt!r}; use one of {', '.join(LABEL_FORMATS)}")
    labels = readers[fmt](path)
    if truth_path is not None:
        labels.truth = read_truth(truth_path)
    return labels


def read_pairs(path: Path | str) -> CrowdComparisons:
    path = Path(path)
    rows = _rows(_text(path), path)
    header = [h.strip().lower() for h in rows[0]]
    for needed in ("left", "right", "winner"):
        if needed not in header:
            raise ValueError(f"{path.name}: no {needed!r} column in {rows[0]}")
    at = {
        name: header.index(name)
        for name in ("left", "right", "winner", "worker", "prompt")
        if name in header
    }
    comparisons = CrowdComparisons()
    for number, row in enumerate(rows[1:], start=2):
        winner = row[at["winner"]].strip().lower()
        if winner not in ("left", "right", "tie"):
            raise ValueError(f"{path.name} line {number}: winner {winner!r} is not left|right|tie")
        comparisons.add(
            row[at["left"]].strip(),
            row[at["right"]].strip(),
            winner,
            row[at["worker"]].strip() if "worker" in at else "",
            row[at["prompt"]].strip() if "prompt" in at else "",
        )
    return comparisons


def read_pair_counts(path: Path | str) -> CrowdComparisons:
    path = Path(path)
    rows = _rows(_text(path), path)
    header = [h.strip().lower() for h in rows[0]]
    comparisons = CrowdComparisons()
    if header[:4] == ["home.team", "away.team", "home.wins", "away.wins"]:
        for row in rows[1:]:
            home, away = row[0].strip(), row[1].strip()
            for _ in range(int(row[2])):
                comparisons.add(home, away, "left")
            for _ in range(int(row[3])):
                comparisons.add(home, away, "right")
    elif header[:3] == ["cited", "citing", "count"]:
        for row in rows[1:]:
            cited, citing = row[0].strip(), row[1].strip()
            if cited != citing:
                for _ in range(int(row[2])):
                    comparisons.add(cited, citing, "left")
    else:
        raise ValueError(
            f"{path.name}: expected home.team,away.team,home.wins,away.wins or cited,citing,count"
        )
    return comparisons


def read_comparisons(path: Path | str, *, fmt: str) -> CrowdComparisons:
    if fmt == "pairs":
        return read_pairs(path)
    if fmt == "pair_counts":
        return read_pair_counts(path)
    raise ValueError(f"unknown comparison format {fmt!r}; use one of {', '.join(PAIR_FORMATS)}")
