"""Regenerate docs/results.md, its plots and the README's headline from the JSON under bench/results/.

Every benchmark under bench/ writes JSON into bench/results/; this script reads every file there
and writes, from nothing else:

* docs/results.md: protocol and machine, the headline table (ml-100k test NDCG@10 / HR@10 per model
  and setting), quality details, cold items, speed, serving; per benchmark its date, its command(s)
  and its targets (met / not met, computed here) where the JSON records them. A benchmark without
  its JSON says "not run yet" with the command that produces it;
* docs/img/*.png (matplotlib, optional): test NDCG@10 per setting, cold-item HR@10, speed ratios,
  learning curves (read from the run folders' metrics.jsonl when those folders exist here);
* README.md: the text between ``<!-- results:start -->`` and ``<!-- results:end -->`` (headline
  table, one plot, a link to docs/results.md); without both markers README.md is left untouched.

Every number on the page comes from the JSON (or the run folders named in it): nothing is typed
here but formatting. Files are written atomically.

    python bench/report.py
    python bench/report.py --results bench/results/quick --out docs/results-quick.md --no-readme --quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
try:
    from modalrec.report import plots
    from modalrec.utils import atomic_path
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))
    from modalrec.report import plots
    from modalrec.utils import atomic_path

START, END = "<!-- results:start -->", "<!-- results:end -->"

PMM = "pmmrec_transfer.json"
MISS = "missrec_unisrec_transfer.json"
SVR = "sasrec_vs_recbole.json"
SVR_OURS = "sasrec_ml100k_ours.json"
RUN_ALL = "bench_run.json"
SVR_ML1M = "sasrec_ml1m.json"
RECBOLE_RE = re.compile(r"^recbole_.*\.json$")

MODEL_LABELS = {"pop": "Pop", "sasrec": "SASRec (item IDs)", "pmmrec-both": "PMMRec, text + image",
                "pmmrec-text": "PMMRec, text only", "pmmrec-image": "PMMRec, image only", "missrec": "MISSRec",
                "unisrec": "UniSRec"}


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file in ``path``'s folder, then rename it over ``path`` (permissions kept)."""
    path = Path(path)
    mode = plots.file_mode(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, mode)


# ----------------------------------------------------------------------------------------------
# formatting


def f4(x) -> str:
    return "n/a" if not _num(x) else f"{x:.4f}"


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pm(stat: dict | None, runs: int | None = None) -> str:
    """'mean ± std' of a {"mean","std"} summary (one run: the value alone)."""
    if not stat or not _num(stat.get("mean")):
        return "n/a"
    if runs is not None and runs <= 1:
        return f"{stat['mean']:.4f}"
    return f"{stat['mean']:.4f} ± {stat.get('std', 0.0):.4f}"


def mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def secs(x) -> str:
    """A duration for reading: ms below a second, minutes beside long ones."""
    if not _num(x):
        return "n/a"
    if x == 0:
        return "0 s"
    if x < 1:
        return f"{x * 1000:.0f} ms" if x >= 0.01 else f"{x * 1000:.2f} ms"
    if x < 10:
        return f"{x:.2f} s"
    if x < 120:
        return f"{x:.1f} s"
    return f"{x:.0f} s ({x / 60:.1f} min)"


def num(x, nd: int = 1) -> str:
    if not _num(x):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{nd}f}"


def times(x) -> str:
    """A ratio as '3.81x'."""
    if not _num(x):
        return "n/a"
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def md_table(headers: list[str], rows: list[list[Any]], right: tuple[int, ...] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |")
    return out


def code(cmds: list[str]) -> list[str]:
    return ["```bash", *cmds, "```"]


def details(summary: str, lines: list[str]) -> list[str]:
    return ["<details><summary>" + summary + "</summary>", "", *lines, "", "</details>"]


def short(cmd: str) -> str:
    """Paths of this checkout shown relative to the repository root."""
    return cmd.replace(str(ROOT) + os.sep, "")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def slug(title: str) -> str:
    s = re.sub(r"[^\w\- ]", "", title.lower()).strip()
    return re.sub(r" ", "-", s)


def parse_command(cmd: str) -> dict:
    """--dataset, --out and the key=value overrides of a `modalrec ...` command line."""
    try:
        toks = shlex.split(cmd)
    except ValueError:
        toks = cmd.split()
    out: dict[str, Any] = {"options": [], "dataset": None, "out": None, "seed": None, "from": None}
    for i, t in enumerate(toks):
        if t in ("--dataset", "--out", "--from") and i + 1 < len(toks):
            out[t[2:]] = toks[i + 1]
        elif "=" in t and not t.startswith("-"):
            if t.startswith("train.seed="):
                out["seed"] = t.split("=", 1)[1]
            else:
                out["options"].append(t)
    return out


def run_folder(path: str | None) -> Path | None:
    """A run folder named in a command, found in this checkout (absolute paths of another checkout
    are re-anchored at its 'runs' component); None if absent."""
    if not path:
        return None
    p = Path(path)
    cands = [p if p.is_absolute() else ROOT / p]
    if "runs" in p.parts:
        cands.append(ROOT.joinpath(*p.parts[p.parts.index("runs"):]))
    return next((c for c in cands if c.is_dir()), None)


def machine_of(d: dict) -> dict:
    """The machine description of a result file, whatever its key."""
    m: dict = {}
    for k in ("versions", "environment", "env", "machine"):
        if isinstance(d.get(k), dict):
            m.update(d[k])
    return m


def date_of(d: dict) -> str | None:
    for k in ("date", "measured_at", "started"):
        if isinstance(d.get(k), str):
            return d[k]
    m = machine_of(d)
    return m.get("date") if isinstance(m.get("date"), str) else None


def load_of(d: dict) -> str | None:
    m = machine_of(d)
    for k in ("load_average_at_start", "loadavg_start"):
        if isinstance(m.get(k), list) and m[k]:
            return "load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.2f}" for x in m[k])
    if _num(m.get("loadavg_1min_before")):
        s = f"1-min load average before: {m['loadavg_1min_before']:.2f}"
        if _num(m.get("loadavg_1min_after")):
            s += f", after: {m['loadavg_1min_after']:.2f}"
        return s
    return None


# ----------------------------------------------------------------------------------------------
# the page


class Page:
    def __init__(self, results: dict[str, Any], errors: dict[str, str], folder: Path, out: Path, img_dir: Path,
                 draw: bool):
        self.results, self.errors, self.folder = results, errors, folder
        self.out, self.img_dir, self.draw = out, img_dir, draw
        self.lines: list[str] = []
        self.used: set[str] = set()
        self.images: dict[str, Path] = {}
        self.matplotlib_missing = False

    def child(self) -> "Page":
        """A page sharing this one's data, used files and plots, with lines of its own."""
        c = Page(self.results, self.errors, self.folder, self.out, self.img_dir, self.draw)
        c.used, c.images = self.used, self.images
        return c

    # data
    def get(self, name: str) -> Any:
        if name in self.results:
            self.used.add(name)
            return self.results[name]
        return None

    def has(self, name: str) -> bool:
        return name in self.results

    # text
    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def para(self, *lines: str) -> None:
        self.lines.extend([*lines, ""])

    def rel(self, path: Path, base: Path | None = None) -> str:
        return Path(os.path.relpath(path, (base or self.out.parent))).as_posix()

    def script(self, name: str) -> str:
        return f"python bench/{name}"

    def not_run(self, script: str, extra: str = "") -> None:
        self.para(f"**Not run yet:** `{self.script(script)}`{extra}")

    def header(self, d: dict, fname: str) -> None:
        """Source file, date, machine load, labels for quick / partial runs."""
        for lab in labels(d):
            self.para(lab)
        bits = [f"Source: `{self.rel(self.folder / fname, ROOT)}`",
                f"date: {date_of(d) or 'not recorded in the JSON'}"]
        ld = load_of(d)
        if ld:
            bits.append(ld)
        self.para("; ".join(bits) + ".")

    # plots
    def plot(self, name: str, draw: Callable[[Path], Any]) -> Path | None:
        if not self.draw:
            return None
        path = self.img_dir / f"{name}.png"
        try:
            if draw(path) is None and not path.is_file():
                return None
        except plots.MatplotlibMissing:
            self.matplotlib_missing = True
            return None
        self.images[name] = path
        return path

    def image(self, path: Path | None, alt: str) -> None:
        if path is not None:
            self.para(f"![{alt}]({self.rel(path)})")


def labels(d: dict) -> list[str]:
    out = []
    if d.get("quick"):
        seeds = d.get("seeds")
        bits = []
        if isinstance(seeds, list):
            bits.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}")
        if d.get("ft_epochs") not in (None, ""):
            bits.append(f"fine-tune epochs {d['ft_epochs']}")
        out.append(f"**Quick run ({', '.join(bits) or 'reduced settings'}): not the reference numbers.**")
    if d.get("report_only"):
        out.append("**Partial: only the runs finished so far (see the runs column).**")
    return out


# ----------------------------------------------------------------------------------------------
# transfer tables (pmmrec_transfer.json, missrec_unisrec_transfer.json)


def split_name(name: str) -> tuple[str, str]:
    model, _, setting = name.partition(" ")
    return model, setting


def setting_label(setting: str, dataset: str | None) -> str:
    s = setting.replace("pretrained+finetuned", "pre-trained + fine-tuned")
    s = s.replace("pre-trained+fine-tuned", "pre-trained + fine-tuned")
    s = re.sub(r"\bscratch\b", "from scratch", s)
    return s or (f"trained on {dataset}" if dataset else "trained on the target")


def transfer_rows(d: dict, source: str) -> list[dict]:
    rows = []
    for name, r in (d.get("table") or {}).items():
        cmds = r.get("commands") or []
        pc = parse_command(cmds[0]) if cmds else {"options": [], "dataset": None, "out": None}
        model, setting = split_name(name)
        label = (f"{MODEL_LABELS[model]}, {setting_label(setting, pc['dataset'])}" if model in MODEL_LABELS
                 else name)  # e.g. "ml-latest-small zero-shot": shown as named
        rows.append({"name": name, "model": model, "setting": setting, "source": source, "r": r,
                     "dataset": pc["dataset"], "options": pc["options"], "commands": cmds, "label": label,
                     "runs": r.get("runs", len(cmds))})
    return rows


