"""What the transfer benchmarks (pmmrec_transfer.py, missrec_unisrec_transfer.py) share: their runs by
setting name, the table of test metrics built from them, and the cold-item evaluation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .runs import finished, run_cli

# --quick (bench/run_all.py --quick must stay under 20 minutes on 2 CPU cores)
QUICK_FT_EPOCHS = 3
QUICK_SASREC = ["train.epochs=10"]
QUICK_PRETRAIN = ["train.epochs=1", "data.max_seq_len=20"]  # one epoch, each user's 20 most recent events
PROTOCOL = "leave-one-out, exact full ranking, history excluded, pessimistic ties; select on valid NDCG@10"


def summary(rows: list[dict], key: str) -> dict:
    vals = np.array([r["test"]["metrics"][key] for r in rows], dtype=float)
    return {
        "mean": float(vals.mean()),
        "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
        "values": vals.round(4).tolist(),
    }


class TransferRuns:
    """The runs of one transfer benchmark, by setting name (a setting has one run per seed)."""

    def __init__(self, logs: Path, report_only: bool):
        self.logs, self.report_only = logs, report_only
        self.runs: dict[str, list[dict]] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def go(self, name: str, cli: list[str], out: Path) -> dict | None:
        """Run (or reuse) `modalrec CLI` into ``out`` as a run of setting ``name``; None when
        --report-only finds no finished run of it."""
        if self.report_only and not finished(cli, out):
            print(f"(no finished run of this command, left out: {name} -> {out})")
            return None
        print(f"[{time.strftime('%H:%M:%S')}] {name}: modalrec {' '.join(cli)}", flush=True)
        r = run_cli(cli, out, self.logs / f"{out.name}.log")
        m = r["test"]["metrics"]
        print(
            f"    test ndcg@10 {m['ndcg@10']:.4f} hr@10 {m['hr@10']:.4f}  best epoch {r['best_epoch']}  "
            f"wall {r['wall_s']:.0f}s  peak {r['peak_rss_mib']:.0f} MiB{'  (reused)' if r['reused'] else ''}",
            flush=True,
        )
        self.runs.setdefault(name, []).append(r)
        return r

    def table(self, leave_out=lambda name: False) -> dict[str, dict]:
        """{setting: test NDCG@10 / HR@10 summaries, best epochs, wall times, peak RSS, commands}."""
        return {
            name: {
                "ndcg@10": summary(rs, "ndcg@10"),
                "hr@10": summary(rs, "hr@10"),
                "runs": len(rs),
                "best_epochs": [r["best_epoch"] for r in rs],
                "wall_s": [r["wall_s"] for r in rs],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                "commands": [r["command"] for r in rs],
                "curves": [r["curve"] for r in rs],
            }
            for name, rs in self.runs.items()
            if not leave_out(name)
        }


def print_table(table: dict[str, dict], wall: bool = False) -> None:
    print("\n| setting (ml-100k test, history excluded) | runs | NDCG@10 | HR@10 |" + (" wall s (mean) |" * wall))
    print("|---|---|---|---|" + "---|" * wall)
    for name, t in table.items():
        print(
            f"| {name} | {t['runs']} | {t['ndcg@10']['mean']:.4f} ± {t['ndcg@10']['std']:.4f} | "
            f"{t['hr@10']['mean']:.4f} ± {t['hr@10']['std']:.4f} |"
            + (f" {sum(t['wall_s']) / len(t['wall_s']):.0f} |" if wall else "")
        )


def source_titles(dataset: str = "ml-1m") -> set[str]:
    """The movies of the pre-training data set, by title and year."""
    from modalrec.config import build_config
    from modalrec.data.prepare import load_or_prepare

    src = load_or_prepare(build_config({}, [f"data.dataset={dataset}"]).data, progress=False)
    return set(src.catalogue.fields["title_year"][1:].tolist())


def cold_eval(run_dir: Path, source_titles: set[str]) -> dict:
    """Test metrics restricted to targets whose movie is not in the source catalogue."""
    import torch

    from modalrec.evaluate.ranking import evaluate
    from modalrec.run import load_run

    run = load_run(run_dir)  # the run's own copy of its data: catalogue and split
    ds = run.dataset
    titles = ds.catalogue.fields["title_year"]
    cold = torch.tensor([i > 0 and titles[i] not in source_titles for i in range(len(titles))])
    res = evaluate(
        run.model, ds.split.test, max_len=run.cfg.model.max_len, ks=[10, 20, 50], cold_items=cold, progress=False
    )
    test = ds.split.test
    # a uniformly random ranking of the candidates (catalogue minus history) puts the target in
    # the top 10 with probability 10 / #candidates
    n = ds.n_items
    hist_sizes = np.array([len(set(test.sequence(s).tolist())) for s in range(len(test))])
    tgt_cold = cold.numpy()[test.targets]
    rand = float(np.mean(np.minimum(1.0, 10.0 / (n - hist_sizes[tgt_cold]))))
    return {
        "cold_items_in_catalogue": int(cold.sum()),
        "cold_test_targets": int(res.cold_count),
        "cold_hr@10": res.cold_metrics.get("hr@10"),
        "cold_ndcg@10": res.cold_metrics.get("ndcg@10"),
        "all_hr@10": res.metrics["hr@10"],
        "random_cold_hr@10": rand,
    }
