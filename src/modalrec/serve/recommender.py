"""Recommendations from a trained run: load it, score histories, add new items, find similar items.

``Recommender.load(run_dir)`` rebuilds the model from the run's config and best checkpoint and keeps
its item matrix in a retrieval index (:mod:`modalrec.serve.index`: exact chunked search, FAISS for
very large catalogues). A history entry is a catalogue item id or, for ID-free models, the raw
content of an item the model never saw (``{"title": ..., "genres": [...], "image": ...}`` or
``{"text": ...}``). :meth:`Recommender.add_items` encodes new items with the model's own towers and
makes them recommendable at once, without retraining. Every method is safe to call from several
threads while items are being added (one re-entrant lock around model state; searches run on the
index's copy-on-write matrix).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from modalrec.models.base import CapabilityError, NewItems
from modalrec.serve import validation as check
from modalrec.serve.validation import RequestError

if TYPE_CHECKING:
    import pandas as pd

    from modalrec.data.dataset import Catalogue
    from modalrec.run.store import LoadedRun
    from modalrec.serve.index import ExactIndex

MAX_K = 1000  # the largest k a caller may ask for (the HTTP service enforces the same bound)


class UnknownItemError(RequestError, KeyError):
    """Item ids that are not in the catalogue (``item_ids`` lists them all)."""

    status = 404

    def __init__(self, item_ids: list[str]):
        self.item_ids = list(item_ids)
        shown = ", ".join(repr(i) for i in self.item_ids[:10]) + (" ..." if len(self.item_ids) > 10 else "")
        super().__init__(
            f"unknown item id(s): {shown} (not in the catalogue; add new items first, or give "
            "their content instead of an id)"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class UnsupportedError(RequestError):
    """The model cannot do this by design (e.g. an ID model asked to encode a new item)."""

    status = 422


@dataclass
class Recommendation:
    item_id: str
    score: float
    text: str  # the text the model reads
    is_new: bool = False  # added after training (never seen by the model)
    has_image: bool = False
    title: str = ""  # for display: the catalogue's own fields where it has them (else the text)
    year: str = ""
    genres: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ItemInfo:
    item_id: str
    text: str
    is_new: bool = False
    has_image: bool = False
    title: str = ""
    year: str = ""
    genres: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _field_text(value) -> str:
    """A display field as text ("" for missing values; a list of genres joined)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in value)
    return str(value).strip()


def _source_of(record: dict):
    """Where the run's catalogue came from (kind and item table spec, to render new items' text like the
    catalogue's), from its data record: never reads or fetches the data."""
    from modalrec.config import InteractionsSpec, ItemsSpec, update_dataclass
    from modalrec.data.prepare import Source

    src = (record.get("meta") or {}).get("source") or {}
    if not src.get("kind"):
        return None
    clean = lambda d: {k: v for k, v in (d or {}).items() if k not in ("digest", "image_dir_fingerprint")}  # noqa: E731
    try:
        inter = update_dataclass(InteractionsSpec(), clean(src.get("interactions")))
        items = update_dataclass(ItemsSpec(), clean(src["items"])) if src.get("items") else None
    except ValueError:  # written by another version: new items then need a "text" field
        return None
    return Source(record.get("fingerprint", {}).get("name", ""), src["kind"], inter, items)


