"""Items added to a served run, kept with the run: a journal in ``RUN/added/`` replayed at start.

The HTTP service adds and removes items while it runs; without this they would vanish on restart.
Each change is one line of ``added/items.jsonl`` (``{"op": "add", "item": {...}}`` with the item's
content, or ``{"op": "remove", "item_id": ...}``), appended and flushed to disk after the change is
made in memory; an image is written first, atomically, to ``added/images/``. At start,
:meth:`AddedItems.replay` applies the journal to the freshly loaded recommender: the content is
encoded again by the same model, so every added item gets back the vector it had.
A journal line that cannot be read (a crash in the middle of a write leaves at most the last one) is
reported and skipped, never guessed at.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

from modalrec.utils import atomic_path

log = logging.getLogger("modalrec.serve")

CONTENT_KEYS = ("item_id", "text", "title", "year", "genres")


class AddedItems:
    """The journal of items added to (and removed from) the run in ``run_dir``."""

    def __init__(self, run_dir: str | Path):
        self.folder = Path(run_dir) / "added"
        self.path = self.folder / "items.jsonl"

    # -- reading ---------------------------------------------------------------------------------

    def entries(self) -> list[dict]:
        """The journal's readable lines, in order (unreadable ones are logged and skipped)."""
        if not self.path.is_file():
            return []
        out = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if entry.get("op") not in ("add", "remove"):
                    raise ValueError(f"unknown op {entry.get('op')!r}")
            except (ValueError, AttributeError) as e:
                log.warning(f"{self.path}, line {n}: skipped, it cannot be read ({e})")
                continue
            out.append(entry)
        return out

    def live_items(self) -> list[dict]:
        """The items added and not removed since, as :meth:`Recommender.add_items` takes them."""
        live: dict[str, dict] = {}
        for e in self.entries():
            if e["op"] == "add":
                live[str(e["item"]["item_id"])] = e["item"]
            else:
                live.pop(str(e["item_id"]), None)
        items = []
        for item in live.values():
            item = dict(item)
            if item.get("image"):
                item["image"] = self.folder / item["image"]
            items.append(item)
        return items

    def replay(self, rec) -> int:
        """Add the journal's live items to ``rec`` (a freshly loaded recommender); how many."""
        items = self.live_items()
        if items:
            rec.add_items(items)
            log.info(f"{len(items)} item(s) added earlier are back, from {self.path}")
        return len(items)

    # -- writing ---------------------------------------------------------------------------------

    def record_add(self, items: list[dict], images: dict[str, bytes]) -> None:
        """Journal items just added (``images``: item id -> the encoded image given with it)."""
        lines = []
        for item in items:
            entry = {k: item[k] for k in CONTENT_KEYS if item.get(k) is not None}
            entry["item_id"] = str(entry["item_id"])
            data = images.get(entry["item_id"])
            if data is not None:
                entry["image"] = self._write_image(entry["item_id"], data)
            lines.append({"op": "add", "item": entry})
        self._append(lines)

    def record_remove(self, item_ids: list[str]) -> None:
        self._append([{"op": "remove", "item_id": str(i)} for i in item_ids])

    def _write_image(self, item_id: str, data: bytes) -> str:
        name = f"images/{uuid.uuid4().hex}.img"  # a new file each time: never one a removed item used
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
        return name

    def _append(self, entries: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for e in entries:
                f.write(json.dumps(e, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
