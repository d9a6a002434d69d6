"""Serving latency over loopback HTTP: POST /recommend at 1 and 16 concurrent clients, catalogues of
10k, 100k and 1M items, exact search vs FAISS; and how soon an item added through POST /items is
recommended.

The model and its user vectors are real: a trained run (default: the PMMRec fine-tuned on ml-100k
by bench/pmmrec_transfer.py, else any run given with --run); histories are the test users' real
histories. Catalogues larger than the run's are made by appending synthetic items whose vectors
are real item vectors plus Gaussian noise, rescaled to the source item's norm (so FAISS sees a
realistic geometry), added with ``Recommender.add_vectors``: recommendable, not used in histories. Each request is a
real HTTP request (keep-alive connection per client, JSON body, the app served by uvicorn in this
process); latency is measured at the client from sending to the parsed response.

    python bench/serve_latency.py                    # all sizes (about 10 minutes)
    python bench/serve_latency.py --sizes 10000 --requests 100    # a quick look

Writes bench/results/serve_latency.json and prints a table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import threading
import time
from pathlib import Path

import numpy as np

from harness.output import write_result

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = [ROOT / "runs" / "bench" / "pmmrec" / "pmmrec-both-ft-s0", ROOT / "runs" / "demo" / "pmmrec"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The modalrec app under uvicorn in a background thread."""

    def __init__(self, rec):
        import uvicorn

        from modalrec.serve.app import create_app

        self.port = free_port()
        cfg = uvicorn.Config(create_app(rec), host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            if time.time() - t0 > 30:
                raise RuntimeError("the server did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def post(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def load_clients(port: int, histories: list[list[str]], clients: int, requests: int, k: int = 10) -> dict:
    """``requests`` POST /recommend spread over ``clients`` threads; latency per request (ms)."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per = max(1, requests // clients)

    def worker(c: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        try:
            for j in range(per):
                h = histories[(c * per + j) % len(histories)]
                t0 = time.perf_counter()
                status, body = post(conn, "/recommend", {"history": h, "k": k})
                dt = (time.perf_counter() - t0) * 1000
                if status != 200 or len(body.get("items", [])) != k:
                    errors.append(f"{status}: {str(body)[:200]}")
                mine.append(dt)
        finally:
            conn.close()
        with lock:
            lat.extend(mine)

    # warm-up (first requests pay for lazy imports, thread pools and caches)
    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for h in histories[:5]:
        post(warm, "/recommend", {"history": h, "k": k})
    warm.close()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    arr = np.array(lat)
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "mean_ms": float(arr.mean()),
        "throughput_rps": len(lat) / wall,
    }


def grow(rec, n_items: int, seed: int = 0):
    """Add synthetic items (``Recommender.add_vectors``) until the catalogue has ``n_items``."""
    import torch

    base = rec.index.items.float()
    n_real = base.shape[0] - 1
    extra = n_items - n_real
    if extra <= 0:
        return
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, n_real + 1, (extra,), generator=g)
    scale = base[1:].std() * 0.5
    synth = base[src] + scale * torch.randn(extra, base.shape[1], generator=g)
    synth = synth / synth.norm(dim=1, keepdim=True) * base[src].norm(dim=1, keepdim=True)  # real norms
    rec.add_vectors([f"synthetic-{i}" for i in range(extra)], synth, [f"synthetic item {i}" for i in range(extra)])


def add_and_find(rec, port: int, history: list[str], new_id: str, kind: str) -> dict:
    """POST /items a copy of the content (text and image) of the history's best real catalogue item
    under a new id, then POST /recommend the same history over the whole catalogue: the copy scores
    like the original, so it must come back with the same score. The synthetic items (vectors without
    content) may push both below the top 1000 of the grown catalogues: then (rank None) the two are
    compared alone (``include``)."""
    import base64

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        real = [rec._ids[i] for i in range(1, rec._n_trained + 1)]
        top = rec.recommend(history, k=1, include=real)[0].item_id
        item = {"item_id": new_id, "text": rec.item(top).text}
        img = rec.item_image(top)
        if img is not None:
            item["image_base64"] = base64.b64encode(img).decode()
        t0 = time.perf_counter()
        st, _ = post(conn, "/items", {"items": [item]})
        t_add = time.perf_counter() - t0
        st2, after = post(conn, "/recommend", {"history": history, "k": 1000})
        t_seen = time.perf_counter() - t0
        ids = [i["item_id"] for i in after.get("items", [])]
        if new_id not in ids or top not in ids:  # both below the top 1000: compare the two alone
            st2, after = post(conn, "/recommend", {"history": history, "k": 2, "include": [top, new_id]})
    finally:
        conn.close()
    rank = ids.index(new_id) + 1 if new_id in ids else None
    rank_orig = ids.index(top) + 1 if top in ids else None
    score = {i["item_id"]: i["score"] for i in after.get("items", [])}
    same = new_id in score and top in score and abs(score[new_id] - score[top]) <= 1e-3 * abs(score[top])
    return {
        "items": rec.n_items,
        "kind": kind,
        "copied_item": top,
        "add_s": round(t_add, 3),
        "recommended_after_s": round(t_seen, 3),
        "rank": rank,
        "rank_of_original": rank_orig,
        "ok": st == 201 and st2 == 200 and same,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="", help="trained run dir (default: the PMMRec ml-100k fine-tune of the bench)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--kinds", nargs="+", default=["exact", "ivf"], help="exact, ivf, hnsw")
    ap.add_argument("--requests", type=int, default=400, help="requests per (size, kind, clients)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--recall-target", type=float, default=0.95, help="FAISS tuning target (validation users)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_latency.json"))
    args = ap.parse_args()

    import torch

    from modalrec.serve.index import ExactIndex, build_index, recall_at_k
    from modalrec.serve.recommender import Recommender

    torch.set_num_threads(args.threads)
    run = Path(args.run) if args.run else next((p for p in DEFAULT_RUNS if (p / "config.yaml").is_file()), None)
    if run is None:
        raise SystemExit("no trained run found: give --run RUN_DIR (e.g. a `modalrec train` output)")
    load0 = os.getloadavg()
    rows, added = [], []
    for size in args.sizes:
        rec = Recommender.load(run, index="exact")
        ds = rec.dataset
        test = ds.split.test
        histories = [
            [str(ds.catalogue.item_ids[i]) for i in test.sequence(s)[-rec.cfg.model.max_len :]]
            for s in range(len(test))
        ]
        grow(rec, size)
        with torch.no_grad():
            users, _ = rec._users(histories[:200])
        for kind in args.kinds:
            table = rec.index.items  # the current catalogue (items added by the previous kind included)
            exact = ExactIndex(table)
            t0 = time.perf_counter()
            index = build_index(table, kind=kind)  # with room reserved for added items, as serving does
            if hasattr(index, "tune"):  # as Recommender.load does: on validation users (recall: test users)
                index.tune(rec.calibration_users(), target=args.recall_target)
            build_s = time.perf_counter() - t0
            recall = 1.0 if kind == "exact" else recall_at_k(index, exact, users, k=10)
            rec.index = index
            with Server(rec) as srv:
                for clients in args.clients:
                    r = load_clients(srv.port, histories, clients, args.requests)
                    r.update(
                        {
                            "items": rec.n_items,
                            "kind": kind,
                            "build_s": round(build_s, 2),
                            "recall@10": recall,
                            "index": getattr(index, "params", {"kind": "exact"}),
                        }
                    )
                    rows.append(r)
                    print(
                        f"{rec.n_items:>9,} {kind:>6} clients {clients:>2}: p50 {r['p50_ms']:7.1f} ms  "
                        f"p99 {r['p99_ms']:7.1f} ms  {r['throughput_rps']:7.1f} req/s  recall@10 {recall:.3f}"
                        f"  errors {r['errors']}",
                        flush=True,
                    )
                if rec.can_add_items:  # an item added through the API, then recommended without restriction
                    added.append(add_and_find(rec, srv.port, histories[0], f"new-{kind}-{size}", kind))
                    a = added[-1]
                    print(
                        f"{'':>9} {kind:>6} POST /items {a['add_s']:.3f} s, then rank {a['rank']} "
                        f"(original {a['rank_of_original']}) in "
                        f"/recommend after {a['recommended_after_s']:.3f} s (ok={a['ok']})",
                        flush=True,
                    )
        model_name = rec.model_name
        del rec, exact, table
    print("\n| items | index | clients | p50 ms | p99 ms | req/s | recall@10 |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['items']:,} | {r['kind']} | {r['clients']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['throughput_rps']:.1f} | {r['recall@10']:.3f} |"
        )
    out = {
        "run": str(run),
        "model": model_name,
        "rows": rows,
        "added_item": added,
        "requests_per_setting": args.requests,
        "server_torch_threads": args.threads,
        "targets": {
            "exact_100k_p99_ms_1_client": 50,
            "faiss_1m_recall@10": 0.95,
            "faiss_1m_p99_ms": 50,
            "added_item_visible_s": 1.0,
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load0,
            "torch": torch.__version__,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python bench/serve_latency.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out" and v not in ("", None)
        ),
    }
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
