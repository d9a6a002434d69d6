"""The model card: a README.md in every finished run saying what the model is, what it was trained on,
how well it did under which protocol, and how it was made."""

from __future__ import annotations

import datetime as _dt

from modalrec.utils import atomic_write_text


def _metrics_table(metrics: dict) -> list[str]:
    ks = sorted({int(k.split("@")[1]) for k in metrics if "@" in k})
    names = [n for n in ("hr", "ndcg", "mrr") if any(k.startswith(n + "@") for k in metrics)]
    rows = ["| metric | " + " | ".join(f"@{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    rows += [f"| {n} | " + " | ".join(f"{metrics.get(f'{n}@{k}', float('nan')):.4f}" for k in ks) + " |" for n in names]
    return rows


def card_text(cfg, model, dataset, results: dict, command: str, date: str | None = None) -> str:
    date = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    s = dataset.summary()
    test = results.get("test", {})
    proto = test.get("protocol", {})
    lines = [
        f"# {cfg.model.name} on {dataset.name}",
        "",
        "A modalrec run folder (self-contained: serve it with `modalrec serve {this folder}` or "
        "`modalrec.serve.recommender.Recommender.load`).",
        "",
        "## Model",
        f"- model: `{cfg.model.name}` ({'ID-free: encodes items from content' if model.id_free else 'ID-based'})",
        f"- parameters: {model.num_parameters():,} ({model.num_parameters(trainable_only=True):,} trainable)",
        f"- best epoch {results.get('best_epoch')} of {results.get('epochs_run')} run"
        + (" (stopped early)" if results.get("stopped_early") else ""),
    ]
    if cfg.transfer.init_from:
        lines.append(
            f"- initialised from `{cfg.transfer.init_from}` (components: "
            f"{', '.join(cfg.transfer.components) or 'all'}; frozen: {', '.join(cfg.transfer.freeze) or 'none'})"
        )
    lines += [
        "",
        "## Data",
        f"- `{dataset.name}`: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions",
        f"- split: {s['split']} ({s['train_sequences']:,} training sequences, {s['valid_examples']:,} validation "
        f"and {s['test_examples']:,} test examples)",
        "",
    ]
    if test.get("metrics"):
        lines += [
            f"## Test metrics ({test.get('count', '?')} users)",
            f"Protocol: exact full ranking over {proto.get('n_items', s['items'])} items, history "
            f"{'excluded' if proto.get('exclude_history', True) else 'included'}, pessimistic ties; model "
            "selection on validation NDCG@10.",
            "",
            *_metrics_table(test["metrics"]),
            "",
        ]
    lines += ["## How it was made", f"- date: {date}"]
    if command:
        lines.append(f"- command: `{command}`")
    lines.append(
        f"- training time: {results.get('train_time_s', 0):.1f} s on {results.get('world_size', 1)} process(es)"
    )
    return "\n".join(lines) + "\n"


def write_card(rd, cfg, model, dataset, results: dict, command: str) -> None:
    atomic_write_text(rd.card, card_text(cfg, model, dataset, results, command))
