"""The data a run was trained on, when a command needs it (evaluate, resume, fine-tune): read it, say
which data is needed when it cannot be read, and check it is still the same data."""

from __future__ import annotations

import json

from modalrec.run.fingerprint import check_data
from modalrec.run.folder import RunDir


class RunDataError(ValueError):
    """The data a run needs cannot be read here."""


def describe_data(record: dict, data_cfg) -> str:
    """Which data a run needs, in words a user can act on."""
    origin = record.get("origin", {})
    name = record.get("fingerprint", {}).get("name", "")
    if origin.get("kind") == "given":
        return (
            f"the data set {name!r} that was given in Python (train(cfg, out, dataset=...)); pass the same "
            "prepared data set again"
        )
    files = [
        str(v["path"])
        for v in (record.get("meta", {}).get("source") or {}).values()
        if isinstance(v, dict) and v.get("path")
    ]
    where = f"data.dataset={data_cfg.dataset}" + (
        f", interactions {data_cfg.interactions.path}" if data_cfg.interactions.path else ""
    )
    return f"{name or data_cfg.dataset!r} ({where}" + (f"; files: {', '.join(files)}" if files else "") + ")"


def read_record(rd: RunDir) -> dict:
    return json.loads(rd.dataset.read_text(encoding="utf-8")) if rd.dataset.is_file() else {}


def run_ids(rd: RunDir):
    """The run's item ids (its catalogue), or None for a run that did not keep them."""
    if not rd.catalogue.is_file():
        return None
    from modalrec.run.store import load_catalogue

    return load_catalogue(rd.catalogue).item_ids


def load_data(data_cfg, record: dict, what: str, progress: bool = False):
    """The prepared data behind ``data_cfg``; RunDataError says which data ``what`` needs if it cannot be read."""
    from modalrec.data.prepare import load_or_prepare

    if record.get("origin", {}).get("kind") == "given":
        raise RunDataError(f"{what} needs {describe_data(record, data_cfg)}")
    try:
        return load_or_prepare(data_cfg, progress=progress)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise RunDataError(
            f"{what} needs the data the run was trained on, {describe_data(record, data_cfg)}, and "
            f"it cannot be read here: {e}"
        ) from e


def checked_data(rd: RunDir, data_cfg, what: str, dataset=None, progress: bool = False):
    """The run's data (``dataset`` if given, else read from ``data_cfg``), checked against its record."""
    record = read_record(rd)
    ds = dataset if dataset is not None else load_data(data_cfg, record, what, progress)
    ids = run_ids(rd)
    if ids is not None and record.get("fingerprint"):
        check_data(record["fingerprint"], ids, ds, where=f"the run {rd.path}")
    return ds


def evaluate_run(
    run,
    split: str = "test",
    dataset=None,
    *,
    exclude_history: bool | None = None,
    per_user: bool = False,
    progress: bool = False,
    pop_prior: bool = False,
    beyond: bool = False,
):
    """Exact full-ranking evaluation of a loaded run (:class:`LoadedRun`) on its data (read and checked,
    or ``dataset``); no serving index is built. ``pop_prior``: add the data's popularity prior to the
    model's scores, its weight chosen on validation (:mod:`modalrec.evaluate.prior`); the choice is
    recorded in the result's protocol. ``beyond``: also coverage, popularity, novelty and diversity of the
    top-k lists and metrics per segment (short / long histories, cold / warm targets) in ``res.beyond``."""
    import torch

    from modalrec.evaluate.ranking import evaluate

    cfg = run.cfg
    ds = checked_data(RunDir(run.path), cfg.data, f"evaluating {run.path}", dataset, progress)

    def run_eval(model, seqset, name, **kw):
        return evaluate(
            model,
            seqset,
            max_len=cfg.model.max_len,
            ks=cfg.eval.ks,
            exclude_history=cfg.eval.exclude_history if exclude_history is None else exclude_history,
            batch_size=cfg.eval.batch_size,
            item_chunk=cfg.eval.item_chunk,
            progress=progress,
            split=name,
            **kw,
        )

    model, choice = run.model, None
    if pop_prior:
        from modalrec.evaluate.prior import PopularityPrior, choose_prior

        choice = choose_prior(model, ds, lambda m, s: run_eval(m, s, "valid"), max_len=cfg.model.max_len)
        model = PopularityPrior(model, ds.train_item_counts(), choice.weight)
    res = run_eval(
        model,
        getattr(ds.split, split),
        split,
        per_user=per_user or beyond,
        cold_items=torch.as_tensor(~ds.seen_in_train()),
    )
    if beyond:
        res.beyond = _beyond(model, ds, getattr(ds.split, split), res, cfg, exclude_history)
        if not per_user:
            res.per_user = None
    if choice is not None:
        res.protocol["popularity_prior"] = {
            "beta": choice.beta,
            "weight": choice.weight,
            "unit": choice.unit,
            "valid_ndcg@10_by_beta": choice.valid_ndcg,
        }
    return res, ds


def _beyond(model, ds, seqset, res, cfg, exclude_history) -> dict:
    """Beyond-accuracy metrics of the top-k lists (k = 10, or the smallest cut-off) and segment metrics."""
    import numpy as np
    import torch

    from modalrec.evaluate.beyond import list_metrics, mean_cosine, segment_metrics, top_k_lists

    k = 10 if 10 in cfg.eval.ks else min(cfg.eval.ks)
    excl = cfg.eval.exclude_history if exclude_history is None else exclude_history
    lists = top_k_lists(
        model,
        seqset,
        k,
        max_len=cfg.model.max_len,
        exclude_history=excl,
        batch_size=cfg.eval.batch_size,
        item_chunk=cfg.eval.item_chunk,
    )
    with torch.no_grad():
        vectors = model.similarity_vectors(model.item_embeddings(None)).float()
    pu = res.per_user  # example order, as the seqset
    lengths = np.asarray(seqset.end) - np.asarray(seqset.start)
    cold = ~ds.seen_in_train()[np.asarray(pu["targets"])]
    return {
        "k": k,
        "lists": list_metrics(lists, ds.train_item_counts(), vectors, k),
        "catalogue_mean_cosine": mean_cosine(vectors[1:]),
        "segments": segment_metrics(np.asarray(pu["ranks"]), lengths, cold, k),
    }
