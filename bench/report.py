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
here but formatting (the sections are in bench/reporting/). Files are written atomically.

    python bench/report.py
    python bench/report.py --results bench/results/quick --out docs/results-quick.md --no-readme --quick
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench/reporting, also when this file is loaded by path (the tests)
try:
    import modalrec  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))

from reporting.document import build  # noqa: E402
from reporting.page import Page  # noqa: E402
from reporting.readme import readme_snippet, update_readme, write_page  # noqa: E402
from reporting.results import load_results  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"), help="folder of the benchmark JSON files")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"), help="the page to write")
    ap.add_argument(
        "--img",
        default="",
        help="folder of the plots (default: img/ beside --out; img/<name>/ for a page not called results.md)",
    )
    ap.add_argument("--readme", default=str(ROOT / "README.md"), help="README whose marked block is replaced")
    ap.add_argument("--no-readme", action="store_true", help="leave the README alone")
    ap.add_argument("--no-plots", action="store_true", help="write no PNG")
    ap.add_argument("--quick", action="store_true", help="label the whole page as a quick run")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder, out = Path(args.results), Path(args.out)
    img = Path(args.img) if args.img else out.parent / "img" / ("" if out.stem == "results" else out.stem)
    results, errors = load_results(folder) if folder.is_dir() else ({}, {})
    if not folder.is_dir():
        print(f"{folder}: no such folder; every benchmark is reported as not run", file=sys.stderr)
    page = Page(results, errors, folder, out, img, draw=not args.no_plots)
    text, rows, target = build(page, quick=args.quick)
    write_page(out, text)
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