def main_dataset(rows: list[dict]) -> str | None:
    counts: dict[str, int] = {}
    for r in rows:
        if r["dataset"]:
            counts[r["dataset"]] = counts.get(r["dataset"], 0) + 1
    return max(counts, key=counts.get) if counts else None


def is_variant(row: dict) -> bool:
    """An ablation row (e.g. "pmmrec-both ablation, pre-trained without RCL (1 epoch), fine-tuned"): the
    benches name those with a ", " in the setting; they stay out of the headline, the zero-shot line
    and the learning curves."""
    return "," in row["setting"]


def is_bench_pretrain(name: str) -> bool:
    """A pre-train the transfer bench ran itself ("pretrain ml-1m[, <variant>]"), a row of its table."""
    return name.startswith("pretrain ")


def headline(page: Page) -> tuple[list[dict], str | None]:
    """Rows of the headline: every setting on the target data set but single-modality variants
    (model.modalities=...) and ablations (', ' in the name); baselines shown once."""
    rows: list[dict] = []
    seen: set[str] = set()
    target = None
    for fname in (PMM, MISS):
        d = page.get(fname)
        if not isinstance(d, dict):
            continue
        rs = transfer_rows(d, fname)
        ds = main_dataset(rs)
        target = target or ds
        for r in rs:
            single = any(o.startswith("model.modalities=") for o in r["options"])
            if r["dataset"] != ds or single or is_variant(r):
                continue
            if r["commands"] and set(r["commands"]) <= seen:
                continue
            seen.update(r["commands"])
            r["quick"], r["partial"] = bool(d.get("quick")), bool(d.get("report_only"))
            rows.append(r)
    return rows, target


