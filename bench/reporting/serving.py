"""The serving sections: the HTTP service (serve_latency.json, with its targets checked here) and the
retrieval index alone (serve_index.json)."""

from __future__ import annotations

import re

from .fmt import code, f4, is_num, md_table, num, secs, verdict
from .page import Page
from .results import machine_of, short

TARGET_KEY = re.compile(r"(exact|faiss|ivf|hnsw)_([0-9.]+[km]?)_(p50_ms|p99_ms|recall@10)(?:_(\d+)_clients?)?")


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
    return int(float(m.group(1)) * {"": 1, "k": 10**3, "m": 10**6}[m.group(2)])


def _added_item_target(d: dict, key: str, goal) -> list[str]:
    vals = [a["recommended_after_s"] for a in d.get("added_item") or [] if is_num(a.get("recommended_after_s"))]
    oks = [bool(a.get("ok")) for a in d.get("added_item") or []]
    if not vals:
        return [key, str(goal), "no added-item measurement", verdict(None)]
    return [
        "an item added by POST /items is recommended (slowest case, all correct)",
        f"≤ {secs(goal)}",
        f"{secs(max(vals))}; {sum(oks)} of {len(oks)} correct",
        verdict(max(vals) <= goal and all(oks)),
    ]


def _target_rows(rows: list[dict], kind: str, size: int | None, metric: str, clients: str | None) -> list[dict]:
    """The measured rows a target such as `faiss_1m_p99_ms` is about (the fewest clients unless it names them)."""
    cand = [
        r
        for r in rows
        if _nominal(r.get("items", 0)) == size
        and (
            (r.get("kind") == "exact")
            if kind == "exact"
            else (r.get("kind") != "exact" if kind == "faiss" else r.get("kind") == kind)
        )
    ]
    if clients is not None:
        return [r for r in cand if r.get("clients") == int(clients)]
    if cand and metric != "recall@10":
        lo = min(r.get("clients", 0) for r in cand)
        cand = [r for r in cand if r.get("clients") == lo]
    return cand


def _index_target(cand: list[dict], size: int | None, metric: str, goal) -> list[list[str]]:
    """One row per index kind: the worst measured value against the goal."""
    out = []
    for kd in sorted({r["kind"] for r in cand}):
        rs = [r for r in cand if r["kind"] == kd]
        if metric == "recall@10":
            v = min(r["recall@10"] for r in rs)
            ok, val, g = v >= goal, f"{v:.4f}", f"≥ {goal}"
        else:
            v = max(r[metric] for r in rs)
            ok, val, g = v <= goal, f"{v:.1f} ms", f"≤ {goal} ms"
        cl = sorted({r.get("clients") for r in rs})
        what = f"{metric.replace('_ms', ' latency')}, {kd} index, {num(size)} items" + (
            f", {', '.join(map(str, cl))} client(s)" if metric != "recall@10" else ""
        )
        out.append([what, g, val, verdict(ok)])
    return out


def serve_targets(d: dict) -> list[list[str]]:
    """One row per target of serve_latency.json: what is measured, the measured value, met or not."""
    out = []
    for key, goal in (d.get("targets") or {}).items():
        if key == "added_item_visible_s":
            out.append(_added_item_target(d, key, goal))
            continue
        m = TARGET_KEY.fullmatch(key)
        if not m:
            out.append([f"`{key}`", str(goal), "no rule in bench/report.py to check this target", verdict(None)])
            continue
        kind, size, metric, clients = m.group(1), _size(m.group(2)), m.group(3), m.group(4)
        cand = _target_rows(d.get("rows") or [], kind, size, metric, clients)
        if not cand:
            out.append([f"`{key}`", str(goal), "not measured in this run", verdict(None)])
            continue
        out += _index_target(cand, size, metric, goal)
    return out


def _latency_table(page: Page, d: dict) -> None:
    rows = []
    for r in d.get("rows") or []:
        idx = r.get("index") or {}
        settings = ", ".join(f"{k}={v}" for k, v in idx.items() if k != "kind")
        rows.append(
            [
                num(r.get("items")),
                r.get("kind") + (f" ({settings})" if settings else ""),
                r.get("clients"),
                f"{r.get('p50_ms', float('nan')):.1f}",
                f"{r.get('p99_ms', float('nan')):.1f}",
                f"{r.get('throughput_rps', float('nan')):.1f}",
                f4(r.get("recall@10")),
                r.get("errors"),
                secs(r.get("build_s")) if is_num(r.get("build_s")) else "",
            ]
        )
    page.add(
        *md_table(
            ["items", "index", "clients", "p50 ms", "p99 ms", "req/s", "recall@10", "errors", "index build"],
            rows,
            right=(0, 2, 3, 4, 5, 6, 7, 8),
        ),
        "",
    )


