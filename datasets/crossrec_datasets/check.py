"""``crossrec data check``: validate a dataset folder and report every problem with its count and a
few examples. Problems that make the data unusable (unreadable files, missing columns, wrong types,
missing or duplicate ids) are errors; row-level problems (unknown items, bad timestamps, empty
texts, missing or corrupt images) are warnings: those rows would be skipped."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from crossrec_core.errors import DataFormatError
from crossrec_datasets.folder import FORMATS, find_table, scan_table
from crossrec_datasets.vectors import inspect_vectors
from crossrec_datasets.schema import KINDS, TABLES, polars_schema, required_columns

__all__ = ["Problem", "CheckReport", "check_dataset"]

_MAX_TIMESTAMP = 4_102_444_800  # 2100-01-01: larger values are most likely milliseconds


@dataclass(frozen=True)
class Problem:
    table: str
    code: str       # short name: unreadable, encoding, missing_column, wrong_type, null_id, duplicate_id, ...
    message: str
    count: int      # rows (or files) affected
    examples: tuple[str, ...] = ()
    error: bool = False  # True: the data cannot be used as it is


@dataclass(frozen=True)
class CheckReport:
    root: Path
    rows: dict[str, int]  # table -> rows read
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def usable(self) -> bool:
        return not any(p.error for p in self.problems)

    def to_dict(self) -> dict:
        return {"root": str(self.root), "usable": self.usable, "rows": self.rows,
                "problems": [asdict(p) for p in self.problems]}

    def format(self) -> str:
        lines = [f"{self.root}: " + ", ".join(f"{t} {n} rows" for t, n in self.rows.items())]
        for p in self.problems:
            lines.append(f"  {'ERROR' if p.error else 'warning'} [{p.table}] {p.code}: {p.message} ({p.count})")
            lines.extend(f"      e.g. {e}" for e in p.examples)
        lines.append("usable" if self.usable else "NOT usable: fix the errors above")
        return "\n".join(lines)


class _Collector:
    def __init__(self, max_examples: int) -> None:
        self.problems: list[Problem] = []
        self.max_examples = max_examples

    def add(self, table: str, code: str, message: str, count: int, examples=(), error: bool = False) -> None:
        if count:
            self.problems.append(Problem(table, code, message, int(count),
                                         tuple(str(e) for e in list(examples)[: self.max_examples]), error))


def _rows(frame: pl.DataFrame, mask: pl.Series, column: str) -> list[str]:
    """Examples 'row N: column=value' (N counts data rows from 1)."""
    hits = frame.with_row_index("_row", offset=1).filter(mask)
    return [f"row {r}: {column}={v!r}" for r, v in hits.select("_row", column).head(10).iter_rows()]


def _check_encoding(path: Path, table: str, out: _Collector) -> bool:
    bad = []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append(f"line {n}: {exc.reason} at byte {exc.start}")
    out.add(table, "encoding", f"{path.name}: lines that are not UTF-8 (save the file as UTF-8)", len(bad), bad, error=True)
    return not bad


def _read(root: Path, table: str, out: _Collector) -> pl.DataFrame | None:
    try:
        path = find_table(root, table)
    except DataFormatError as exc:
        out.add(table, "mixed_formats", str(exc), 1, error=True)
        return None
    if path is None:
        if table == "catalogue":
            out.add(table, "missing_file", f"no catalogue.{{{','.join(FORMATS)}}} in the folder", 1, error=True)
        return None
    if path.suffix != ".parquet" and not _check_encoding(path, table, out):
        return None
    try:
        frame = scan_table(path).collect()
    except Exception as exc:  # any parse failure of polars is a problem of the file, reported as such
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        out.add(table, "unreadable", f"{path.name} cannot be read as {path.suffix[1:]}: {first}", 1, error=True)
        return None
    missing = [c for c in required_columns(table) if c not in frame.columns]
    out.add(table, "missing_column", f"{path.name} lacks required column(s) {missing}; has {frame.columns}",
            len(missing), missing, error=True)
    if missing:
        return None
    casts = {}
    for col, dtype in polars_schema(table).items():
        if col not in frame.columns:
            continue
        cast = frame[col].cast(dtype, strict=False)
        bad = cast.is_null() & frame[col].is_not_null()
        out.add(table, "wrong_type", f"column {col!r} of {path.name}: values that are not {dtype}", int(bad.sum()),
                _rows(frame, bad, col), error=True)
        casts[col] = cast
    return frame.with_columns(**casts)


def _check_ids(frame: pl.DataFrame, table: str, column: str, unique: bool, out: _Collector) -> None:
    nulls = frame[column].is_null() | (frame[column].cast(pl.Utf8).str.strip_chars() == "")
    out.add(table, "null_id", f"rows without {column}", int(nulls.sum()), _rows(frame, nulls, column), error=True)
    if unique:
        dup = frame[column].is_duplicated() & ~nulls
        out.add(table, "duplicate_id", f"{column} values that occur more than once", int(frame.filter(dup)[column].n_unique()),
                _rows(frame, dup, column), error=True)


def _check_images(frame: pl.DataFrame, root: Path, table: str, out: _Collector, required: bool) -> None:
    from PIL import Image

    missing, corrupt = [], []
    for n, rel in enumerate(frame["image"].to_list(), 1):
        if rel is None or rel == "":
            if required:
                missing.append(f"row {n}: image is empty")
            continue
        path = root / rel
        if not path.is_file():
            missing.append(f"row {n}: {rel} does not exist")
            continue
        try:
            with Image.open(path) as im:
                im.load()
        except Exception as exc:  # PIL raises many types for a bad file; each is one corrupt image
            corrupt.append(f"row {n}: {rel}: {type(exc).__name__}: {exc}")
    out.add(table, "missing_image", "image paths (relative to the folder) that do not exist", len(missing), missing)
    out.add(table, "corrupt_image", "images that do not decode", len(corrupt), corrupt)


def check_dataset(path: str | os.PathLike, *, check_images: bool = True, max_examples: int = 5) -> CheckReport:
    """Check a user-data folder (see README "Your data"); never raises on bad data, reports it."""
    root = Path(path).expanduser()
    out = _Collector(max_examples)
    if not root.is_dir():
        out.add("folder", "missing_folder", f"{str(root)!r} is not a folder", 1, error=True)
        return CheckReport(root, {}, tuple(out.problems))
    frames = {t: _read(root, t, out) for t in TABLES}
    rows = {t: f.height for t, f in frames.items() if f is not None}
    cat, inter, photos, users = (frames[t] for t in ("catalogue", "interactions", "photos", "users"))
    items = None
    if cat is not None:
        _check_ids(cat, "catalogue", "item_id", True, out)
        items = cat["item_id"].drop_nulls().unique()
        empty = (cat["title"].fill_null("").str.strip_chars() == "") & (cat["text"].fill_null("").str.strip_chars() == "") \
            if "text" in cat.columns else cat["title"].fill_null("").str.strip_chars() == ""
        out.add("catalogue", "empty_text", "items whose title and text are both empty", int(empty.sum()),
                _rows(cat, empty, "item_id"))
        if check_images and "image" in cat.columns:
            _check_images(cat, root, "catalogue", out, required=False)
        for p in inspect_vectors(root, cat)[1]:
            out.add("catalogue", p.code, p.message, p.count, p.examples, error=True)
    if photos is not None:
        _check_ids(photos, "photos", "item_id", False, out)
        if items is not None:
            unknown = ~photos["item_id"].is_in(items.implode()) & photos["item_id"].is_not_null()
            out.add("photos", "unknown_item", "photos of items not in the catalogue", int(unknown.sum()),
                    _rows(photos, unknown, "item_id"))
        if check_images:
            _check_images(photos, root, "photos", out, required=True)
    if users is not None:
        _check_ids(users, "users", "user_id", True, out)
    if inter is not None:
        _check_ids(inter, "interactions", "user_id", False, out)
        _check_ids(inter, "interactions", "item_id", False, out)
        if items is not None:
            unknown = ~inter["item_id"].is_in(items.implode()) & inter["item_id"].is_not_null()
            out.add("interactions", "unknown_item", "interactions with items not in the catalogue (skipped)",
                    int(unknown.sum()), _rows(inter, unknown, "item_id"))
        kind = ~inter["kind"].is_in(list(KINDS))
        out.add("interactions", "bad_kind", f"kinds other than {list(KINDS)} (skipped)", int(kind.sum()), _rows(inter, kind, "kind"))
        ts = inter["timestamp"]
        bad_ts = ts.is_null() | (ts < 0) | (ts > _MAX_TIMESTAMP)
        out.add("interactions", "bad_timestamp", "timestamps missing, negative or beyond 2100 (milliseconds? expected "
                "unix seconds) (skipped)", int(bad_ts.sum()), _rows(inter, bad_ts, "timestamp"))
        value = inter["value"] if "value" in inter.columns else pl.Series("value", [None] * inter.height, pl.Float64)
        bad_rating = (inter["kind"] == "rating") & (value.is_null() | value.is_nan())
        out.add("interactions", "rating_without_value", "rating events without a numeric value (skipped)",
                int(bad_rating.fill_null(False).sum()), _rows(inter, bad_rating.fill_null(False), "value"))
        usable = inter.height - int((bad_ts | kind).fill_null(True).sum())
        if inter.height and usable == 0:
            out.add("interactions", "no_usable_rows", "no interaction survives the checks", inter.height, error=True)
    return CheckReport(root, rows, tuple(out.problems))
