"""The columns of a version's exports: one typed schema that imagefolder, WebDataset and Parquet
all follow, worked out from the whole manifest before the first row is written (so every part of
a many-part export agrees).

In order, with their ``datasets`` types::

    image          Image          the sticker PNG, or the animated WebP
    text           string         the caption
    split          string         train | validation
    candidate_id   int64
    label          (per version)  the first condition's consensus label: bool for a yes/no
                                  question, string for a choice, int64 for a rating
    confidence     float64
    labels         struct         {question: label}, each field typed as ``label`` is
    confidences    struct         {question: float64}
    scores         struct         {question: float64}, scale questions' means
    n_judgments    int64
    model_version  string         "" for imported files
    seed           int64
    prompt         string         the raw prompt
    sha256         string         the file's sha256, as in the manifest
    teacher        string         animations only: the model that animated it ("" if none)
    source_candidate_id int64     animations only: the source sticker's candidate
    frame_count    int64          animations only
    motion_score   float64        animations only
    source         Image          animations only: the source sticker
    frames         [Image]        animations only: every frame, as PNGs

Files come first and last, so the columns between them (a WebDataset sample's ``.json``) run
in one piece.

A column that no entry of the version fills is left out (no column is ever typed null): a rule
without conditions has no ``label``, a version without scale questions no ``scores``, imports
without motion scores no ``motion_score``. A label column whose values mix types (weak labels
can) is the values' JSON text, a string, in every format alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa

BOOL, INT, FLOAT, STRING = "bool", "int64", "float64", "string"
IMAGE, IMAGES, STRUCT = "image", "images", "struct"
_SCALAR_ARROW = {BOOL: pa.bool_(), INT: pa.int64(), FLOAT: pa.float64(), STRING: pa.string()}
IMAGE_ARROW = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
# Label columns: the manifest keeps them as JSON.
LABEL_COLUMNS = ("label", "labels", "confidences", "scores")
# The animation columns left out when no entry of the version fills them.
OPTIONAL_ANIMATION_COLUMNS = ("teacher", "source", "frames", "motion_score")


@dataclass(frozen=True)
class Column:
    """One column: ``dtype`` is bool, int64, float64, string, image, images (a list of images) or
    struct (then ``fields`` holds its fields, by name). ``json_text``: a string column that
    holds the manifest's JSON text because the values' types differ."""

    name: str
    dtype: str
    fields: tuple[Column, ...] = ()
    json_text: bool = False

    @property
    def arrow_type(self) -> pa.DataType:
        if self.dtype == STRUCT:
            return pa.struct([(f.name, f.arrow_type) for f in self.fields])
        if self.dtype == IMAGE:
            return IMAGE_ARROW
        if self.dtype == IMAGES:
            return pa.list_(IMAGE_ARROW)
        return _SCALAR_ARROW[self.dtype]

    def feature(self) -> dict:
        """The column's type as ``datasets`` writes it in Parquet metadata (``Features.to_dict``).

        Lists use the older ``Sequence`` spelling, which ``datasets`` 2 to 5 all read."""
        if self.dtype == STRUCT:
            return {f.name: f.feature() for f in self.fields}
        if self.dtype == IMAGE:
            return {"_type": "Image"}
        if self.dtype == IMAGES:
            return {"feature": {"_type": "Image"}, "_type": "Sequence"}
        return {"dtype": self.dtype, "_type": "Value"}

    def yaml_feature(self) -> dict:
        """The column's type as a dataset card's ``dataset_info.features`` lists it."""
        if self.dtype == STRUCT:
            return {"name": self.name, "struct": [f.yaml_feature() for f in self.fields]}
        if self.dtype == IMAGES:
            return {"name": self.name, "sequence": IMAGE}
        return {"name": self.name, "dtype": self.dtype}


def value_type(values: Iterable) -> str | None:
    """The one type of the JSON ``values`` (None aside): bool, int64, float64 or string; None
    when every value is None; "json" when they mix types or nest."""
    kinds = set()
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add(BOOL)
        elif isinstance(value, int):
            kinds.add(INT)
        elif isinstance(value, float):
            kinds.add(FLOAT)
        elif isinstance(value, str):
            kinds.add(STRING)
        else:
            return "json"
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "json"


def _label_column(name: str, values: list) -> Column | None:
    kind = value_type(values)
    if kind is None:
        return None
    if kind == "json":
        return Column(name, STRING, json_text=True)
    return Column(name, kind)


def _struct_column(name: str, dicts: list) -> Column | None:
    """A struct when every entry has the same keys with one type each; else JSON text."""
    if not any(dicts):
        return None
    if not all(isinstance(d, dict) for d in dicts) or len({frozenset(d) for d in dicts}) > 1:
        return Column(name, STRING, json_text=True)
    keys = sorted(dicts[0])
    kinds = [value_type(d[key] for d in dicts) for key in keys]
    if any(kind in (None, "json") for kind in kinds):
        return Column(name, STRING, json_text=True)
    return Column(name, STRUCT, fields=tuple(map(Column, keys, kinds)))


@dataclass(frozen=True)
class ExportColumns:
    """The columns of one version's exports, in order, and what the formats need besides:
    the file extensions its entries have and the most frames an animation has."""

    columns: tuple[Column, ...]
    extensions: tuple[str, ...] = ("png",)
    max_frames: int = 0

    @cached_property
    def _by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Column:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def features(self) -> dict:
        return {c.name: c.feature() for c in self.columns}

    def arrow_schema(self, metadata: dict[bytes, bytes]) -> pa.Schema:
        """The Parquet schema, with ``datasets``' features in its ``huggingface`` metadata so
        images decode and the types come back as written."""
        features = pa.schema([(c.name, c.arrow_type) for c in self.columns])
        return features.with_metadata(metadata)

    def record_columns(self) -> list[Column]:
        """The columns that are not files: a WebDataset sample's ``.json``."""
        return [c for c in self.columns if c.dtype not in (IMAGE, IMAGES)]


def export_columns(
    *,
    kind: str,
    label_values: dict[str, list],
    filled: Iterable[str],
    extensions: Iterable[str],
    max_frames: int,
) -> ExportColumns:
    """The columns of a version of ``kind`` (image or animation).

    ``label_values``: the distinct values of each label column (``label``, ``labels``,
    ``confidences``, ``scores``) over the whole version. ``filled``: the optional animation
    columns that at least one entry fills.
    """
    filled = set(filled)
    labels = {
        "label": _label_column("label", label_values["label"]),
        **{
            name: _struct_column(name, label_values[name])
            for name in ("labels", "confidences", "scores")
        },
    }
    columns = [
        Column("image", IMAGE),
        Column("text", STRING),
        Column("split", STRING),
        Column("candidate_id", INT),
        labels["label"],
        Column("confidence", FLOAT),
        labels["labels"],
        labels["confidences"],
        labels["scores"],
        Column("n_judgments", INT),
        Column("model_version", STRING),
        Column("seed", INT),
        Column("prompt", STRING),
        Column("sha256", STRING),
    ]
    if kind == "animation":
        has_source = "source" in filled
        columns += [
            Column("teacher", STRING) if "teacher" in filled else None,
            Column("source_candidate_id", INT) if has_source else None,
            Column("frame_count", INT),
            Column("motion_score", FLOAT) if "motion_score" in filled else None,
            Column("source", IMAGE) if has_source else None,
            Column("frames", IMAGES) if "frames" in filled else None,
        ]
    return ExportColumns(
        columns=tuple(c for c in columns if c is not None),
        extensions=tuple(sorted(set(extensions))),
        max_frames=max_frames if "frames" in filled else 0,
    )