def headline_table(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        flag = " (quick)" if r.get("quick") else ""
        out.append([MODEL_LABELS.get(r["model"], r["model"]) + flag, setting_label(r["setting"], r["dataset"]),
                    r["runs"], pm(r["r"].get("ndcg@10"), r["runs"]), pm(r["r"].get("hr@10"), r["runs"])])
    return md_table(["model", "setting", "runs", "test NDCG@10", "test HR@10"], out, right=(2, 3, 4))


def plot_headline(page: Page, rows: list[dict], target: str | None) -> Path | None:
    rows = [r for r in rows if _num((r["r"].get("ndcg@10") or {}).get("mean"))]
    if not rows:
        return None
    return page.plot("ndcg_test", lambda p: plots.hbar(
        p, [r["label"] for r in rows], [r["r"]["ndcg@10"]["mean"] for r in rows],
        errors=[r["r"]["ndcg@10"].get("std", 0.0) if r["runs"] > 1 else 0.0 for r in rows],
        groups=[r["model"] for r in rows],
        annotations=[pm(r["r"]["ndcg@10"], r["runs"]) + f"  (n={r['runs']})" for r in rows],
        title=f"{target or ''} test NDCG@10 (mean ± std over runs)",
        xlabel="test NDCG@10"))


def detail_table(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        x = r["r"]
        walls = [w for w in x.get("wall_s") or [] if _num(w)]
        vals = (x.get("ndcg@10") or {}).get("values") or []
        out.append([r["label"], " ".join(f"`{o}`" for o in r["options"]) or "", r["runs"],
                    pm(x.get("ndcg@10"), r["runs"]), pm(x.get("hr@10"), r["runs"]),
                    ", ".join(f"{v:.4f}" for v in vals), ", ".join(str(e) for e in x.get("best_epochs") or []),
                    num(statistics.fmean(walls), 0) if walls else "n/a", num(x.get("peak_rss_mib"), 0)])
    return md_table(["setting", "options", "runs", "NDCG@10", "HR@10", "NDCG@10 per run", "best epoch per run",
                     "wall s (mean)", "peak RSS MiB"], out, right=(2, 3, 4, 7, 8))


def per_seed(row: dict) -> dict:
    """{seed: test NDCG@10} of a table row (values are in the order of its commands)."""
    vals = (row["r"].get("ndcg@10") or {}).get("values") or []
    seeds = [parse_command(c)["seed"] for c in row["commands"]]
    return {s: v for s, v in zip(seeds, vals) if s is not None}


def ablation_reading(rows: list[dict]) -> list[str]:
    """Each pre-training ablation against the all-losses pre-train of the same budget (computed, no number
    typed here). Rows are named "<model> ablation, pre-trained <variant>[ (<budget>)], fine-tuned|zero-shot"."""
    pat = re.compile(r"^ablation, pre-trained (.+?)( \(\d+ epochs?\))?, (fine-tuned|zero-shot)$")
    found: dict[tuple[str, str, str], dict] = {}
    for r in rows:
        m = pat.match(r["setting"])
        if m:
            found[(m.group(2) or "", m.group(3), m.group(1))] = r
    out = []
    for (budget, kind, variant), r in sorted(found.items()):
        ref = found.get((budget, kind, "all losses"))
        if variant == "all losses" or ref is None:
            continue
        a, b = (r["r"].get("ndcg@10") or {}).get("mean"), (ref["r"].get("ndcg@10") or {}).get("mean")
        if not (_num(a) and _num(b)) or b == 0:
            continue
        pa, pb = per_seed(r), per_seed(ref)
        common = [k for k in pa if k in pb]
        paired = (f"; lower in {sum(pa[k] < pb[k] for k in common)} of {len(common)} paired runs"
                  if kind == "fine-tuned" and common else "")
        out.append(f"* Pre-trained {variant}{budget}, {kind}: {pm(r['r'].get('ndcg@10'), r['runs'])} vs all losses "
                   f"{pm(ref['r'].get('ndcg@10'), ref['runs'])} ({(a / b - 1) * 100:+.1f}% test NDCG@10{paired}).")
    by = {r["name"]: r for r in rows}
    for (budget, kind, variant), ref in sorted(found.items()):
        if variant != "all losses" or kind != "fine-tuned" or not budget:
            continue
        prefix = ref["name"].split(" ablation,")[0]
        scratch, main = by.get(f"{prefix} scratch"), by.get(f"{prefix} pretrained+finetuned")
        if scratch is None or main is None:
            continue
        out.append(f"* Budget: the all-losses pre-train ({budget.strip(' ()')}) fine-tunes to {pm(ref['r'].get('ndcg@10'), ref['runs'])}, "
                   f"against {pm(scratch['r'].get('ndcg@10'), scratch['runs'])} from scratch and "
                   f"{pm(main['r'].get('ndcg@10'), main['runs'])} from the main pre-train: these ablations measure "
                   "each loss in a short pre-train, not in the main one.")
    return out


def reading(rows: list[dict]) -> list[str]:
    """Comparisons computed from the table (no number typed here)."""
    by = {r["name"]: r for r in rows}

    def mean(name):
        return (by[name]["r"].get("ndcg@10") or {}).get("mean") if name in by else None

    out = []
    for r in rows:
        if "pretrained+finetuned" not in r["setting"] and "pre-trained+fine-tuned" not in r["setting"]:
            continue
        scratch = r["name"].replace("pretrained+finetuned", "scratch").replace("pre-trained+fine-tuned", "scratch")
        a, b = mean(r["name"]), mean(scratch)
        if not (_num(a) and _num(b)) or b == 0:
            continue
        pa, pb = per_seed(r), per_seed(by[scratch])
        common = [k for k in pa if k in pb]
        n = len(common)
        wins = sum(pa[k] > pb[k] for k in common)
        out.append(f"* {r['label']}: {(a / b - 1) * 100:+.0f}% test NDCG@10 over the same model trained from "
                   f"scratch ({a:.4f} vs {b:.4f}; higher in {wins} of {n} paired run{'s' if n != 1 else ''}).")
    ids = [r for r in rows if r["model"] == "sasrec"]
    content = [r for r in rows if r["model"] not in ("sasrec", "pop") and _num(mean(r["name"]))]
    pop = next((r for r in rows if r["model"] == "pop"), None)
    id_ahead = False
    if ids and content and _num(mean(ids[0]["name"])):
        best = max(content, key=lambda r: mean(r["name"]))
        s, c = mean(ids[0]["name"]), mean(best["name"])
        id_ahead = s > c
        if id_ahead:
            out.append(f"* The ID baseline SASRec ({s:.4f}) is ahead of every content-based setting here; the "
                       f"best of those is {best['label']} ({c:.4f}, {best['runs']} "
                       f"run{'s' if best['runs'] != 1 else ''}).")
        else:
            out.append(f"* {best['label']} ({c:.4f}) reaches or passes the ID baseline SASRec ({s:.4f}).")
    zs = [r for r in rows if "zero-shot" in r["setting"] and _num(mean(r["name"])) and not is_variant(r)]
    zs_below = False
    if pop and _num(mean(pop["name"])) and zs:
        p = mean(pop["name"])
        below = [r for r in zs if mean(r["name"]) <= p]
        zs_below = len(below) == len(zs)
        out.append("* Zero-shot (no training on the target) against Pop (" + f"{p:.4f}" + "): " + "; ".join(
            f"{r['label'].split(', zero-shot')[0]} {mean(r['name']):.4f} "
            f"({'above' if mean(r['name']) > p else 'below'})"
            for r in zs) + ".")
    if id_ahead and zs_below:
        out.append("* A likely reading: these MovieLens histories are dominated by popularity and collaborative "
                   "signal, which titles, genres and rendered posters carry only in part.")
    return out


def learning_curves(page: Page, rows: list[dict], name: str, title: str) -> None:
    """Validation NDCG@10 per epoch of the first run of every setting, from the run folders."""
    series, missing = [], []
    for r in rows:
        if not r["commands"]:
            continue
        pc = parse_command(r["commands"][0])
        folder = run_folder(pc["out"])
        if folder is None:
            missing.append(r["label"])
            continue
        xs, ys = plots.validation_curve(folder / "metrics.jsonl", "ndcg@10")
        if xs:
            series.append((r["label"] + (f" (seed {pc['seed']})" if pc["seed"] is not None else ""), xs, ys))
    if series:
        path = page.plot(name, lambda p: plots.curves(p, series, title=title, xlabel="epoch",
                                                      ylabel="validation NDCG@10", integer_x=True))
        page.image(path, title)
    if missing and not series:
        page.para("_Learning curves: the run folders named by `--out` in the commands are not on this machine "
                  "(run folders are not part of the repository), so this plot is skipped._")
    elif missing:
        page.para("_Learning curves: no run folder here for " + ", ".join(missing) + "._")


def commands_block(rows: list[dict]) -> list[str]:
    cmds = [short(c) for r in rows for c in r["commands"]]
    return details(f"the {len(cmds)} `modalrec` commands of this table (paths relative to the repository root)",
                   code(cmds)) + [""] if cmds else []


def metrics_pair(m: dict | None) -> str:
    if not isinstance(m, dict):
        return "n/a"
    return f"NDCG@10 {f4(m.get('ndcg@10'))}, HR@10 {f4(m.get('hr@10'))}"


def section_pmmrec(page: Page) -> None:
    page.add("### PMMRec transfer", "")
    d = page.get(PMM)
    if not isinstance(d, dict):
        page.not_run("pmmrec_transfer.py")
        return
    page.header(d, PMM)
    if d.get("protocol"):
        page.para(f"Protocol (from the JSON): {d['protocol']}.")
    rows = transfer_rows(d, PMM)
    target = main_dataset(rows)
    pre = d.get("pretrain") or {}
    if pre:
        src = None
        f = run_folder(str(d.get("pretrain_run") or ""))
        if f is not None and (f / "results.json").is_file():
            try:
                src = json.loads((f / "results.json").read_text()).get("dataset")
            except Exception:
                src = None
        bits = [f"pre-trained run `{short(str(d.get('pretrain_run', '')))}`" + (f" on {src}" if src else ""),
                f"best epoch {pre.get('best_epoch')} of {pre.get('epochs_run')}",
                f"training time {secs(pre.get('train_time_s'))}"]
        if _num(pre.get("windows_per_s")):
            bits.append(f"{pre['windows_per_s']:.1f} training windows/s ({num(pre.get('windows_per_epoch'))} windows "
                        "per epoch)")
        bits.append(f"validation on the source data {metrics_pair(pre.get('valid'))}")
        bits.append(f"test on the source data {metrics_pair(pre.get('test_ml1m') or pre.get('test'))}")
        page.para("Pre-training: " + "; ".join(bits) + ".")
    main = [r for r in rows if r["dataset"] == target]
    page.para(f"Test metrics on {target}, mean ± std over runs (one run: the value alone):")
    page.add(*detail_table(main), "")
    others = [r for r in rows if r["dataset"] != target]
    pre_rows = [r for r in others if is_bench_pretrain(r["name"])]
    if pre_rows:
        page.para("The pre-trains the bench ran itself (the ablations', and the main one when no finished "
                  "`--pretrain` run was given), test metrics on their source data set:")
        page.add(*detail_table(pre_rows), "")
    others = [r for r in others if not is_bench_pretrain(r["name"])]
    for ds in sorted({r["dataset"] or "?" for r in others}):
        page.para(f"On {ds} (all test targets; the cold-item subset is under Cold items):")
        page.add(*detail_table([r for r in others if (r["dataset"] or "?") == ds]), "")
    rd = reading(main)
    if rd:
        page.para("Reading (computed from the table):")
        page.add(*rd, "")
    ab = ablation_reading(main)
    if ab:
        page.para("Pre-training loss ablations, each against the all-losses pre-train of the same budget "
                  "(computed from the table):")
        page.add(*ab, "")
    learning_curves(page, [r for r in main if r["r"].get("best_epochs") and max(r["r"]["best_epochs"]) > 0
                           and not is_variant(r)],
                    "curves_pmmrec", f"PMMRec transfer on {target}: validation NDCG@10 per epoch, one run per setting")
    page.add(*commands_block(rows))
    if d.get("command"):
        page.para("Script:")
        page.add(*code([str(d["command"])]), "")
        return
    inv = ["python bench/pmmrec_transfer.py"]
    pr = str(d.get("pretrain_run") or "")
    if pr and Path(pr).name != "pretrain-ml1m":
        inv.append(f"--pretrain {short(pr)}")
    if d.get("seeds"):
        inv.append("--seeds " + " ".join(str(s) for s in d["seeds"]))
    if d.get("ft_epochs") is not None and not d.get("quick"):
        inv.append(f"--ft-epochs {d['ft_epochs']}")
    if d.get("single_modality_seeds") is not None and not d.get("quick"):
        inv.append(f"--single-modality-seeds {d['single_modality_seeds']}")
    if d.get("ablations") is False and not d.get("quick"):
        inv.append("--skip-ablations")
    elif d.get("ablations"):
        inv.append(f"--ablation-epochs {d.get('ablation_epochs')}")
    if d.get("quick"):
        inv.append("--quick")
    if d.get("report_only"):
        inv.append("--report-only")
    page.para("Script (arguments reconstructed from the JSON's fields):")
    page.add(*code([" ".join(inv)]), "")


def section_missrec(page: Page) -> None:
    page.add("### MISSRec and UniSRec transfer", "")
    d = page.get(MISS)
    if not isinstance(d, dict):
        page.not_run("missrec_unisrec_transfer.py")
        return
    page.header(d, MISS)
    if d.get("protocol"):
        page.para(f"Protocol (from the JSON): {d['protocol']}.")
    page.para(f"Seeds: {', '.join(str(s) for s in d.get('seeds') or [])}; fine-tune / scratch epochs: "
              f"{d.get('ft_epochs')}.")
    pre = d.get("pretrain") or {}
    if pre:
        prow = [[MODEL_LABELS.get(m, m), secs(p.get("wall_s")), p.get("epochs_run"), num(p.get("peak_rss_mib"), 0),
                 metrics_pair(p.get("valid_ml1m")), metrics_pair(p.get("test_ml1m"))] for m, p in pre.items()]
        page.para("Pre-training on the source data set:")
        page.add(*md_table(["model", "wall time", "epochs", "peak RSS MiB", "source validation", "source test"],
                           prow, right=(2, 3)), "")
    rows = transfer_rows(d, MISS)
    target = main_dataset(rows)
    main = [r for r in rows if r["dataset"] == target]
    if main:
        page.para(f"Test metrics on {target}, mean ± std over runs (one run: the value alone):")
        page.add(*detail_table(main), "")
        rd = reading(main)
        if rd:
            page.para("Reading (computed from the table):")
            page.add(*rd, "")
        learning_curves(page, [r for r in main if r["r"].get("best_epochs") and max(r["r"]["best_epochs"]) > 0],
                        "curves_missrec_unisrec",
                        f"MISSRec / UniSRec on {target}: validation NDCG@10 per epoch, one run per setting")
    else:
        page.para("No finished run in the table yet.")
    page.add(*commands_block(rows))
    if d.get("command"):
        page.para("Script:")
        page.add(*code([str(d["command"])]), "")
        return
    inv = ["python bench/missrec_unisrec_transfer.py"]
    if d.get("quick"):
        inv.append("--quick")
    elif d.get("seeds"):
        inv.append("--seeds " + " ".join(str(s) for s in d["seeds"]))
    if d.get("report_only"):
        inv.append("--report-only")
    page.para("Script (arguments reconstructed from the JSON's fields):")
    page.add(*code([" ".join(inv)]), "")


def section_cold(page: Page) -> None:
    page.add("### Cold items: movies never seen in pre-training", "")
    entries: list[tuple[str, str, Any]] = []
    srcs = []
    for fname in (PMM, MISS):
        d = page.get(fname)
        if isinstance(d, dict):
            srcs.append(fname)
            for k, v in (d.get("cold_ml_latest_small") or {}).items():
                entries.append((fname, k, v))
    if not srcs:
        page.not_run("pmmrec_transfer.py")
        return
    if not entries:
        page.para("**Not run yet** (the transfer JSON has no cold-item results: run without `--skip-cold` / "
                  "`--quick`): `python bench/pmmrec_transfer.py`")
        return
    for fname in srcs:
        if not (page.get(fname).get("cold_ml_latest_small")):
            page.para(f"`{fname}`: no cold-item results (not run yet).")
    page.para("Zero-shot transfer to ml-latest-small-2016 (every movie kept): metrics over the test targets whose "
              "movie (title and year) never occurs in the pre-training data. Sources: "
              + ", ".join(f"`{s}`" for s in srcs) + ".")
    rows, rnd, bars = [], [], []
    for fname, k, v in entries:
        if isinstance(v, dict):
            rows.append([k, num(v.get("cold_test_targets")), num(v.get("cold_items_in_catalogue")),
                         f4(v.get("cold_hr@10")), f4(v.get("cold_ndcg@10")), f4(v.get("all_hr@10"))])
            if _num(v.get("random_cold_hr@10")):
                rnd.append(v["random_cold_hr@10"])
            if _num(v.get("cold_hr@10")):
                bars.append((k, v["cold_hr@10"]))
        else:
            rows.append([k, "", "", str(v), "", ""])
    distinct_rnd = sorted(set(round(x, 12) for x in rnd))
    if len(distinct_rnd) == 1:
        rows.append(["random ranking (expected)", "", "", f4(rnd[0]), "", ""])
        bars.append(("random ranking (expected)", rnd[0]))
    page.add(*md_table(["model", "cold test targets", "cold items in the catalogue", "HR@10 on cold targets",
                        "NDCG@10 on cold targets", "HR@10 on all targets"], rows, right=(1, 2, 3, 4, 5)), "")
    zs = [(k, v) for _, k, v in entries if isinstance(v, dict) and "zero-shot" in k and _num(v.get("cold_hr@10"))]
    pop = next((v for _, k, v in entries if isinstance(v, dict) and k.startswith("pop") and _num(v.get("cold_hr@10"))),
               None)
    for k, v in zs:
        bits = []
        if pop and pop["cold_hr@10"] > 0:
            bits.append(f"{v['cold_hr@10'] / pop['cold_hr@10']:.1f}x Pop's")
        if len(distinct_rnd) == 1 and rnd[0] > 0:
            bits.append(f"{v['cold_hr@10'] / rnd[0]:.0f}x a random ranking's")
        if bits:
            page.para(f"{k}: HR@10 on never-seen movies {' and '.join(bits)}. A content model can rank a movie from "
                      "its title, genres and poster alone; an ID model has no embedding for it.")
    path = page.plot("cold_hr10", lambda p: plots.hbar(
        p, [b[0] for b in bars], [b[1] for b in bars], groups=[b[0].split(" ")[0] for b in bars],
        annotations=[f"{b[1]:.4f}" for b in bars], title="HR@10 on test targets never seen in pre-training",
        xlabel="HR@10 (cold targets)")) if bars else None
    page.image(path, "cold-item HR@10")


def section_sasrec_ml1m(page: Page) -> None:
    page.add("### SASRec on ml-1m against the published figure", "")
    d = page.get(SVR)
    m = d.get("ml1m") if isinstance(d, dict) else None
    if isinstance(m, dict):
        page.header(d, SVR)
        test, ref = m.get("test") or {}, m.get("published_sasrec_plus_hr@10")
        rows = [["ours, history excluded", f4(test.get("hr@10")), f4(test.get("ndcg@10")), m.get("best_epoch"),
                 m.get("epochs_run"), secs(m.get("train_time_s"))]]
        page.add(*md_table(["", "test HR@10", "test NDCG@10", "best epoch", "epochs run", "training time"], rows), "")
        if _num(ref) and _num(test.get("hr@10")):
            page.para(f"Published full-ranking SASRec+ HR@10: {ref:.4f}; ours {test['hr@10']:.4f} "
                      f"({(test['hr@10'] / ref - 1) * 100:+.0f}%).")
        page.para("Options: " + " ".join(f"`{o}`" for o in d.get("ours_overrides_ml1m") or []))
        page.add(*code(["python bench/sasrec_vs_recbole.py"]), "")
        return
    d = page.get(SVR_ML1M)
    if not isinstance(d, dict):
        page.not_run("sasrec_vs_recbole.py")
        return
    page.header(d, SVR_ML1M)
    if d.get("what"):
        page.para(d["what"][:1].upper() + d["what"][1:] + ".")
    if d.get("status"):
        page.para(f"**Status: {d['status']}.**")
    rows = []
    for key, lab in (("valid_at_best", "validation (best checkpoint)"),
                     ("test_history_excluded", "test, history excluded"),
                     ("test_history_included", "test, history included")):
        if isinstance(d.get(key), dict):
            rows.append([lab, f4(d[key].get("hr@10")), f4(d[key].get("ndcg@10"))])
    page.add(*md_table(["", "HR@10", "NDCG@10"], rows, right=(1, 2)), "")
    ref = d.get("published_sasrec_plus_hr@10")
    ours = (d.get("test_history_excluded") or {}).get("hr@10")
    if _num(ref) and _num(ours):
        page.para(f"Published full-ranking SASRec+ HR@10: {ref:.4f}; ours (history excluded) {ours:.4f} "
                  f"({(ours / ref - 1) * 100:+.0f}%). History excluded is the published protocol: the SASRec+ "
                  "code (antklen/sasrec-bert4rec-recsys23, `SeqRecBase(filter_seen=True)`) drops the items a "
                  "user has seen before ranking.")
    bits = []
    if d.get("best_epoch") is not None:
        bits.append(f"best epoch {d['best_epoch']} of {d.get('epochs_run')}")
    if _num(d.get("elapsed_train_s_at_best")):
        bits.append(f"training time to the best epoch {secs(d['elapsed_train_s_at_best'])}")
    if _num(d.get("mean_epoch_s")):
        bits.append(f"{secs(d['mean_epoch_s'])} per epoch")
    if bits:
        page.para("; ".join(bits).capitalize() + ".")
    if d.get("note_on_load"):
        page.para(f"Note: {d['note_on_load']}.")
    curve = d.get("curve_valid_ndcg@10")
    if isinstance(curve, list) and curve:
        path = page.plot("curve_sasrec_ml1m", lambda p: plots.curves(
            p, [("SASRec, ml-1m", list(range(1, len(curve) + 1)), curve)], title="SASRec on ml-1m: validation NDCG@10 "
            "per epoch", xlabel="epoch", ylabel="validation NDCG@10", integer_x=True))
        page.image(path, "SASRec ml-1m learning curve")
    if d.get("command"):
        page.add(*code([c.strip() for c in short(d["command"]).split("; then ")]), "")


# ----------------------------------------------------------------------------------------------
# speed


def _recbole_row(r: dict) -> dict:
    """A run_recbole_sasrec.py JSON in the shape of sasrec_vs_recbole.py's rows."""
    t = r.get("timing") or {}
    pess = ((r.get("diagnostics") or {}).get("test") or {}).get("pessimistic") or r.get("test") or {}
    return {"seed": (r.get("args") or {}).get("seed"), "time_to_best_s": t.get("time_to_best_s"),
            "fit_seconds": t.get("fit_seconds"), "epochs_run": t.get("epochs_run"),
            "best_epoch": (r.get("best") or {}).get("epoch"),  # RecBole counts epochs from 0
            "stopped_by_time_budget": t.get("stopped_by_time_budget"),
            "mean_epoch_seconds": t.get("mean_epoch_seconds"),
            "parameters": (r.get("model_info") or {}).get("n_parameters"),
            "test": {k.lower(): v for k, v in pess.items()}, "_raw": r}


def _hr(test: dict):
    return test.get("hr@10", test.get("hit@10"))


def sasrec_recbole(page: Page) -> dict | None:
    """Ours and RecBole on ml-100k: from sasrec_vs_recbole.json, else from the per-side files."""
    d = page.get(SVR)
    if isinstance(d, dict) and isinstance(d.get("ml100k"), dict):
        rb = []
        for r in d["ml100k"].get("recbole") or []:
            raw = None
            if r.get("json") and Path(r["json"]).is_file():
                try:
                    raw = json.loads(Path(r["json"]).read_text())
                except Exception:
                    raw = None
            rb.append({**r, "_raw": raw})
        return {"files": [SVR], "meta": d, "ours": d["ml100k"].get("ours") or [], "recbole": rb}
    ours_d = page.get(SVR_OURS)
    rb_files = sorted(n for n in page.results if RECBOLE_RE.match(n))
    if not isinstance(ours_d, dict) and not rb_files:
        return None
    rb = [_recbole_row(page.get(n)) for n in rb_files if isinstance(page.get(n), dict)]
    ours = ((ours_d or {}).get("ml100k") or {}).get("ours") or []
    rb += [r for r in ((ours_d or {}).get("ml100k") or {}).get("recbole") or []]
    return {"files": ([SVR_OURS] if ours_d else []) + rb_files, "meta": ours_d or {}, "ours": ours, "recbole": rb}


def section_sasrec_recbole(page: Page, ratios: list) -> None:
    page.add("### SASRec: modalrec against RecBole", "")
    x = sasrec_recbole(page)
    if x is None:
        page.not_run("sasrec_vs_recbole.py")
        return
    meta, ours, rb = x["meta"], x["ours"], x["recbole"]
    page.para("Sources: " + ", ".join(f"`{f}`" for f in x["files"]) + "; date: "
              + (date_of(meta) or "not recorded in the JSON") + (f"; {load_of(meta)}" if load_of(meta) else "") + ".")
    over = meta.get("ours_overrides_ml100k") or []
    rb_proto = next((r["_raw"].get("protocol") for r in rb if r.get("_raw")), None) or {}
    hist_ours = "eval.exclude_history=false" not in over
    proto = [f"same {(meta.get('ml100k_summary') or {}).get('name', 'ml-100k')} sequences and split on both sides"]
    if rb_proto:
        proto.append(f"RecBole: {rb_proto.get('split')}, {rb_proto.get('ranking')}, history "
                     f"{'excluded' if rb_proto.get('history_masked') else 'not excluded'}, {rb_proto.get('loss')}")
    proto.append(f"ours: history {'excluded' if hist_ours else 'not excluded'} "
                 "(unlike the rest of this page), pessimistic ties")
    if meta.get("threads") is not None:
        proto.append(f"torch threads: {meta['threads']}")
    page.para("Protocol: " + "; ".join(proto) + ". Time to best = wall time from the start of training to the end "
              "of the best epoch's validation pass.")
    if meta.get("model_size"):
        page.para("Model size (both sides): " + ", ".join(f"{k} {v}" for k, v in meta["model_size"].items()) + ". "
                  "Our side's other training settings (listed under the tables) were chosen on validation NDCG@10; "
                  "bench/recbole/README.md, \"Our side's settings\", gives the candidates and their scores.")
    rows = []
    for side, rs in (("modalrec", ours), ("RecBole", rb)):
        for r in sorted(rs, key=lambda r: (r.get("seed") is None, r.get("seed"))):
            cut = r.get("stopped_by_time_budget")
            best = r.get("best_epoch")
            if side == "RecBole":  # its epochs count from 0; shown from 1 like ours
                best = ((r.get("_raw") or {}).get("timing") or {}).get("epochs_to_best") or (
                    best + 1 if isinstance(best, int) else best)
            rows.append([side, r.get("seed"), secs(r.get("time_to_best_s")) + (" (cut by time budget)" if cut else ""),
                         f4((r.get("test") or {}).get("ndcg@10")), f4(_hr(r.get("test") or {})), best,
                         r.get("epochs_run"), num(r.get("parameters"))])
    page.add(*md_table(["library", "seed", "time to best", "test NDCG@10", "test HR@10", "best epoch (from 1)",
                        "epochs run", "parameters"], rows, right=(1, 3, 4, 5, 6, 7)), "")
    summ = []
    for side, rs in (("modalrec", ours), ("RecBole", rb)):
        t = [r["time_to_best_s"] for r in rs if _num(r.get("time_to_best_s"))]
        n = [r["test"]["ndcg@10"] for r in rs if _num((r.get("test") or {}).get("ndcg@10"))]
        h = [_hr(r["test"]) for r in rs if _num(_hr(r.get("test") or {}))]
        if t:
            (tm, ts), (nm, ns), (hm, hs) = mean_sd(t), mean_sd(n or [float("nan")]), mean_sd(h or [float("nan")])
            summ.append([side, len(t), f"{secs(tm)} ± {secs(ts)}" if len(t) > 1 else secs(tm),
                         f"{nm:.4f} ± {ns:.4f}" if len(n) > 1 else f4(nm),
                         f"{hm:.4f} ± {hs:.4f}" if len(h) > 1 else f4(hm)])
    if summ:
        page.para("Mean ± std over seeds:")
        page.add(*md_table(["library", "runs", "time to best", "test NDCG@10", "test HR@10"], summ, right=(1,)), "")
    if not rb and (x.get("meta") or {}).get("skip_recbole"):
        page.para("RecBole: **skipped** in this run (`--skip-recbole`; the quick report skips it, as one RecBole "
                  "epoch alone takes minutes here). `python bench/sasrec_vs_recbole.py` runs both sides.")
    elif not rb:
        page.para("RecBole: **not run yet** (`python bench/sasrec_vs_recbole.py`).")
    common = sorted({r.get("seed") for r in ours} & {r.get("seed") for r in rb} - {None})
    if common:
        to = [next(r for r in ours if r.get("seed") == s) for s in common]
        tr = [next(r for r in rb if r.get("seed") == s) for s in common]
        a = statistics.fmean(r["time_to_best_s"] for r in to)
        b = statistics.fmean(r["time_to_best_s"] for r in tr)
        cut = any(r.get("stopped_by_time_budget") for r in tr)
        dn = statistics.fmean(r["test"]["ndcg@10"] for r in to) - statistics.fmean(r["test"]["ndcg@10"] for r in tr)
        seeds = ", ".join(str(s) for s in common)
        s = (f"On the seed{'s' if len(common) > 1 else ''} both sides ran ({seeds}): RecBole needed "
             f"{'at least ' if cut else ''}{times(b / a)} modalrec's time to best ({secs(b)} vs {secs(a)}); "
             f"test NDCG@10 modalrec minus RecBole: {dn:+.4f}.")
        if cut:
            s += (" RecBole was stopped by its time budget: its time to best is a lower bound and its model had not "
                  "converged.")
        page.para(s)
        ratios.append((f"SASRec time to best: modalrec over RecBole (seed {seeds})", b / a, cut))
    # learning curves against wall-clock time
    series, missing = [], 0
    for r in sorted(ours, key=lambda r: r.get("seed") or 0):
        f = run_folder(r.get("run_dir"))
        recs = plots.read_epochs(f / "metrics.jsonl") if f else []
        pts = [(e["elapsed_s"], e["valid"]["ndcg@10"]) for e in recs
               if _num(e.get("elapsed_s")) and _num((e.get("valid") or {}).get("ndcg@10"))]
        if pts:
            series.append((f"modalrec seed {r.get('seed')}", [p[0] for p in pts], [p[1] for p in pts]))
        else:
            missing += 1
    for r in rb:
        eps = (r.get("_raw") or {}).get("epochs") or []
        pts = [(e["valid_end_s"], (e.get("valid_result") or {}).get("ndcg@10")) for e in eps
               if _num(e.get("valid_end_s")) and _num((e.get("valid_result") or {}).get("ndcg@10"))]
        if pts:
            series.append((f"RecBole seed {r.get('seed')}", [p[0] for p in pts], [p[1] for p in pts]))
    if series:
        path = page.plot("curves_sasrec_recbole", lambda p: plots.curves(
            p, series, title="SASRec on ml-100k: validation NDCG@10 against training wall time",
            xlabel="seconds since the start of training (log scale)", ylabel="validation NDCG@10", log_x=True))
        page.image(path, "SASRec vs RecBole learning curves")
    if missing:
        page.para(f"_Curves: {missing} modalrec run folder(s) named in the JSON are not on this machine._")
    page.para("modalrec options: " + " ".join(f"`{o}`" for o in over) if over else "")
    cmds = ["python bench/sasrec_vs_recbole.py"]
    for r in rb:
        a = (r.get("_raw") or {}).get("args")
        if isinstance(a, dict):
            parts = ["RECBOLE_VENV/bin/python bench/recbole/run_recbole_sasrec.py"]
            for k, v in a.items():
                if v is None or v is False:
                    continue
                flag = "--" + k.replace("_", "-")
                parts.append(flag if v is True else f"{flag} {short(str(v))}")
            cmds.append(" ".join(parts))
    page.para("Commands (the RecBole line is rebuilt from the arguments its JSON records; RECBOLE_VENV is RecBole's "
              "own venv, made by bench/recbole/setup_venv.sh):")
    page.add(*code(cmds), "")


def section_content(page: Page, ratios: list) -> None:
    page.add("### Item content: encoding and the cached training step", "")
    d = page.get("content_speed.json")
    if not isinstance(d, dict):
        page.not_run("content_speed.py")
        return
    page.header(d, "content_speed.json")
    m = machine_of(d)
    if m:
        page.para("Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()) + ".")
    if d.get("note"):
        page.para(f"Note: {d['note']}.")
    ts = d.get("train_step") or {}
    if ts:
        page.para(f"Training step ({ts.get('setting')}): {num(ts.get('slots'))} slots, "
                  f"{num(ts.get('padding_slots'))} of "
                  f"them padding, {num(ts.get('unique_items'))} unique items.")
        rows = [["naive: every slot through the full tower", secs(ts.get("naive_step_s")),
                 len(ts.get("all_naive_s") or []),
                 f"{ts.get('loss_naive', float('nan')):.6f}"],
                ["cached prefix + deduplicated items (fp16 cache)", secs(ts.get("cached_step_s")),
                 len(ts.get("all_cached_s") or []), f"{ts.get('loss_cached_fp16', float('nan')):.6f}"]]
        page.add(*md_table(["training step", "time (median)", "steps timed", "loss"], rows, right=(1, 2, 3)), "")
        sp = ts.get("speedup")
        if not _num(sp) and _num(ts.get("naive_step_s")) and _num(ts.get("cached_step_s")):
            sp = ts["naive_step_s"] / ts["cached_step_s"]
        g16, g32 = ts.get("grad_diff_fp16_cache") or {}, ts.get("grad_diff_fp32_cache") or {}
        page.para(f"Speed-up: **{times(sp)}**. Gradient difference to the naive step (relative norm): "
                  f"{g16.get('rel_norm', float('nan')):.1e} with the fp16 cache, "
                  f"{g32.get('rel_norm', float('nan')):.1e} "
                  f"with an fp32 cache (loss {ts.get('loss_cached_fp32', float('nan')):.6f}): the rest is fp16 "
                  f"rounding. Building the prefix store: {secs(ts.get('prefix_store_build_s'))}.")
        if _num(sp):
            ratios.append(("content training step: cached + deduplicated over naive", sp, False))
    enc = d.get("encoding") or {}
    rows = []
    for k, v in enc.items():
        if "skipped" in v:
            rows.append([k, f"skipped: {v['skipped']}", "", "", "", "", ""])
            continue
        rows.append([f"{k} ({v.get('tower')})", num(v.get("items")), secs(v.get("pipeline_s")), secs(v.get("raw_s")),
                     num(v.get("pipeline_items_per_s")), num(v.get("raw_items_per_s")), times(v.get("ratio"))])
        if _num(v.get("ratio")):
            ratios.append((f"{k} encoding: feature-store pipeline over raw forward", v["ratio"], False))
    if rows:
        page.para("Encoding into the feature store (pipeline) against the bare network forward over the same items "
                  "(raw); times are medians:")
        page.add(*md_table(["tower", "items", "pipeline", "raw", "pipeline items/s", "raw items/s",
                            "pipeline / raw"], rows, right=(1, 2, 3, 4, 5, 6)), "")
    page.add(*code(["python bench/content_speed.py"]), "")


def section_eval(page: Page, ratios: list) -> None:
    page.add("### Evaluation throughput", "")
    d = page.get("eval_speed.json")
    if not isinstance(d, dict):
        page.not_run("eval_speed.py")
        return
    page.header(d, "eval_speed.json")
    env = d.get("env") or {}
    page.para("Exact full ranking with history exclusion, pessimistic ties and all metrics (`evaluate`) against a "
              "bare `matmul + topk` over the same random matrices; fastest of the repeats. "
              + (f"torch {env.get('torch')}, {env.get('threads')} threads, batch size {env.get('batch_size')}."
                 if env else ""))
    rows = []
    for r in d.get("rows") or []:
        rows.append([r.get("case"), f"{num(r.get('users'))} x {num(r.get('items'))}", r.get("method"),
                     secs(r.get("seconds")), f"{r.get('pairs_per_s', float('nan')):.3g}",
                     f"{r.get('ratio_vs_bare', float('nan')):.2f}",
                     r.get("repeats")])
    page.add(*md_table(["case", "users x items", "method", "time", "user-item pairs/s", "throughput / bare",
                        "repeats"], rows, right=(3, 4, 5, 6)), "")
    big = [r for r in d.get("rows") or [] if r.get("method") == "ours" and _num(r.get("ratio_vs_bare"))]
    if big:
        b = max(big, key=lambda r: (r.get("users") or 0) * (r.get("items") or 0))
        ratios.append((f"evaluation {num(b.get('users'))} x {num(b.get('items'))}: full metrics over bare top-k",
                       b["ratio_vs_bare"], False))
    page.add(*code(["python bench/eval_speed.py"]), "")


def section_prepare(page: Page) -> None:
    page.add("### Data preparation", "")
    d = page.get("prepare_speed.json")
    if not isinstance(d, dict):
        page.not_run("prepare_speed.py")
        return
    page.header(d, "prepare_speed.json")
    if d.get("note"):
        page.para(f"Note: {d['note']}.")
    rows = []
    for r in d.get("results") or []:
        tgt = r.get("target")
        tcell, ok = "", None
        if isinstance(tgt, dict):
            ok = bool(r.get("prepare_seconds", math.inf) < tgt.get("seconds", math.inf)
                      and r.get("peak_rss_mib", math.inf) < tgt.get("peak_rss_mib", math.inf))
            tcell = f"< {num(tgt.get('seconds'))} s and < {num(tgt.get('peak_rss_mib'), 0)} MiB"
        rows.append([r.get("name"), num(r.get("events_read")), num(r.get("users")), num(r.get("items")),
                     num(r.get("interactions")), secs(r.get("prepare_seconds")),
                     ", ".join(f"{x:.2f}" for x in r.get("runs_prepare_seconds") or []), secs(r.get("read_seconds")),
                     num(r.get("peak_rss_mib"), 0), tcell, verdict(ok) if tgt else ""])
    page.add(*md_table(["data set", "events read", "users", "items", "interactions kept", "prepare (fastest)",
                        "prepare s per run", "read again (warm)", "peak RSS MiB", "target", "met?"], rows,
                       right=(1, 2, 3, 4, 5, 7, 8)), "")
    inv = "python bench/prepare_speed.py" + (f" --repeat {d['repeat']}" if d.get("repeat") else "") + (
        f" --split {d['split']}" if d.get("split") else "")
    page.add(*code([inv]), "")


def section_cli(page: Page) -> None:
    page.add("### CLI start-up", "")
    d = page.get("cli_startup.json")
    if not isinstance(d, dict):
        page.not_run("cli_startup.py")
        return
    page.header(d, "cli_startup.json")
    target = d.get("target_s")
    rows = []
    for name, v in d.items():
        if not isinstance(v, dict) or "median_s" not in v:
            continue
        is_cli = name.startswith("modalrec")
        ok = (v.get("max_s", math.inf) < target) if (is_cli and _num(target)) else None
        rows.append([f"`{name}`", secs(v.get("median_s")), secs(v.get("max_s")), len(v.get("runs") or []),
                     f"< {secs(target)} (slowest run)" if is_cli and _num(target) else "for comparison",
                     verdict(ok) if ok is not None else ""])
    page.para("Each command in a fresh interpreter:")
    page.add(*md_table(["command", "median", "slowest", "runs", "target", "met?"], rows, right=(1, 2, 3)), "")
    page.add(*code(["python bench/cli_startup.py"]), "")


def _default_interest_ratio() -> float | None:
    try:
        from modalrec.models.missrec import MISSRecConfig  # noqa: F401 - imports torch

        return MISSRecConfig().interest_ratio
    except Exception:
        try:
            from modalrec.config import build_config

            return build_config(model="missrec").model.interest_ratio
        except Exception:
            return None


def section_interest(page: Page) -> None:
    page.add("### MISSRec interest discovery", "")
    d = page.get("interest_discovery.json")
    if not isinstance(d, dict):
        page.not_run("interest_discovery.py")
        return
    page.header(d, "interest_discovery.json")
    page.para(f"One k-means pass over every item's adapted text and image vectors on {d.get('dataset')} (options: "
              + " ".join(f"`{o}`" for o in d.get("overrides") or []) + f"), {d.get('threads')} thread(s), median of "
              "the timed runs.")
    rows = d.get("rows") or []
    default = _default_interest_ratio()
    tgt = d.get("target")
    m = re.search(r"under\s+([0-9.]+)\s*s", tgt) if isinstance(tgt, str) else None
    limit = float(m.group(1)) if m else (tgt if _num(tgt) else None)
    ref = next((r for r in rows if _num(default) and abs(r.get("ratio", -1) - default) < 1e-12), None)
    how = "the model's default ratio"
    if ref is None and rows:
        ref, how = rows[0], "the first ratio measured"
    out = []
    for r in rows:
        is_ref = r is ref
        out.append([f"{r.get('ratio')}" + (" (default)" if is_ref and how.startswith("the model") else ""),
                    num(r.get("items")), num(r.get("vectors")), num(r.get("dim")), num(r.get("k")),
                    num(r.get("clusters_used")), secs(r.get("median_s")), len(r.get("times_s") or []),
                    (f"< {secs(limit)}" if is_ref and limit is not None else ""),
                    (verdict(r.get("median_s", math.inf) < limit) if is_ref and limit is not None else "")])
    page.add(*md_table(["interest ratio", "items", "vectors", "dim", "clusters K", "clusters used", "median time",
                        "runs", "target", "met?"], out, right=(1, 2, 3, 4, 5, 6, 7)), "")
    if tgt is not None:
        page.para(f"Target (from the JSON): \"{tgt}\"; checked on {how}.")
    page.add(*code([d.get("command") or "python bench/interest_discovery.py"]), "")


def plot_ratios(page: Page, ratios: list) -> None:
    if not ratios:
        return
    path = page.plot("speed_ratios", lambda p: plots.hbar(
        p, [r[0] for r in ratios], [r[1] for r in ratios], groups=[r[0].split(" ")[0] for r in ratios],
        annotations=[("≥ " if r[2] else "") + times(r[1]) for r in ratios], log=True, reference=1.0,
        reference_label="1x: same speed", title="Speed-up of the first named over the second (log scale)",
        xlabel="ratio (log scale)", width=8.0))
    page.image(path, "speed ratios")
    page.para("Speed-up of the first named over the second, each from the section below named in its label "
              "(above 1x: faster); \"≥\" marks a lower bound (a run cut by its time budget).")


# ----------------------------------------------------------------------------------------------
# serving


def _nominal(items: int) -> int:
    """Catalogue size rounded to 3 significant digits (1,000,001 -> 1,000,000: one item added)."""
    if not items:
        return 0
    p = max(0, len(str(int(items))) - 3)
    return int(round(items, -p))


def _size(tok: str) -> int | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", tok.lower())
    if not m:
        return None
    return int(float(m.group(1)) * {"": 1, "k": 10 ** 3, "m": 10 ** 6}[m.group(2)])


def serve_targets(d: dict) -> list[list[str]]:
    """One row per target of serve_latency.json: what is measured, the measured value, met or not."""
    rows_data = d.get("rows") or []
    out = []
    for key, goal in (d.get("targets") or {}).items():
        if key == "added_item_visible_s":
            vals = [a["recommended_after_s"] for a in d.get("added_item") or [] if _num(a.get("recommended_after_s"))]
            oks = [bool(a.get("ok")) for a in d.get("added_item") or []]
            if vals:
                out.append(["an item added by POST /items is recommended (slowest case, all correct)",
                            f"≤ {secs(goal)}", f"{secs(max(vals))}; {sum(oks)} of {len(oks)} correct",
                            verdict(max(vals) <= goal and all(oks))])
            else:
                out.append([key, str(goal), "no added-item measurement", verdict(None)])
            continue
        m = re.fullmatch(r"(exact|faiss|ivf|hnsw)_([0-9.]+[km]?)_(p50_ms|p99_ms|recall@10)(?:_(\d+)_clients?)?", key)
        if not m:
            out.append([f"`{key}`", str(goal), "no rule in bench/report.py to check this target", verdict(None)])
            continue
        kind, size, metric, clients = m.group(1), _size(m.group(2)), m.group(3), m.group(4)
        cand = [r for r in rows_data if _nominal(r.get("items", 0)) == size
                and ((r.get("kind") == "exact") if kind == "exact" else
                     (r.get("kind") != "exact" if kind == "faiss" else r.get("kind") == kind))]
        if clients is not None:
            cand = [r for r in cand if r.get("clients") == int(clients)]
        elif cand and metric != "recall@10":
            lo = min(r.get("clients", 0) for r in cand)
            cand = [r for r in cand if r.get("clients") == lo]
        if not cand:
            out.append([f"`{key}`", str(goal), "not measured in this run", verdict(None)])
            continue
        for kd in sorted({r["kind"] for r in cand}):
            rs = [r for r in cand if r["kind"] == kd]
            if metric == "recall@10":
                v = min(r["recall@10"] for r in rs)
                ok, val, g = v >= goal, f"{v:.4f}", f"≥ {goal}"
            else:
                v = max(r[metric] for r in rs)
                ok, val, g = v <= goal, f"{v:.1f} ms", f"≤ {goal} ms"
            cl = sorted({r.get("clients") for r in rs})
            what = (f"{metric.replace('_ms', ' latency')}, {kd} index, {num(size)} items"
                    + (f", {', '.join(map(str, cl))} client(s)" if metric != "recall@10" else ""))
            out.append([what, g, val, verdict(ok)])
    return out


def section_serve_latency(page: Page, ratios: list) -> None:
    page.add("### Recommendation service over HTTP", "")
    d = page.get("serve_latency.json")
    if not isinstance(d, dict):
        page.not_run("serve_latency.py")
        return
    page.header(d, "serve_latency.json")
    page.para(f"Model: {d.get('model')} (run `{short(str(d.get('run')))}`); {d.get('requests_per_setting')} requests "
              f"per setting; server torch threads: {d.get('server_torch_threads')}. Catalogues beyond the run's own "
              "items are grown with synthetic items (see bench/serve_latency.py).")
    rows = []
    for r in d.get("rows") or []:
        idx = r.get("index") or {}
        settings = ", ".join(f"{k}={v}" for k, v in idx.items() if k != "kind")
        rows.append([num(r.get("items")), r.get("kind") + (f" ({settings})" if settings else ""), r.get("clients"),
                     f"{r.get('p50_ms', float('nan')):.1f}", f"{r.get('p99_ms', float('nan')):.1f}",
                     f"{r.get('throughput_rps', float('nan')):.1f}", f4(r.get("recall@10")), r.get("errors"),
                     secs(r.get("build_s")) if _num(r.get("build_s")) else ""])
    page.add(*md_table(["items", "index", "clients", "p50 ms", "p99 ms", "req/s", "recall@10", "errors",
                        "index build"], rows, right=(0, 2, 3, 4, 5, 6, 7, 8)), "")
    tr = serve_targets(d)
    if tr:
        page.para("Targets (from the JSON's `targets`, checked here):")
        page.add(*md_table(["target", "goal", "measured", "met?"], tr), "")
    added = d.get("added_item") or []
    if added:
        page.para("An item added through `POST /items` (a copy of a real item's content under a new id), then "
                  "`POST /recommend` with the same history (rank: in the top 1000 of the whole catalogue; "
                  "empty when both fell below it and were compared alone):")
        page.add(*md_table(["items", "index", "copied item", "add", "recommended after", "rank", "rank of the original",
                            "same score"],
                           [[num(a.get("items")), a.get("kind"), a.get("copied_item"), secs(a.get("add_s")),
                             secs(a.get("recommended_after_s")), "" if a.get("rank") is None else a["rank"],
                             "" if a.get("rank_of_original") is None else a["rank_of_original"],
                             "yes" if a.get("ok") else "**no**"] for a in added],
                           right=(0, 3, 4, 5, 6)), "")
    one = [r for r in d.get("rows") or [] if r.get("clients") == min((x.get("clients") for x in d["rows"]), default=0)]
    if one:
        big = max(_nominal(r["items"]) for r in one)
        ex = [r for r in one if _nominal(r["items"]) == big and r["kind"] == "exact"]
        for kd in sorted({r["kind"] for r in one if r["kind"] != "exact"}):
            ap = [r for r in one if _nominal(r["items"]) == big and r["kind"] == kd]
            if ex and ap and ap[0]["p50_ms"] > 0:
                ratios.append((f"HTTP /recommend, {num(big)} items, p50: {kd} over exact",
                               ex[0]["p50_ms"] / ap[0]["p50_ms"], False))
    page.add(*code([short(d.get("command") or "python bench/serve_latency.py")]), "")


def section_serve_index(page: Page, ratios: list) -> None:
    page.add("### Retrieval index alone", "")
    d = page.get("serve_index.json")
    if not isinstance(d, dict):
        page.not_run("serve_index.py")
        return
    page.header(d, "serve_index.json")
    m, s = machine_of(d), d.get("settings") or {}
    page.para(f"In-process `search(one query, k={s.get('k')})` over random clustered vectors (d = {s.get('dim')}, "
              f"{num(s.get('clusters'))} clusters), {s.get('queries')} queries per setting, {m.get('torch_threads')} "
              f"thread(s); FAISS {m.get('faiss')}. Recall@10 against exact search; \"mixed\": queries between three "
              "cluster centres (harder).")
    rows = []
    for r in d.get("rows") or []:
        settings = ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items() if k != "kind")
        rows.append([num(r.get("items")), r.get("kind"), settings, secs(r.get("build_s")),
                     f"{r.get('p50_ms', float('nan')):.2f}", f"{r.get('p99_ms', float('nan')):.2f}",
                     f"{r.get('p99_ms_excl50', float('nan')):.2f}", f4(r.get("recall@10")),
                     f4(r.get("recall@10_mixed"))])
    page.add(*md_table(["items", "index", "settings", "build", "p50 ms", "p99 ms", "p99 ms, 50 excluded", "recall@10",
                        "recall@10 mixed"], rows, right=(0, 3, 4, 5, 6, 7, 8)), "")
    rs = d.get("rows") or []
    if rs:
        big = max(r["items"] for r in rs)
        ex = next((r for r in rs if r["items"] == big and r["kind"] == "exact"), None)
        for r in rs:
            if ex and r["items"] == big and r["kind"] != "exact" and r["p50_ms"] > 0:
                ratios.append((f"index alone, {num(big)} items, p50: {r['kind']} over exact",
                               ex["p50_ms"] / r["p50_ms"], False))
    inv = "python bench/serve_index.py"
    if s.get("sizes"):
        inv += " --sizes " + " ".join(str(x) for x in s["sizes"])
    if s.get("kinds"):
        inv += " --kinds " + " ".join(s["kinds"])
    page.para("Command (arguments rebuilt from the JSON's settings):")
    page.add(*code([inv]), "")


# ----------------------------------------------------------------------------------------------
# page assembly


MACHINE_FIELDS = [("cpus", "CPU cores"), ("cpu_count", "CPU cores"), ("platform", "platform"), ("python", "Python"),
                  ("torch", "torch"), ("faiss", "FAISS"), ("numpy", "numpy"), ("pandas", "pandas"),
                  ("pyarrow", "pyarrow"), ("recbole", "RecBole"), ("device", "device")]


def machine_table(page: Page) -> list[str]:
    vals: dict[str, dict[str, list[str]]] = {}
    for fname, d in sorted(page.results.items()):
        if not isinstance(d, dict):
            continue
        m = machine_of(d)
        for k, lab in MACHINE_FIELDS:
            if k in m and m[k] not in (None, ""):
                vals.setdefault(lab, {}).setdefault(str(m[k]), []).append(fname)
    rows = []
    for lab, vs in vals.items():
        for v, files in vs.items():
            src = ", ".join(f"`{f}`" for f in files) if len(files) <= 2 else f"{len(files)} files"
            rows.append([lab, f"`{v}`" if lab == "platform" else v,
                         f"every file that records it ({src})" if len(vs) == 1 and len(files) > 2 else src])
    return md_table(["", "value", "from"], rows) if rows else ["No result file records its machine."]


def build(page: Page, quick: bool = False) -> tuple[str, list[dict], str | None]:
    p = page
    title = "# Results" + (" (quick run)" if quick else "")
    p.add(title, "")
    p.para("<!-- generated by bench/report.py from the JSON under "
           f"{p.rel(p.folder, ROOT)}/: edit the report script, not this page -->")
    if quick:
        p.para("**Quick run (`python bench/run_all.py --quick`): fewer seeds and epochs, smaller settings. These are "
               "not the reference numbers; those are in [results.md](results.md).**")
    regen = ("`python bench/run_all.py --quick --report-only` regenerates the page and its plots" if quick else
             "`python bench/report.py` (or `make report`) regenerates the page, its plots and the README's headline")
    p.para("Every number on this page is read from the JSON files that the benchmarks under `bench/` write into "
           f"`{p.rel(p.folder, ROOT)}/` (and, for learning curves, from the run folders they name); {regen}.")
    p.para("**Protocol** of every quality number (docs/evaluation.md): leave-one-out split by time; exact full "
           "ranking over the whole catalogue (no sampled negatives); the items of the user's history cannot be "
           "recommended (one exception, said there: the SASRec-against-RecBole comparison, where neither side "
           "excludes them, as RecBole does not for sequential models); ties are pessimistic; the model is "
           "selected on validation NDCG@10 and its test metrics are reported. Mean ± std are over seeds "
           "(sample standard deviation); a setting run once shows its value alone.")
    p.para("**Machine** (as recorded in the JSON files):")
    p.add(*machine_table(p), "")
    p.para("Benchmarks may have shared the machine with other jobs: each section gives the load average or the "
           "note its JSON records, and times measured under load are upper bounds.")
    if p.errors:
        p.para("**Unreadable result files:** " + "; ".join(f"`{k}`: {v}" for k, v in p.errors.items()))

    rows, target = headline(p)
    sections = [f"Headline: {target or 'transfer'} test quality", "Quality details", "Speed", "Serving",
                "Bench run time"]
    p.para("Contents: " + " · ".join(f"[{s}](#{slug(s)})" for s in sections))

    # headline
    p.add(f"## {sections[0]}", "")
    if rows:
        for fname in (PMM, MISS):
            d = p.results.get(fname)
            if isinstance(d, dict):
                for lab in labels(d):
                    p.para(f"`{fname}`: {lab}")
        p.para(f"Test NDCG@10 and HR@10 on {target}, mean ± std over runs (one run: the value alone). Single-modality "
               "variants and ablations are under Quality details.")
        p.add(*headline_table(rows), "")
        p.image(plot_headline(p, rows, target), "test NDCG@10 per model and setting")
        if not p.has(MISS):
            p.para("MISSRec and UniSRec: **not run yet**: `python bench/missrec_unisrec_transfer.py`")
    else:
        p.para("**Not run yet:** `python bench/pmmrec_transfer.py` and `python bench/missrec_unisrec_transfer.py`")

    p.add(f"## {sections[1]}", "")
    for fn in (section_pmmrec, section_missrec, section_cold, section_sasrec_ml1m):
        guarded(p, fn)

    # the speed-ratio plot heads the speed section but takes ratios from the serving sections too:
    # both bodies are built first, on pages that share everything but their lines
    ratios: list = []
    speed, serve = p.child(), p.child()
    for fn in (section_sasrec_recbole, section_content, section_eval):
        guarded(speed, lambda q, fn=fn: fn(q, ratios))
    for fn in (section_prepare, section_cli, section_interest):
        guarded(speed, fn)
    for fn in (section_serve_latency, section_serve_index):
        guarded(serve, lambda q, fn=fn: fn(q, ratios))
    p.add(f"## {sections[2]}", "")
    guarded(p, lambda q: plot_ratios(q, ratios))
    p.add(*speed.lines)
    p.add(f"## {sections[3]}", "")
    p.add(*serve.lines)
    p.matplotlib_missing |= speed.matplotlib_missing or serve.matplotlib_missing
    p.add(f"## {sections[4]}", "")
    guarded(p, section_bench_time)

    unknown = sorted(set(p.results) - p.used)
    if unknown:
        p.add("## Other result files", "")
        p.para("Not tabulated by bench/report.py: " + ", ".join(f"`{f}`" for f in unknown) + ".")
    if p.matplotlib_missing:
        p.para("_Plots skipped: matplotlib is not installed (`pip install 'modalrec[report]'`)._")
    text = "\n".join(p.lines).rstrip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text, rows, target


def _walls(x: Any) -> float:
    """Sum of the run wall times a transfer result file records: every `wall_s` (a number or a list
    of per-seed numbers), and a pre-train's `train_time_s` where its dict has no `wall_s`."""
    if isinstance(x, dict):
        if "wall_s" in x:
            w = x["wall_s"]
            own = sum(v for v in w if _num(v)) if isinstance(w, list) else (w if _num(w) else 0.0)
        elif _num(x.get("train_time_s")):
            own = x["train_time_s"]
        else:
            own = 0.0
        return own + sum(_walls(v) for k, v in x.items() if k not in ("wall_s", "train_time_s"))
    if isinstance(x, list):
        return sum(_walls(v) for v in x)
    return 0.0


def section_bench_time(page: Page) -> None:
    """How long `make bench` took (bench/run_all.py's own record) and the compute behind the tables."""
    d = page.get(RUN_ALL)
    if isinstance(d, dict) and d.get("scripts"):
        page.para(f"Source: `{page.rel(page.folder / RUN_ALL, ROOT)}`; started {d.get('started', 'n/a')}"
                  + (f", 1-min load average before: {d['machine']['loadavg_1min_before']:.2f}"
                     if _num((d.get("machine") or {}).get("loadavg_1min_before")) else "") + ".")
        cmd = "python bench/run_all.py" + "".join(f" {a}" for a in d.get("argv") or [])
        rows = [[f"`{r.get('script')}`", secs(r.get("wall_s")), "ok" if r.get("returncode") == 0 else
                 f"failed (exit {r.get('returncode')})"] for r in d["scripts"]]
        total, target = d.get("total_s"), d.get("target_s")
        before = d.get("finished_runs_before")
        failed = sum(1 for r in d["scripts"] if r.get("returncode") != 0)
        if before != 0:
            why = (f"{before} finished run folder(s) under `{d.get('work')}` were reused, so this is not the time "
                   "of a fresh run")
        elif d.get("only") or not d.get("complete"):
            why = "a partial run (`--only`) or an interrupted one"
        elif failed:
            why = f"{failed} benchmark(s) failed"
        else:
            why = ""
        ok = (total < target) if (not why and _num(total) and _num(target)) else None
        rows.append(["**all**", f"**{secs(total)}**", "" if d.get("complete") else "interrupted"])
        page.add(*md_table(["benchmark", "wall", "status"], rows, right=(1,)), "")
        page.para(f"`{cmd}`: target < {secs(target)}"
                  + (f": {verdict(ok)}." if ok is not None else f"; not comparable: {why}."))
    else:
        page.para("**Not timed yet:** `python bench/run_all.py` records its own wall time per benchmark here.")
    rows, total_s, lower = [], 0.0, False
    for fname in (PMM, MISS):
        t = page.results.get(fname)
        if isinstance(t, dict):
            page.used.add(fname)
            table = t.get("table") or {}
            if fname == MISS and PMM in page.results and isinstance(table, dict):
                # its Pop / SASRec rows are the PMMRec bench's runs, reused: count them once
                table = {k: v for k, v in table.items() if k not in ("pop", "sasrec")}
            # pre-trains run by the bench itself (the ablations', or the main one without --pretrain) are
            # table rows named "pretrain ..."; the main one is also in "pretrain" when it was given
            pre_rows, rest = {}, table
            if isinstance(table, dict):
                pre_rows = {k: v for k, v in table.items() if is_bench_pretrain(str(k))}
                rest = {k: v for k, v in table.items() if k not in pre_rows}
            own_pre = 0.0 if "pretrain ml-1m" in pre_rows else _walls(t.get("pretrain"))
            pre_s, runs_s = own_pre + _walls(pre_rows), _walls(rest)
            rows.append([f"`{fname}`", secs(pre_s), secs(runs_s), secs(pre_s + runs_s)])
            total_s += pre_s + runs_s
    for name, files, wall, partial in sasrec_compute(page):
        rows.append([f"{name}: " + ", ".join(f"`{f}`" for f in files), "", secs(wall) + (" (at least)" if partial
                                                                                      else ""), secs(wall)])
        total_s += wall
        lower |= partial
    if rows:
        rows.append(["**all**", "", "", f"**{secs(total_s)}**" + (" (at least)" if lower else "")])
        page.para("Compute behind the tables: the sum of the wall times the result files record for their "
                  "training runs (pre-trains; every seed of every setting, ablations and cold items included; "
                  "both SASRec libraries). A fresh `make bench` recomputes all of them one after the other, so "
                  "this bounds its duration from below. \"At least\": a run in the sum was stopped (by a time "
                  "budget, or before early stopping ended it), so a complete one takes longer:")
        page.add(*md_table(["result file", "pre-training", "fine-tune / scratch / eval / training runs", "total"],
                           rows, right=(1, 2, 3)), "")


def runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def sasrec_compute(page: Page) -> list[tuple[str, list[str], float, bool]]:
    """The SASRec benchmark's training wall times: (what, source files, seconds, stopped early?)."""
    out = []
    x = sasrec_recbole(page)
    if x is not None:
        src = [f for f in x["files"] if not RECBOLE_RE.match(f)]
        t = [r["train_time_s"] for r in x["ours"] if _num(r.get("train_time_s"))]
        if t:
            out.append((f"SASRec ml-100k, modalrec ({runs(len(t))})", src, sum(t), False))
        rb = [r for r in x["recbole"] if _num(r.get("fit_seconds"))]
        if rb:
            rb_src = sorted({f for f in x["files"] if RECBOLE_RE.match(f)}) or src
            out.append((f"SASRec ml-100k, RecBole ({runs(len(rb))})", rb_src, sum(r["fit_seconds"] for r in rb),
                        any(r.get("stopped_by_time_budget") for r in rb)))
    d = page.get(SVR)
    m = d.get("ml1m") if isinstance(d, dict) else None
    if isinstance(m, dict) and _num(m.get("train_time_s")):
        out.append(("SASRec ml-1m, modalrec", [SVR], m["train_time_s"], False))
    else:
        d = page.get(SVR_ML1M)
        if isinstance(d, dict) and _num(d.get("mean_epoch_s")) and isinstance(d.get("epochs_run"), int):
            out.append(("SASRec ml-1m, modalrec", [SVR_ML1M], d["mean_epoch_s"] * d["epochs_run"],
                        d.get("best_epoch") == d.get("epochs_run")))  # best = last epoch: not early-stopped
    return out


def guarded(page: Page, fn: Callable[[Page], None]) -> None:
    """A section that cannot be rendered says so instead of stopping the whole report."""
    n = len(page.lines)
    try:
        fn(page)
    except Exception as e:  # a result file in an unexpected shape
        del page.lines[n + 2:]
        page.para(f"**Could not render this section:** {type(e).__name__}: {e}")


def readme_snippet(page: Page, rows: list[dict], target: str | None, readme: Path) -> str:
    lines = [START, "<!-- generated by bench/report.py: edit the report script, not this block -->", ""]
    if rows:
        for fname in sorted({r["source"] for r in rows}):
            for lab in labels(page.results[fname]):
                lines += [f"`{fname}`: {lab}", ""]
        lines += [f"Test NDCG@10 and HR@10 on {target} (leave-one-out, exact full ranking over the whole catalogue, "
                  "history excluded, pessimistic ties), mean ± std over runs:", ""]
        lines += headline_table(rows) + [""]
        img = page.images.get("ndcg_test")
        if img is not None:
            lines += [f"![test NDCG@10 per model and setting]({page.rel(img, readme.parent)})", ""]
    else:
        lines += ["No quality results yet: `python bench/pmmrec_transfer.py`.", ""]
    lines += [f"Every benchmark (quality, cold items, speed, serving) with its commands, dates and targets: "
              f"[{page.rel(page.out, readme.parent)}]({page.rel(page.out, readme.parent)}).", "", END]
    return "\n".join(lines)


def update_readme(readme: Path, snippet: str) -> bool:
    """Replace the text between the markers; False (README untouched) if they are missing."""
    if not readme.is_file():
        print(f"{readme}: not found; README not updated", file=sys.stderr)
        return False
    text = readme.read_text(encoding="utf-8")
    i = text.find(START)
    j = text.find(END, i + len(START)) if i >= 0 else -1
    if i < 0 or j < 0:
        print(f"{readme}: the markers {START} ... {END} are missing; README not updated", file=sys.stderr)
        return False
    new = text[:i] + snippet + text[j + len(END):]
    if new != text:
        atomic_write_text(readme, new)
    return True


def load_results(folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    data, errors = {}, {}
    for f in sorted(folder.glob("*.json")):
        try:
            data[f.name] = json.loads(f.read_text(encoding="utf-8"))
        except Exception as e:
            errors[f.name] = f"{type(e).__name__}: {e}"
    return data, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"), help="folder of the benchmark JSON files")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"), help="the page to write")
    ap.add_argument("--img", default="", help="folder of the plots (default: img/ beside --out; "
                                              "img/<name>/ for a page not called results.md)")
    ap.add_argument("--readme", default=str(ROOT / "README.md"), help="README whose marked block is replaced")
    ap.add_argument("--no-readme", action="store_true", help="leave the README alone")
    ap.add_argument("--no-plots", action="store_true", help="write no PNG")
    ap.add_argument("--quick", action="store_true", help="label the whole page as a quick run")
    args = ap.parse_args(argv)

    folder, out = Path(args.results), Path(args.out)
    img = Path(args.img) if args.img else out.parent / "img" / ("" if out.stem == "results" else out.stem)
    results, errors = load_results(folder) if folder.is_dir() else ({}, {})
    if not folder.is_dir():
        print(f"{folder}: no such folder; every benchmark is reported as not run", file=sys.stderr)
    page = Page(results, errors, folder, out, img, draw=not args.no_plots)
    text, rows, target = build(page, quick=args.quick)
    atomic_write_text(out, text)
    print(f"wrote {out} ({len(results)} result files, {len(page.images)} plots in {img})")
    if page.matplotlib_missing:
        print("plots skipped: matplotlib is not installed (pip install 'modalrec[report]')", file=sys.stderr)
    if not args.no_readme:
        readme = Path(args.readme)
        if update_readme(readme, readme_snippet(page, rows, target, readme)):
            print(f"updated the results block of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
