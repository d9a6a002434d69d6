"""The pandas-first entry point: fit a model on DataFrames and get a recommender back.

>>> import pandas as pd
>>> import modalrec
>>> events = pd.DataFrame({"user": ["u1"] * 6 + ["u2"] * 6 + ["u3"] * 6,
...                        "item": ["a", "b", "c", "d", "e", "f"] * 3,
...                        "ts": list(range(18))})
>>> rec = modalrec.fit("pop", events, user_col="user", item_col="item", time_col="ts",
...                    out=str(tmp / "pop-run"), overrides=["data.min_user_inter=0", "data.min_item_inter=0"])
>>> top = rec.recommend_users(["u1"], k=2)
>>> list(top.columns)
['user_id', 'item_id', 'score', 'rank']
>>> modalrec.Recommender.load(tmp / "pop-run").recommend_users(["u1"], k=2).equals(top)
True

The run folder ``out`` is an ordinary run (docs/architecture.md): ``modalrec recommend``, ``serve`` and
``Recommender.load`` read it like one trained from the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import pandas as pd

    from modalrec.serve.recommender import Recommender


def fit(
    model: str,
    interactions: "pd.DataFrame",
    items: "pd.DataFrame | None" = None,
    *,
    out: str | Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    text_fields: Sequence[str] = (),
    text_template: str = "",
    image_col: str = "",
    keep_fields: Sequence[str] = (),
    config: str | Path | dict | None = None,
    overrides: Sequence[str] = (),
    name: str = "frames",
    overwrite: bool = False,
    progress: bool = False,
) -> "Recommender":
    """Train ``model`` on an interactions DataFrame (and an optional items DataFrame) into the run folder
    ``out`` and return it loaded as a :class:`~modalrec.serve.recommender.Recommender`.

    Column names are arguments, as in a data-spec YAML: ``user_col``, ``item_col``, ``time_col`` ("" =
    row order is time order) name the interaction columns; the items' id column has ``item_col``'s name,
    their text comes from ``text_fields`` (joined by ". ") or ``text_template`` (``"{title} ({year})"``),
    their images from ``image_col`` (file paths). ``config`` (a YAML file or a dict with model/data/train/
    eval sections) and ``overrides`` (``"train.epochs=5"``) set everything else. The data is checked and
    prepared exactly as from files: filters, split, validation. Content models need ``items`` with text.
    """
    from modalrec.config import InteractionsSpec, ItemsSpec, build_config, load_yaml
    from modalrec.data.prepare import prepare_frames
    from modalrec.data.tables import interactions_from_frame, items_from_frame
    from modalrec.run.training import train
    from modalrec.serve.recommender import Recommender

    base = load_yaml(config) if isinstance(config, (str, Path)) else dict(config or {})
    cfg = build_config(base, list(overrides), model=model)
    spec = InteractionsSpec(path="", user_col=user_col, item_col=item_col, time_col=time_col)
    inter = interactions_from_frame(interactions, spec, "the interactions DataFrame")
    item_frame = None
    if items is not None:
        ispec = ItemsSpec(
            path="",
            item_col=item_col,
            text_fields=list(text_fields),
            text_template=text_template,
            image_col=image_col,
            keep_fields=list(keep_fields),
        )
        item_frame = items_from_frame(items, ispec, "the items DataFrame")
    dataset = prepare_frames(
        inter,
        item_frame,
        cfg.data,
        name=name,
        progress=progress,
        paths=("the interactions DataFrame", "the items DataFrame"),
    )
    train(cfg, out, dataset=dataset, overwrite=overwrite, progress=progress, command=f"modalrec.fit({model!r}, ...)")
    return Recommender.load(out)
