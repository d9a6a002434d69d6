"""The service under abuse (serve_abuse.json) and runs under crashes and concurrent writers
(robustness.json), each against the issue's targets."""

from __future__ import annotations

from .fmt import md_table
from .page import Page

ABUSE = "serve_abuse.json"
ROBUST = "robustness.json"


def _ok(good: bool) -> str:
    return "met" if good else "**missed**"


def section_serve_abuse(page: Page) -> None:
    d = page.section("The service under abuse", ABUSE, "serve_abuse.py")
    if d is None:
        return
    heavy, st, storm = d["heavy_content"], d["stalled"], d["storm"]
    wait = heavy["reader_longest_wait_beyond_idle_ms"]
    rows = [
        [
            "heavy request (50 content entries, 12-megapixel images): longest extra wait of a concurrent /recommend",
            "≤ 100 ms",
            f"{wait:.0f} ms (the heavy request took {heavy['heavy_request_s']:.0f} s)",
            _ok(wait <= 100),
        ],
        [
            "image bombs (8 parallel 36-megapixel PNGs)",
            "refused, no crash",
            f"statuses {sorted(set(d['bombs']['statuses']))}",
            _ok(all(s == 422 for s in d["bombs"]["statuses"])),
        ],
        [
            f"{st['opened']:,} stalled uploads: /health answers meanwhile",
            "every check",
            f"{st['health_ok']} of {st['health_checks']} (slowest {st['health_slowest_ms']} ms)",
            _ok(st["health_ok"] == st["health_checks"]),
        ],
        [
            "stalled uploads dropped by the server within the body timeout + 5 s",
            "all",
            f"{st['dropped_by_server']:,} of {st['opened']:,} ({st['answers']})",
            _ok(st["dropped_by_server"] == st["opened"]),
        ],
        [
            f"write storm: 16 readers, 1 writer, {storm['seconds']:.0f} s",
            "0 errors, every added item served",
            f"{storm['errors']} errors; {storm['added_and_served']} of {storm['added']} served",
            _ok(storm["errors"] == 0 and storm["added_and_served"] == storm["added"]),
        ],
        [
            "peak RSS / idle RSS",
            "≤ 1.5",
            f"{d['peak_over_idle']:.2f} ({d['peak_rss_mib']:.0f} / {d['idle']['rss_mib']:.0f} MiB)",
            _ok(d["peak_over_idle"] <= 1.5),
        ],
        [
            f"RSS {d.get('settle_s', 60):.0f} s after the burst / idle",
            "≤ 1.1",
            f"{d['after_over_idle']:.2f}",
            _ok(d["after_over_idle"] <= 1.1),
        ],
        ["5xx or tracebacks in the server log", "0", str(d["server_5xx_in_log"]), _ok(d["server_5xx_in_log"] == 0)],
    ]
    page.add(*md_table(["case", "target", "measured", ""], rows), "")
    page.para(
        f"Idle: RSS {d['idle']['rss_mib']:.0f} MiB after one small content request (before it "
        f"{d['idle'].get('rss_mib_before_warm_up', float('nan')):.0f} MiB), /recommend "
        f"{d['idle']['recommend_ms']:.0f} ms. The idle baseline is taken after that warm-up because the "
        "towers' first run allocates for good."
    )
    _phase_peaks(page, d)


PHASES = {
    "heavy_content": "heavy request",
    "bombs": "image bombs",
    "stalled": "stalled uploads",
    "storm": "write storm",
}


def _phase_peaks(page: Page, d: dict) -> None:
    """Peak RSS of each phase (results written before the bench measured them have none: nothing is shown)."""
    peaks = {name: d[name]["peak_rss_mib"] for name in PHASES if "peak_rss_mib" in d.get(name, {})}
    if not peaks:
        return
    idle = d["idle"]["rss_mib"]
    rows = [
        [PHASES[name], _mib(d[name].get("rss_mib_at_start")), _mib(mib), f"{mib / idle:.2f}"]
        for name, mib in peaks.items()
    ]
    page.para(
        f"Peak RSS of each phase ({d.get('peak_method', 'VmHWM reset before each phase')}); a phase's peak "
        "is never below its RSS at the start, which holds what earlier phases left:"
    )
    page.add(*md_table(["phase", "RSS at the start", "peak RSS", "peak / idle"], rows), "")


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} MiB"


def section_robustness(page: Page) -> None:
    d = page.section("Crashes and concurrent writers", ROBUST, "robustness.py")
    if d is None:
        return
    s = d["summary"]
    rows = [
        [
            "two `train` into one --out at once",
            f"{s['concurrent_train']['trials']} trials",
            f"{s['concurrent_train']['consistent']} consistent, {s['concurrent_train']['clean_errors']} with clean errors",
        ],
        [
            "two `encode` of one feature store at once",
            f"{s['concurrent_encode']['trials']} trials",
            f"{s['concurrent_encode']['identical_store']} stores identical to a single encode",
        ],
        [
            "`kill -9` of train / encode / prepare, then the same command",
            f"{s['kill_9']['trials']} trials ({s['kill_9']['killed']} killed while running)",
            f"{s['kill_9']['recovered']} recovered to identical results",
        ],
    ]
    page.add(*md_table(["case", "trials", "outcome"], rows), "")
