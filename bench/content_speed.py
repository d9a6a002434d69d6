"""Item-content speed: encoding throughput, and the cached + deduplicated training step.

Part A, per tower, side by side in one run (alternating, median of --repeats):
  * pipeline: `encode_text` / `encode_images` into a fresh feature store (tokenising or image
    decoding, length-sorted chunks, fp16 memory map, manifest) over every ml-1m item;
  * raw: the same network forward over the same items in the same batch size, in catalogue order,
    nothing stored (text: tokenise + `tower.model(...)` + mean pool; image: decode + all stages +
    mean pool). ratio = pipeline / raw items/s (target >= 0.8).
Part B, a PMMRec-shaped training step: MiniLM with its top 2 layers trainable, 64 real ml-1m
sequences of 20 items (shorter users left-padded, duplicates as they occur):
  * naive: every one of the 64 x 20 slots through the full tower (padding as an empty text),
    masked mean over real slots per sequence, in-batch softmax against each sequence's last item;
  * cached: the frozen 4 layers come from the feature store (fp16, built once, not timed); the top
    2 layers run once per unique item of the batch; scattered back; the same loss.
  Same loss and gradients (within fp16 tolerance; an fp32 cache shows the rest is rounding);
  speed-up = naive / cached step time (target >= 3x).

    python bench/content_speed.py             # a few minutes on 2 CPU cores
    python bench/content_speed.py --quick
Writes bench/results/content_speed.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.output import write_result

ROOT = Path(__file__).resolve().parents[1]


def _text_raw(tower, texts, batch):
    n = 0
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            ids, mask = tower.tokenize(texts[i : i + batch])
            h = tower.model(input_ids=ids, attention_mask=mask).last_hidden_state
            tower.pool(h, mask)
            n += len(ids)
    return n


def _image_raw(tower, reader, rows, batch):
    size = tower.cfg.image_size
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            imgs, ok = reader.load(rows[i : i + batch], size)
            x = tower.normalise(torch.from_numpy(imgs[ok]))
            tower.pool(tower.top(tower.prefix(x)))
    return len(rows)


def part_a(ds, repeats: int, image_items: int) -> dict:
    from modalrec.content.image import ImageReader, ImageTower
    from modalrec.content.store import encode_images, encode_text
    from modalrec.content.text import TextTower

    cat = ds.catalogue
    out = {}
    tower = TextTower()
    texts = [t for t in cat.text[1:].tolist()]
    times = {"pipeline": [], "raw": []}
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            encode_text(tower, cat.item_ids, cat.text, dataset="bench", root=tmp, batch_size=64, progress=False)
            times["pipeline"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _text_raw(tower, texts, 64)
        times["raw"].append(time.perf_counter() - t0)
    n = len(texts)
    p, raw = statistics.median(times["pipeline"]), statistics.median(times["raw"])
    out["text"] = {
        "tower": "all-MiniLM-L6-v2",
        "items": n,
        "pipeline_s": round(p, 2),
        "raw_s": round(raw, 2),
        "pipeline_items_per_s": round(n / p, 1),
        "raw_items_per_s": round(n / raw, 1),
        "ratio": round(raw / p, 3),
        "all_runs": times,
    }

    itower = ImageTower()
    paths = cat.image_paths if cat.image_paths is not None else None
    if paths is None or not (paths != "").any():
        out["image"] = {"skipped": "no images (prepare with data.posters=true)"}
        return out
    rows = np.flatnonzero(paths != "")[:image_items]
    sub_ids = np.concatenate([["[PAD]"], cat.item_ids[rows]])
    sub_paths = np.concatenate([[""], paths[rows]])
    times = {"pipeline": [], "raw": []}
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            reader = ImageReader(sub_ids, sub_paths)
            t0 = time.perf_counter()
            encode_images(itower, reader, dataset="bench", root=tmp, batch_size=32, progress=False)
            times["pipeline"].append(time.perf_counter() - t0)
        reader = ImageReader(sub_ids, sub_paths)
        t0 = time.perf_counter()
        _image_raw(itower, reader, np.arange(1, len(sub_ids)), 32)
        times["raw"].append(time.perf_counter() - t0)
    n = len(rows)
    p, raw = statistics.median(times["pipeline"]), statistics.median(times["raw"])
    out["image"] = {
        "tower": "efficientnet-lite0",
        "items": int(n),
        "image": "posters rendered from metadata, 224 px",
        "pipeline_s": round(p, 2),
        "raw_s": round(raw, 2),
        "pipeline_items_per_s": round(n / p, 1),
        "raw_items_per_s": round(n / raw, 1),
        "ratio": round(raw / p, 3),
        "all_runs": times,
    }
    return out


def _batch(ds, b: int, l: int, seed: int = 0) -> torch.Tensor:
    """64 real training sequences (last 20 items), a quarter of them shortened to leave padding."""
    rng = np.random.default_rng(seed)
    tr = ds.split.train
    users = rng.choice(len(tr), size=b, replace=False)
    out = np.zeros((b, l), dtype=np.int64)
    for r, u in enumerate(users):
        seq = tr.sequence(u)[-l:]
        if r % 4 == 0:
            seq = seq[-rng.integers(3, l) :]
        out[r, l - len(seq) :] = seq
    return torch.from_numpy(out)


def _loss(vecs: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """vecs [B, L, H]: masked mean of the first L-1 real slots vs the last item, in-batch softmax."""
    real = (items != 0).float()
    hist = (vecs[:, :-1] * real[:, :-1, None]).sum(1) / real[:, :-1].sum(1, keepdim=True).clamp_min(1)
    logits = F.normalize(hist, dim=-1) @ F.normalize(vecs[:, -1], dim=-1).T / 0.1
    return F.cross_entropy(logits, torch.arange(len(items)))


def part_b(ds, steps: int) -> dict:
    from modalrec.content.store import encode_text
    from modalrec.content.text import TextTower, TextTowerConfig

    tower = TextTower(TextTowerConfig(trainable_layers=2, max_tokens=64)).eval()
    params = [p for p in tower.parameters() if p.requires_grad]
    cat = ds.catalogue
    items = _batch(ds, 64, 20)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        feats, _ = encode_text(tower, cat.item_ids, cat.text, dataset="bench", what="prefix", root=tmp, progress=False)
        build_s = time.perf_counter() - t0
        cache = feats.tensor()  # fp16 [N+1, T, H]
        lengths = torch.from_numpy(np.asarray(feats.lengths, dtype=np.int64))
    texts = np.asarray(cat.text, dtype=object)

    def naive():
        flat = items.reshape(-1)
        ids, mask = tower.tokenize([texts[i] if i else "" for i in flat.tolist()])  # padding as an empty text
        v = tower(ids, mask).reshape(*items.shape, -1)
        return v

    def cached(cache_t):
        flat = items.reshape(-1)
        uniq, inv = torch.unique(flat, return_inverse=True)
        real = uniq != 0
        u = uniq[real]
        t = int(lengths[u].max())
        vec = tower.from_cache(cache_t[u, :t], lengths[u])
        table = torch.zeros(len(uniq), vec.shape[1])
        table = table.index_copy(0, torch.nonzero(real).squeeze(1), vec)
        return table[inv].reshape(*items.shape, -1)

    def step(fn, *a):
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        loss = _loss(fn(*a), items)
        loss.backward()
        return time.perf_counter() - t0, loss.item(), [p.grad.clone() for p in params]

    step(naive)  # warm-up
    step(cached, cache)
    tn, tc = [], []
    for _ in range(steps):
        a = step(naive)
        b = step(cached, cache)
        tn.append(a[0])
        tc.append(b[0])
    _, ln, gn = step(naive)
    _, lc, gc = step(cached, cache)
    # fp32 prefix computed on the fly: the cached path then differs from the naive one only by rounding
    u = torch.unique(items[items != 0])
    ids, mask = tower.tokenize([texts[i] for i in u.tolist()])
    cache32 = torch.zeros(cache.shape[0], max(cache.shape[1], ids.shape[1]), cache.shape[2])
    with torch.no_grad():
        cache32[u, : ids.shape[1]] = tower.prefix(ids, mask)
    _, l32, g32 = step(cached, cache32)

    def gdiff(ga, gb):
        num = torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(ga, gb)))
        den = torch.sqrt(sum((x**2).sum() for x in ga))
        return {"max_abs": float(max((x - y).abs().max() for x, y in zip(ga, gb))), "rel_norm": float(num / den)}

    slots = items.numel()
    return {
        "setting": "MiniLM top 2 of 6 layers trainable; 64 ml-1m sequences x 20 slots; in-batch softmax loss",
        "slots": slots,
        "padding_slots": int((items == 0).sum()),
        "unique_items": int(len(u)),
        "naive_step_s": round(statistics.median(tn), 3),
        "cached_step_s": round(statistics.median(tc), 3),
        "speedup": round(statistics.median(tn) / statistics.median(tc), 2),
        "prefix_store_build_s": round(build_s, 1),
        "loss_naive": ln,
        "loss_cached_fp16": lc,
        "loss_cached_fp32": l32,
        "grad_diff_fp16_cache": gdiff(gn, gc),
        "grad_diff_fp32_cache": gdiff(gn, g32),
        "all_naive_s": tn,
        "all_cached_s": tc,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--image-items", type=int, default=512, help="ml-1m posters encoded in part A")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "content_speed.json"))
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.image_items, args.steps = 1, 128, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from modalrec.config import build_config
    from modalrec.data.prepare import load_or_prepare

    ds = load_or_prepare(build_config({}, ["data.dataset=ml-1m", "data.posters=true"]).data, progress=False)
    a = part_a(ds, args.repeats, args.image_items)
    b = part_b(ds, args.steps)
    print("\n| tower | items | pipeline items/s | raw items/s | ratio (target >= 0.8) |")
    print("|---|---|---|---|---|")
    for k, v in a.items():
        if "skipped" in v:
            print(f"| {k} | skipped: {v['skipped']} | | | |")
        else:
            print(
                f"| {k} ({v['tower']}) | {v['items']} | {v['pipeline_items_per_s']} | {v['raw_items_per_s']} | "
                f"{v['ratio']} |"
            )
    print(
        f"\nall {a['text']['items']} ml-1m items with MiniLM (pipeline): {a['text']['pipeline_s']} s (target < 120 s)"
    )
    print(
        f"\ntraining step ({b['setting']}; {b['padding_slots']} padding slots, {b['unique_items']} unique items "
        f"of {b['slots']} slots)"
    )
    print(
        f"  naive {b['naive_step_s']} s   cached+dedup {b['cached_step_s']} s   speed-up {b['speedup']}x (target >= 3x)"
    )
    print(
        f"  loss naive {b['loss_naive']:.6f}  cached(fp16) {b['loss_cached_fp16']:.6f}  "
        f"cached(fp32) {b['loss_cached_fp32']:.6f}"
    )
    print(
        f"  gradients: fp16 cache rel {b['grad_diff_fp16_cache']['rel_norm']:.2e}; "
        f"fp32 cache rel {b['grad_diff_fp32_cache']['rel_norm']:.2e}"
    )
    res = {
        "encoding": a,
        "train_step": b,
        "machine": {
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "note": "the machine may be shared with other jobs; both sides of every ratio run alternately in one process",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    write_result(args.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