def read_jsonl_objects(path: Path, expected: str, error=ValueError):
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file; a line that is not
    JSON, or not a JSON object, raises ``error`` naming the file and line."""
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{path}, line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise error(f"{path}, line {n}: expected {expected}")
            yield n, obj


class Recommender:
    """A trained run ready to answer: ``Recommender.load("runs/demo/pmmrec").recommend(["50", "181"])``."""

    def __init__(
        self, cfg, dataset, model, *, index: str = "auto", source=None, recall_target: float = 0.95, **index_opts
    ):
        from modalrec.serve.index import build_index

        from modalrec.content.image import MAX_SERVED_PIXELS

        self.cfg, self.dataset, self.model = cfg, dataset, model
        self._run: LoadedRun | None = None  # the run folder's record when loaded from one (Recommender.load)
        self.max_image_pixels = MAX_SERVED_PIXELS  # images in requests: refused above this, from their header
        self.model.eval()
        self._lock = threading.RLock()
        self._source = source
        cat = dataset.catalogue
        self._ids: list[str] = cat.item_ids.tolist()
        self._text: list[str] = cat.text.tolist()
        self._row: dict[str, int] = {k: i for i, k in enumerate(self._ids) if i > 0}
        self._n_trained = len(self._ids) - 1
        # catalogue row -> the model's row (0: known to the index only, see add_vectors)
        self._mrow: list[int] = list(range(len(self._ids)))
        self._lower: list[str] = [t.lower() for t in self._text]
        self._new_images: dict[int, bytes] = {}
        self._new_fields: dict[int, tuple[str, str, str]] = {}  # display fields of added items
        self._removed: set[int] = set()  # rows of added items removed since (masked, never recommended)
        self._keys: dict | None = None  # content keys for same_content, built on first use
        self._image_reader = None
        if cat.image_paths is not None:
            from modalrec.content.image import ImageReader

            self._image_reader = ImageReader(cat.item_ids, cat.image_paths)
        self._has_image = np.zeros(len(self._ids), dtype=bool)
        if self._image_reader is not None:
            self._has_image[:] = self._image_reader.available()
        with torch.no_grad():
            table = self.model.item_embeddings(None).float()
        scorer = None if model.score_is_dot else model.score
        self.index = build_index(table, kind=index, scorer=scorer, **index_opts)
        self._scale = 1.0  # score() = scale * dot product for dot models (UniSRec: 1 / temperature)
        if model.score_is_dot:
            g = torch.Generator().manual_seed(0)
            u, v = torch.randn(1, table.shape[1], generator=g), torch.randn(1, table.shape[1], generator=g)
            with torch.no_grad():
                self._scale = float(model.score(u, v)[0, 0]) / float((u @ v.T)[0, 0])
        self._sim_index: ExactIndex | None = None  # cosine index of the item vectors (similar_items), made on first use
        if hasattr(self.index, "tune"):  # an approximate index: calibrated on real users
            self.index.tune(self.calibration_users(), target=recall_target)

    def calibration_users(self, n: int = 200) -> torch.Tensor:
        """User vectors of up to ``n`` validation histories (test histories stay untouched), the queries
        an approximate index is tuned on."""
        split = self.dataset.split
        part = split.valid if len(split.valid) else split.train
        rows = [[int(i) for i in part.sequence(s)[-self.cfg.model.max_len :]] for s in range(min(n, len(part)))]
        rows = [r for r in rows if r]
        if not rows:  # no histories to learn from: item vectors stand in for users
            return self.index.items[1 : n + 1].float()
        with torch.no_grad():
            return self.model.user_embeddings({"items": self._left_pad(rows)}).float()

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        checkpoint: str = "best",
        progress: bool = False,
        index: str = "auto",
        dataset=None,
        **index_opts,
    ) -> "Recommender":
        """A finished run ready to answer, from its folder alone (``checkpoint``: ``best`` or ``last``).

        ``dataset``: serve with this prepared data set instead of the run's own copy; it must be the
        data the run was trained on (checked; a mismatch raises naming the difference).
        """
        from modalrec.run.store import load_run

        run = load_run(run_dir, checkpoint, dataset=dataset)
        rec = cls(run.cfg, run.dataset, run.model, index=index, source=_source_of(run.record), **index_opts)
        rec._run = run
        return rec

    def save(self, run_dir: str | Path) -> Path:
        """Write this recommender as a self-contained run folder (items added since loading included).

        Items added with :meth:`add_vectors` have no content the model could rebuild them from, so a
        recommender holding them cannot be saved."""
        import dataclasses

        from modalrec.run.folder import RunDir, run_lock
        from modalrec.run.store import data_record, save_run

        rd = RunDir(run_dir)
        if self._removed:
            raise UnsupportedError(
                "items were removed since loading (they stay in the model's tables): save the "
                "recommender before removing items, or load the run again and add them anew"
            )
        with self._lock, run_lock(rd):
            vector_only = [self._ids[r] for r in range(self._n_trained + 1, len(self._ids)) if self._mrow[r] == 0]
            if vector_only:
                raise UnsupportedError(
                    f"item(s) {', '.join(map(repr, vector_only[:10]))} were added as vectors only: "
                    "the model cannot rebuild them, so this recommender cannot be saved"
                )
            dataset = dataclasses.replace(self.dataset, catalogue=self._catalogue_with_new_items(rd))
            run = self._run
            record = (
                run.record
                if run is not None and run.record.get("fingerprint")
                else data_record(self.dataset, {"kind": "given"})
            )
            save_run(
                rd,
                self.cfg,
                self.model,
                dataset,
                run.results if run is not None else {},
                origin=record.get("origin", {"kind": "given"}),
                command="Recommender.save",
                record=record,
            )
        return rd.path

    def _catalogue_with_new_items(self, rd) -> Catalogue:
        """The catalogue plus the items added since loading (their images written to ``rd/images``)."""
        from modalrec.data.dataset import Catalogue

        cat = self.dataset.catalogue
        n_old, n_new = len(cat.item_ids), len(self._ids) - len(cat.item_ids)
        paths = None
        if cat.image_paths is not None or self._new_images:
            paths = (list(cat.image_paths) if cat.image_paths is not None else [""] * n_old) + [""] * n_new
            for row, data in self._new_images.items():
                path = rd.path / "images" / f"{self._ids[row]}.img"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                paths[row] = str(path.resolve())
        fields = {
            k: np.concatenate([v, np.zeros(n_new, dtype=v.dtype)])  # raw columns: empty for the new rows
            for k, v in cat.fields.items()
        }
        return Catalogue(
            item_ids=np.asarray(self._ids),
            text=np.asarray(self._text),
            image_paths=None if paths is None else np.asarray(paths),
            fields=fields,
        )

    # -- catalogue -----------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        """Items that can be recommended (removed ones not counted)."""
        return len(self._ids) - 1 - len(self._removed)

    @property
    def model_name(self) -> str:
        return self.cfg.model.name

    @property
    def can_add_items(self) -> bool:
        return bool(self.model.id_free)

    @property
    def index_info(self) -> dict:
        """How items are searched: ``{"kind": "exact"}`` or the FAISS settings plus the recall@10
        against exact search measured when it was tuned (``recall``, on validation users)."""
        index = self.index
        info = dict(getattr(index, "params", {"kind": "exact"}))
        recall = getattr(index, "recall", None)
        if recall:
            info["recall@10"] = round(float(recall["recall"]), 4)
        return info

    def _display(self, row: int) -> tuple[str, str, str]:
        """(title, year, genres) of a row: the catalogue's raw fields where it keeps them, else the text."""
        if row in self._new_fields:
            return self._new_fields[row]
        fields = self.dataset.catalogue.fields if row <= self._n_trained else {}
        title = _field_text(fields["title"][row]) if "title" in fields else ""
        year = _field_text(fields["year"][row]) if "year" in fields else ""
        genres = _field_text(fields["genres"][row]) if "genres" in fields else ""
        return title or self._text[row], year, genres

    def _info(self, row: int) -> ItemInfo:
        return ItemInfo(
            self._ids[row], self._text[row], row > self._n_trained, bool(self._has_image[row]), *self._display(row)
        )

    def item(self, item_id) -> ItemInfo:
        return self._info(self._rows([item_id])[0])

    def _rows(self, item_ids: Iterable) -> list[int]:
        ids = [str(i) for i in item_ids]
        unknown = [i for i in ids if i not in self._row]
        if unknown:
            raise UnknownItemError(unknown)
        return [self._row[i] for i in ids]

    def search(self, query: str, limit: int = 20) -> list[ItemInfo]:
        """Items whose text contains ``query`` (case-insensitive); texts that start with it first."""
        if not isinstance(query, str):
            raise RequestError(f"query must be text, not {query!r:.60}")
        limit = check.positive_int(limit, "limit", 1000)
        q = query.strip().lower()
        if not q:
            return []
        starts, contains = [], []
        for row in range(1, len(self._lower)):
            if row in self._removed:
                continue
            t = self._lower[row]
            if t.startswith(q):
                starts.append(row)
            elif q in t:
                contains.append(row)
            if len(starts) >= limit:
                break
        return [self._info(r) for r in (starts + contains)[:limit]]

    def item_image(self, item_id) -> bytes | None:
        """The encoded image file of an item (None when it has none)."""
        row = self._rows([item_id])[0]
        if row in self._new_images:
            return self._new_images[row]
        if self._image_reader is None or not self._has_image[row]:
            return None
        data, _ = self._image_reader._bytes(row)
        return data

    # -- content of items the model never saw ----------------------------------------------------

    def _text_of(self, fields: dict) -> str:
        """Catalogue text of a new item: ``text`` as given, else rendered like the catalogue's texts."""
        if fields.get("text"):
            return str(fields["text"])
        title, src = fields.get("title"), self._source
        spec = getattr(src, "items", None)
        if spec is not None:
            from modalrec.data.tables import render_text, template_fields
            from modalrec.datasets.new_items import item_fields

            need = template_fields(spec.text_template) if spec.text_template else list(spec.text_fields)
            df = item_fields(src, fields, need)
            if df is not None:
                return str(render_text(df, spec.text_fields, spec.text_template)[0])
        if title:
            return str(title)
        raise RequestError("a new item needs its content: give 'text', or 'title' (with optional 'year' and 'genres')")

    def _image_of(self, fields: dict, text: str) -> tuple[np.ndarray | None, bytes | None]:
        """(decoded image at the tower's size or None, the encoded bytes kept for display)."""
        size = self.model.image_size
        data = fields.get("image")
        if data is None:
            from modalrec.datasets.new_items import item_poster

            data = item_poster(self._source, fields, bool(self.cfg.data.posters))
        if data is None:
            return None, None
        if isinstance(data, np.ndarray):
            from modalrec.datasets.builtin import png_bytes

            arr = np.asarray(data, dtype=np.uint8)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise RequestError(f"an image array must be [H, W, 3] uint8, not shape {list(arr.shape)}")
            data = png_bytes(arr)
        elif isinstance(data, (str, Path)):
            p = Path(data)
            if not p.is_file():
                raise RequestError(f"image file not found: {p}")
            data = p.read_bytes()
        if not isinstance(data, (bytes, bytearray)):
            raise RequestError("'image' must be a file path, encoded image bytes or an [H, W, 3] uint8 array")
        if size is None:
            return None, bytes(data)
        from modalrec.content.image import decode_image

        try:
            return decode_image(bytes(data), size, self.max_image_pixels), bytes(data)
        except Exception as e:
            raise RequestError(f"the image of new item {fields.get('item_id', '')!r} cannot be decoded: {e}") from e

    def _new_items(self, entries: list[dict]) -> tuple[NewItems, list[str], list[bytes | None]]:
        texts, images, present, raw = [], [], [], []
        size = self.model.image_size
        for k, fields in enumerate(entries):
            where = (
                f"item {fields.get('item_id')!r}"
                if isinstance(fields, dict) and "item_id" in fields
                else (f"content entry {k}")
            )
            fields = check.content(fields, where)
            text = self._text_of(fields)
            img, data = self._image_of(fields, text)
            texts.append(text)
            raw.append(data)
            present.append(img is not None)
            if size is not None:
                images.append(img if img is not None else np.zeros((size, size, 3), np.uint8))
        arr = np.stack(images) if size is not None and images else None
        return NewItems(texts, arr, np.asarray(present, dtype=bool)), texts, raw

    def _require_content_model(self, what: str) -> None:
        if not self.model.id_free:
            raise UnsupportedError(
                f"{self.model_name} gives every item an ID embedding learnt in training, so it cannot {what}; "
                "use an ID-free model (pmmrec, missrec or unisrec with model.mode=inductive)"
            )

    # -- adding items ----------------------------------------------------------------------------

    def add_items(self, items) -> list[str]:
        """Encode new items with the model's towers and make them recommendable now.

        ``items``: a pandas DataFrame or a list of dicts with ``item_id`` and the content (``text``, or
        ``title`` with optional ``year`` and ``genres``; optional ``image``: path, bytes or array).
        Returns the ids added. Either every item is added or none (nothing is half-added).
        """
        self._require_content_model("add items it never saw")
        rows = items.to_dict("records") if hasattr(items, "to_dict") else list(items)
        if not rows:
            raise RequestError("no items to add")
        ids = []
        for k, r in enumerate(rows):
            if not isinstance(r, dict):
                raise RequestError(f"item {k}: expected a mapping of fields, got {type(r).__name__}")
            if r.get("item_id") is None:
                raise RequestError(f"item {k}: 'item_id' is missing")
            ids.append(check.item_id(r["item_id"], f"item {k}: item_id"))
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise RequestError(f"item ids given twice: {', '.join(dup[:10])}")
        new, texts, raw = self._new_items(rows)
        features = self._features(new)  # the slow part, outside the lock: other requests go on meanwhile
        with self._lock:
            taken = [i for i in ids if i in self._row]
            if taken:
                raise RequestError(f"item id(s) already in the catalogue: {', '.join(taken[:10])}")
            n0 = self.model.n_items
            try:
                idx = self.model.add_items(features)
            except CapabilityError as e:
                raise UnsupportedError(str(e)) from None
            try:
                with torch.no_grad():
                    vec = self.model.item_embeddings(idx).float()
                _check_finite(vec, "the new items' vectors")
                self._append(ids, texts, raw, vec, idx.tolist(), [_new_display(r, t) for r, t in zip(rows, texts)])
            except BaseException:
                self.model.truncate_items(n0)
                raise
        return ids

    def remove_items(self, item_ids) -> list[str]:
        """Remove items added since training (:meth:`add_items`, :meth:`add_vectors`): they are never
        recommended, searched or accepted in a history again, and their ids may be added anew. Items the
        model was trained on cannot be removed (the model holds them); leave them out with ``exclude``."""
        ids = [check.item_id(i, "item_id") for i in (item_ids if isinstance(item_ids, (list, tuple)) else [item_ids])]
        with self._lock:
            rows = self._rows(ids)
            trained = [self._ids[r] for r in rows if r <= self._n_trained]
            if trained:
                raise UnsupportedError(
                    f"item(s) {', '.join(map(repr, trained[:10]))} were in the training data: the "
                    "model holds them, so only items added since can be removed"
                )
            for iid, row in zip(ids, rows):
                self._removed.add(row)
                del self._row[iid]
            self._keys = None  # a removed row may have shadowed another with the same content
        return ids

    def same_content(self, items) -> dict[str, str]:
        """New items (as given to :meth:`add_items`) whose content matches an item already in the catalogue:
        ``{new id: existing id}``. A match is the same text, or the same title and year (or both without
        a year), ignoring case and spaces (for example "Heat" (1995) given again)."""
        rows = items.to_dict("records") if hasattr(items, "to_dict") else list(items)
        keys = self._content_keys()
        out = {}
        for r in rows:
            if not isinstance(r, dict) or r.get("item_id") is None:
                continue
            try:
                r = check.content(r, "item")
                text = self._text_of(r)
            except RequestError:
                continue  # add_items says what is wrong with it
            title, year, _ = _new_display(r, "")
            for key in (_norm(text), ("title", _norm(title), year) if title else None):
                hit = keys.get(key) if key is not None else None
                if hit is not None and self._ids[hit] != str(r["item_id"]):
                    out[str(r["item_id"])] = self._ids[hit]
                    break
        return out

    def _content_keys(self) -> dict:
        """Normalised text and (title, year) of every live catalogue row -> its row: built once, then kept
        up to date by :meth:`_append` (a removal drops it, to be built again on the next use)."""
        with self._lock:
            if self._keys is None:
                self._keys = {}
                self._add_keys(self._keys, range(1, len(self._ids)))
            return self._keys

    def _add_keys(self, keys: dict, rows) -> None:
        for row in rows:
            if row in self._removed:
                continue
            title, year, _ = self._display(row)
            keys.setdefault(_norm(self._text[row]), row)
            keys.setdefault(("title", _norm(title), year), row)

    def _features(self, new: NewItems):
        """The item features the model reads, of items given as content (computed without the lock)."""
        from modalrec.content.features import new_item_features

        return new_item_features(self.model.feature_needs(), new)

    def _append(
        self,
        ids: list[str],
        texts: list[str],
        raw: list,
        vec: torch.Tensor,
        model_rows: list[int],
        display: list[tuple[str, str, str]] | None = None,
    ) -> None:
        """Add rows to the index and the catalogue metadata (caller holds the lock)."""
        first = len(self._ids)
        got = self.index.add(vec)
        if [int(i) for i in got] != list(range(first, first + len(ids))):
            raise RuntimeError("item index and catalogue are out of step")
        for k, (iid, text, data) in enumerate(zip(ids, texts, raw)):
            self._ids.append(iid)
            self._text.append(text)
            self._lower.append(text.lower())
            self._row[iid] = first + k
            self._mrow.append(model_rows[k])
            if data is not None:
                self._new_images[first + k] = data
            if display is not None:
                self._new_fields[first + k] = display[k]
        if self._keys is not None:
            self._add_keys(self._keys, range(first, first + len(ids)))
        self._has_image = np.concatenate([self._has_image, [d is not None for d in raw]])
        if self._sim_index is not None:
            self._sim_index.add(self._similarity(vec))

    def add_vectors(self, item_ids: list, vectors, texts: list[str] | None = None) -> list[str]:
        """Items whose vectors were computed elsewhere (e.g. a large catalogue encoded offline with the
        same model): recommendable at once; they cannot appear in histories (the model has no
        content for them). ``vectors``: ``[n, d]`` rows of the model's item space."""
        ids = [str(i) for i in item_ids]
        if any(i.strip() == "" or i.strip() != i for i in ids):
            raise RequestError("item ids must be non-empty, without surrounding white space")
        try:
            vec = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise RequestError(f"vectors must be numbers: {e}") from None
        _check_finite(vec, "vectors")
        width = self.index.items.shape[1] if hasattr(self.index, "items") else vec.shape[-1]
        if vec.ndim != 2 or vec.shape != (len(ids), width):
            raise RequestError(f"vectors must have shape [{len(ids)}, {width}], not {list(vec.shape)}")
        if len(set(ids)) != len(ids):
            raise RequestError("item ids given twice")
        texts = [str(t) for t in texts] if texts is not None else [""] * len(ids)
        with self._lock:
            taken = [i for i in ids if i in self._row]
            if taken:
                raise RequestError(f"item id(s) already in the catalogue: {', '.join(taken[:10])}")
            self._append(ids, texts, [None] * len(ids), vec, [0] * len(ids))
        return ids

    # -- recommending --------------------------------------------------------------------------

    def _history_rows(self, history: list) -> tuple[list[int], list[dict]]:
        """Catalogue rows of a history; raw-content entries become negative placeholders -1, -2, ..."""
        if not isinstance(history, (list, tuple)) or len(history) == 0:
            raise RequestError("the history is empty: give at least one item id (or the content of an item)")
        rows, raw, unknown = [], [], []
        for h in history:
            if isinstance(h, dict):
                raw.append(h)
                rows.append(-len(raw))
            elif isinstance(h, (str, int, np.integer)) and not isinstance(h, bool):
                key = str(h)
                if key in self._row:
                    rows.append(self._row[key])
                else:
                    unknown.append(key)
            else:
                raise RequestError(f"a history entry must be an item id or a mapping of content, not {h!r}")
        if unknown:
            raise UnknownItemError(unknown)
        if raw:
            self._require_content_model("use an item it never saw in a history")
        return rows, raw

    def _left_pad(self, rows_list: list[list[int]]) -> torch.Tensor:
        L = self.cfg.model.max_len
        out = torch.zeros(len(rows_list), L, dtype=torch.long)
        for b, rows in enumerate(rows_list):
            rows = rows[-L:]
            out[b, L - len(rows) :] = torch.as_tensor(rows, dtype=torch.long)
        return out

    @torch.no_grad()
    def _users(self, histories: list[list]) -> tuple[torch.Tensor, list[list[int]]]:
        """User vectors [B, d] and each history's catalogue rows (for excluding seen items)."""
        parsed = [self._history_rows(h) for h in histories]
        extra = [r for _, raw in parsed for r in raw]
        features = self._features(self._new_items(extra)[0]) if extra else None  # without the lock
        with self._lock:
            vector_only = [self._ids[r] for rows, _ in parsed for r in rows if r > 0 and self._mrow[r] == 0]
            if vector_only:
                raise RequestError(
                    f"item(s) {', '.join(map(repr, vector_only[:10]))} were added as vectors only: "
                    "they can be recommended but not used in a history"
                )
            n0 = self.model.n_items
            if extra:  # raw content: borrow model rows for this call only, then forget them
                self.model.add_items(features)
            try:
                full, off = [], n0
                for rows, raw in parsed:
                    full.append([self._mrow[r] if r > 0 else off - r for r in rows])
                    off += len(raw)
                users = self.model.user_embeddings({"items": self._left_pad(full)}).float()
            finally:
                if extra:
                    self.model.truncate_items(n0)
        return users, [[r for r in rows if r > 0] for rows, _ in parsed]

    def _allowed(self, include, exclude) -> torch.Tensor | None:
        if include is None and exclude is None and not self._removed:
            return None
        n = len(self._ids)
        if include is not None:
            mask = torch.zeros(n, dtype=torch.bool)
            mask[self._rows(include)] = True
        else:
            mask = torch.ones(n, dtype=torch.bool)
        if exclude is not None:
            mask[self._rows(exclude)] = False
        if self._removed:
            mask[list(self._removed)] = False
        return mask

    def _check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise RequestError(f"k must be an integer, not {k!r}")
        if not 1 <= k <= min(MAX_K, self.n_items):
            raise RequestError(f"k={k} must be between 1 and {min(MAX_K, self.n_items)}")
        return int(k)

    def _results(
        self, scores: torch.Tensor, idx: torch.Tensor, k: int, filter: Callable[[ItemInfo], bool] | None
    ) -> list[Recommendation]:
        out = []
        for s, i in zip(scores.tolist(), idx.tolist()):
            if i <= 0 or s == float("-inf") or i in self._removed:
                continue
            info = self._info(i)
            if filter is not None and not filter(info):
                continue
            out.append(
                Recommendation(
                    info.item_id, float(s), info.text, info.is_new, info.has_image, info.title, info.year, info.genres
                )
            )
            if len(out) == k:
                break
        return out

    def _search(
        self, users: torch.Tensor, seen: list[list[int]], k: int, exclude_seen: bool, allowed, filter
    ) -> list[list[Recommendation]]:
        exclude = [torch.as_tensor(s, dtype=torch.long) for s in seen] if exclude_seen else None
        fetch = k if filter is None else min(len(self._ids) - 1, 4 * k)
        while True:
            scores, idx = self.index.search(users, fetch, exclude=exclude, allowed=allowed)
            scores = self._rescale(users, scores, idx)
            res = [self._results(scores[b], idx[b], k, filter) for b in range(len(users))]
            if filter is None or all(len(r) == k for r in res) or fetch >= len(self._ids) - 1:
                return res
            fetch = min(len(self._ids) - 1, fetch * 4)

    def _rescale(self, users, scores, idx) -> torch.Tensor:
        """Dot-product indexes return ``users @ items``; report the model's own score (e.g. / temperature)."""
        return scores if self._scale == 1.0 else scores * self._scale

    def recommend(
        self,
        history: list,
        k: int = 10,
        exclude_seen: bool = True,
        include=None,
        exclude=None,
        filter: Callable[[ItemInfo], bool] | None = None,
    ) -> list[Recommendation]:
        """Top-``k`` items after ``history`` (oldest first; ids or raw content of unseen items).

        ``include``/``exclude``: item ids to restrict to / leave out; ``filter``: a predicate on
        :class:`ItemInfo` applied to the ranked list (over-fetching until ``k`` pass).
        """
        return self.recommend_batch([history], k, exclude_seen, include, exclude, filter)[0]

    def recommend_batch(
        self,
        histories: list[list],
        k: int = 10,
        exclude_seen: bool = True,
        include=None,
        exclude=None,
        filter=None,
        batch_size: int = 256,
    ) -> list[list[Recommendation]]:
        """:meth:`recommend` for many histories at once (one forward pass and one search per batch)."""
        k = self._check_k(k)
        batch_size = check.positive_int(batch_size, "batch_size")
        filter = check.predicate(filter)
        if not isinstance(histories, (list, tuple)):
            raise RequestError(f"histories must be a list of histories, not {type(histories).__name__}")
        allowed = self._allowed(check.id_list(include, "include"), check.id_list(exclude, "exclude"))
        out = []
        for i in range(0, len(histories), batch_size):
            users, seen = self._users(histories[i : i + batch_size])
            out.extend(self._search(users, seen, k, exclude_seen, allowed, filter))
        return out

    def recommend_users(
        self, users, k: int = 10, exclude_seen: bool = True, include=None, exclude=None
    ) -> "pd.DataFrame":
        """Top-``k`` items for users of the run's data, from their stored histories (every event of theirs
        the run holds), as a DataFrame ``user_id, item_id, score, rank``."""
        from modalrec.serve import frames

        histories = frames.known_histories(self, users)
        return frames.frame([str(u) for u in users], self.recommend_batch(histories, k, exclude_seen, include, exclude))

    def recommend_histories(
        self, histories, k: int = 10, exclude_seen: bool = True, include=None, exclude=None
    ) -> "pd.DataFrame":
        """Top-``k`` items after arbitrary histories: a dict ``user -> [item ids or content]`` or a
        DataFrame with ``user_id``, ``item_id`` (and optionally ``timestamp``) columns; as a DataFrame
        ``user_id, item_id, score, rank``."""
        from modalrec.serve import frames

        users, hs = frames.histories_of(histories)
        return frames.frame(users, self.recommend_batch(hs, k, exclude_seen, include, exclude))

    def recommend_file(
        self, in_path: str | Path, out_path: str | Path, k: int = 10, exclude_seen: bool = True, batch_size: int = 256
    ) -> int:
        """JSONL in (``{"user": ..., "history": [...]}`` per line) -> recommendations written atomically in
        the format of ``out_path``'s extension: ``.parquet`` or ``.csv`` (one row per recommendation:
        user_id, item_id, score, rank) or ``.jsonl`` (``{"user": ..., "items": [...], "scores": [...]}``
        per line); any other extension is refused before anything runs. Returns the number of users."""
        from modalrec.serve import frames

        in_path, out_path = Path(in_path), Path(out_path)
        fmt = frames.output_format(out_path)
        if not in_path.is_file():
            raise FileNotFoundError(f"input file not found: {in_path}")
        users, histories = [], []
        for n, rec in read_jsonl_objects(in_path, "an object with a 'history' list", RequestError):
            if "history" not in rec:
                raise RequestError(f"{in_path}, line {n}: expected an object with a 'history' list")
            users.append(rec.get("user", n))
            histories.append(rec["history"])
        results = []
        for i in range(0, len(histories), batch_size):
            try:
                results.extend(self.recommend_batch(histories[i : i + batch_size], k, exclude_seen))
            except RequestError:  # find the offending line for the message
                for j in range(i, min(i + batch_size, len(histories))):
                    try:
                        self._history_rows(histories[j])
                    except RequestError as e:
                        raise RequestError(f"{in_path}, record {j + 1} (user {users[j]!r}): {e}") from None
                raise
        frames.write(frames.frame(users, results), out_path, fmt)
        return len(users)

    # -- similar items -------------------------------------------------------------------------

    def _catalogue_matrix(self) -> torch.Tensor:
        """Item vectors in catalogue order (the index's own copy when it keeps one)."""
        if hasattr(self.index, "items"):
            return self.index.items
        with torch.no_grad():
            table = self.model.item_embeddings(None).float()
        if len(table) != len(self._ids):
            raise RuntimeError("this index keeps no item matrix and the catalogue has vector-only items")
        return table

    def _similarity(self, table: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.model.similarity_vectors(table).float(), dim=-1)

    def similar_items(self, item, k: int = 10, include=None, exclude=None) -> list[Recommendation]:
        """Items closest to ``item`` (an id, or raw content for ID-free models) by the cosine of the
        model's item vectors; the item itself is left out. Scores are cosines."""
        from modalrec.serve.index import ExactIndex

        k = self._check_k(k)
        include, exclude = check.id_list(include, "include"), check.id_list(exclude, "exclude")
        features = None
        if isinstance(item, dict):
            self._require_content_model("compare an item it never saw")
            features = self._features(self._new_items([item])[0])  # without the lock
        with self._lock:
            if self._sim_index is None:
                self._sim_index = ExactIndex(self._similarity(self._catalogue_matrix()))
            sim = self._sim_index
            if features is not None:
                n0 = self.model.n_items
                idx = self.model.add_items(features)
                try:
                    with torch.no_grad():
                        q = self._similarity(self.model.item_embeddings(idx).float())
                finally:
                    self.model.truncate_items(n0)
                skip = []
            else:
                row = self._rows([item])[0]
                q = sim.items[row : row + 1]
                skip = [row]
        allowed = self._allowed(include, exclude)
        scores, idx = sim.search(q, k, exclude=[torch.as_tensor(skip, dtype=torch.long)], allowed=allowed)
        return self._results(scores[0], idx[0], k, None)


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def _new_display(fields: dict, text: str) -> tuple[str, str, str]:
    """(title, year, genres) shown for an added item: its own fields, else its text."""
    return (
        _field_text(fields.get("title")) or text,
        _field_text(fields.get("year")),
        _field_text(fields.get("genres")),
    )


def _check_finite(vec: torch.Tensor, what: str) -> None:
    """A RequestError unless every value is finite (a NaN or inf row would poison every later ranking)."""
    bad = ~torch.isfinite(vec)
    if bool(bad.any()):
        row = int(bad.any(dim=-1).nonzero()[0, 0]) if vec.ndim > 1 else 0
        raise RequestError(f"{what}: row {row} holds NaN or infinite values; nothing was added")