def _added_items(page: Page, added: list[dict]) -> None:
    page.para(
        "An item added through `POST /items` (a copy of a real item's content under a new id), then "
        "`POST /recommend` with the same history (rank: in the top 1000 of the whole catalogue; "
        "empty when both fell below it and were compared alone):"
    )
    page.add(
        *md_table(
            ["items", "index", "copied item", "add", "recommended after", "rank", "rank of the original", "same score"],
            [
                [
                    num(a.get("items")),
                    a.get("kind"),
                    a.get("copied_item"),
                    secs(a.get("add_s")),
                    secs(a.get("recommended_after_s")),
                    "" if a.get("rank") is None else a["rank"],
                    "" if a.get("rank_of_original") is None else a["rank_of_original"],
                    "yes" if a.get("ok") else "**no**",
                ]
                for a in added
            ],
            right=(0, 3, 4, 5, 6),
        ),
        "",
    )


def _http_ratios(d: dict, ratios: list) -> None:
    """p50 of every approximate index over exact, largest catalogue, fewest clients."""
    one = [r for r in d.get("rows") or [] if r.get("clients") == min((x.get("clients") for x in d["rows"]), default=0)]
    if not one:
        return
    big = max(_nominal(r["items"]) for r in one)
    ex = [r for r in one if _nominal(r["items"]) == big and r["kind"] == "exact"]
    for kd in sorted({r["kind"] for r in one if r["kind"] != "exact"}):
        ap = [r for r in one if _nominal(r["items"]) == big and r["kind"] == kd]
        if ex and ap and ap[0]["p50_ms"] > 0:
            ratios.append(
                (f"HTTP /recommend, {num(big)} items, p50: {kd} over exact", ex[0]["p50_ms"] / ap[0]["p50_ms"], False)
            )


def section_serve_latency(page: Page, ratios: list) -> None:
    d = page.section("Recommendation service over HTTP", "serve_latency.json", "serve_latency.py")
    if d is None:
        return
    page.para(
        f"Model: {d.get('model')} (run `{short(str(d.get('run')))}`); {d.get('requests_per_setting')} requests "
        f"per setting; server torch threads: {d.get('server_torch_threads')}. Catalogues beyond the run's own "
        "items are grown with synthetic items (see bench/serve_latency.py)."
    )
    _latency_table(page, d)
    tr = serve_targets(d)
    if tr:
        page.para("Targets (from the JSON's `targets`, checked here):")
        page.add(*md_table(["target", "goal", "measured", "met?"], tr), "")
    if d.get("added_item"):
        _added_items(page, d["added_item"])
    _http_ratios(d, ratios)
    page.add(*code([short(d.get("command") or "python bench/serve_latency.py")]), "")


def _index_ratios(rs: list[dict], ratios: list) -> None:
    if not rs:
        return
    big = max(r["items"] for r in rs)
    ex = next((r for r in rs if r["items"] == big and r["kind"] == "exact"), None)
    for r in rs:
        if ex and r["items"] == big and r["kind"] != "exact" and r["p50_ms"] > 0:
            ratios.append(
                (f"index alone, {num(big)} items, p50: {r['kind']} over exact", ex["p50_ms"] / r["p50_ms"], False)
            )


def section_serve_index(page: Page, ratios: list) -> None:
    d = page.section("Retrieval index alone", "serve_index.json", "serve_index.py")
    if d is None:
        return
    m, s = machine_of(d), d.get("settings") or {}
    page.para(
        f"In-process `search(one query, k={s.get('k')})` over random clustered vectors (d = {s.get('dim')}, "
        f"{num(s.get('clusters'))} clusters), {s.get('queries')} queries per setting, {m.get('torch_threads')} "
        f'thread(s); FAISS {m.get("faiss")}. Recall@10 against exact search; "mixed": queries between three '
        "cluster centres (harder)."
    )
    rows = []
    for r in d.get("rows") or []:
        settings = ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items() if k != "kind")
        rows.append(
            [
                num(r.get("items")),
                r.get("kind"),
                settings,
                secs(r.get("build_s")),
                f"{r.get('p50_ms', float('nan')):.2f}",
                f"{r.get('p99_ms', float('nan')):.2f}",
                f"{r.get('p99_ms_excl50', float('nan')):.2f}",
                f4(r.get("recall@10")),
                f4(r.get("recall@10_mixed")),
            ]
        )
    page.add(
        *md_table(
            [
                "items",
                "index",
                "settings",
                "build",
                "p50 ms",
                "p99 ms",
                "p99 ms, 50 excluded",
                "recall@10",
                "recall@10 mixed",
            ],
            rows,
            right=(0, 3, 4, 5, 6, 7, 8),
        ),
        "",
    )
    _index_ratios(d.get("rows") or [], ratios)
    inv = "python bench/serve_index.py"
    if s.get("sizes"):
        inv += " --sizes " + " ".join(str(x) for x in s["sizes"])
    if s.get("kinds"):
        inv += " --kinds " + " ".join(s["kinds"])
    page.para("Command (arguments rebuilt from the JSON's settings):")
    page.add(*code([inv]), "")
