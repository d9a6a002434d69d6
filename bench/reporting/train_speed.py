"""The training-speed section: windows/s per model side by side with a baseline commit, and where a
PMMRec step's time goes (bench/train_speed.py)."""

from __future__ import annotations

from .fmt import code, is_num, md_table, num, times, verdict
from .page import Page

TARGET = 2.0  # issue 23: PMMRec pre-training windows/s at least 2x the previous code's


def _speed_table(page: Page, d: dict, ratios: list) -> None:
    rows = []
    for r in d.get("rows") or []:
        base = r.get("baseline_windows_per_s")
        met = verdict(r["speedup"] >= TARGET) if r["model"] == "pmmrec" and is_num(r.get("speedup")) else ""
        rows.append(
            [r["model"], "defaults", num(r.get("current_windows_per_s")), num(base), times(r.get("speedup")), met]
        )
        if is_num(r.get("speedup")):
            ratios.append(
                (f"{r['model']} training windows/s: this code over {d['baseline_commit'][:7]}", r["speedup"], False)
            )
        for name, v in (r.get("variants") or {}).items():
            rows.append(
                [
                    r["model"],
                    " ".join(f"`{o}`" for o in v["overrides"]) or name,
                    num(v["windows_per_s"]),
                    num(base),
                    times(v.get("speedup")),
                    "not the default",
                ]
            )
    again = [r for r in d.get("rows") or [] if r.get("measured_separately")]
    base_commit = (d.get("baseline_commit") or "")[:7]
    page.para(
        f"Training windows/s on {d.get('dataset')} at each model's defaults (PMMRec and MISSRec with posters), "
        f"median of {d.get('repeats')} alternating runs of {d.get('steps')} steps after {d.get('warmup')} "
        f"warm-up steps, data loading included; baseline: the code of commit `{base_commit}` run side by "
        f"side in the same alternation. Target: PMMRec at least {TARGET:g}x the baseline."
    )
    page.add(
        *md_table(
            ["model", "setting", "windows/s", f"baseline {base_commit}", "speed-up", "target"], rows, right=(2, 3, 4)
        ),
        "",
    )
    for r in again:
        m = r["measured_separately"]
        page.para(
            f"{r['model']}: measured again on its own ({m['date']}, `{m['command']}`): {m['why']}; the first "
            f"measurement gave {times(m['first_measurement'].get('speedup'))}."
        )


def _breakdown(page: Page, d: dict) -> None:
    for model, b in (d.get("breakdown") or {}).items():
        rows = [[k, f"{v:.3f}"] for k, v in b["phases_s"].items()]
        rows += [[f"forward of `{k}`", f"{v:.3f}"] for k, v in b["forward_components_s"].items()]
        rows += [
            [f"loss {k}: forward + backward (step time with it minus without)", f"{v:.3f}"]
            for k, v in (b.get("loss_cost_s") or {}).items()
        ]
        page.para(
            f"Where a {model} step's time goes (seconds per step of {b['batch_size']} windows, "
            f"mean of {b['steps']} steps; module forward times from hooks, a module called twice counts "
            "twice):"
        )
        page.add(*md_table(["part", "s / step"], rows, right=(1,)), "")
        if b.get("loss_cost_s"):
            page.para(
                "Each loss's cost is the difference of two single windows/s measurements (with and without "
                "it), so it carries their run-to-run noise (about 5% of a step): a small or negative value "
                "means no measurable cost."
            )


def _quality(page: Page, d: dict) -> None:
    q = d.get("quality") or []
    if not q:
        return
    rows = [
        [
            r["model"],
            " ".join(f"`{o}`" for o in r["train_overrides"]) or "defaults",
            r["epochs_run"],
            f"{r['train_time_s']:.0f} s",
            f"{r['valid_ndcg@10']:.4f}",
            f"{r['test_ndcg@10']:.4f}",
        ]
        for r in q
    ]
    page.para(
        f"Quality of the settings: whole pre-training runs on {q[0]['dataset']} with this code (training time "
        "includes each epoch's validation and whatever else ran on the machine then):"
    )
    page.add(
        *md_table(
            ["model", "settings", "epochs", "training time", "valid NDCG@10", "test NDCG@10"], rows, right=(2, 3, 4, 5)
        ),
        "",
    )
    page.add(*code([d["quality_command"]]), "")


def section_train_speed(page: Page, ratios: list) -> None:
    d = page.section("Training speed", "train_speed.json", "train_speed.py")
    if d is None:
        return
    _speed_table(page, d, ratios)
    if d.get("load_average"):
        page.para("Load average at the end: " + ", ".join(f"{x:.2f}" for x in d["load_average"]) + ".")
    _quality(page, d)
    _breakdown(page, d)
    page.add(*code([d.get("command") or "python bench/train_speed.py --baseline COMMIT --breakdown"]), "")
