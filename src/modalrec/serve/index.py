"""Retrieval indexes over the item matrix: exact chunked top-k, and FAISS (IVF, HNSW) for huge catalogues.

Row ``i`` of the matrix is item index ``i``; row 0 is the padding item and is never returned. Every
index answers ``search(queries [B, q], k, exclude=None, allowed=None) -> (scores [B, k], indices [B, k])``
with the same conventions:

* results are sorted by descending score, ties broken by the lower item index (deterministic);
* ``exclude``: one collection of item indices per query row (e.g. the user's history), never returned
  for that row; ``allowed``: a bool mask over item indices, only True items may be returned;
* when fewer than ``k`` items are eligible, the missing tail is padded with index ``-1`` and score
  ``-inf`` (an item scored ``-inf`` counts as not eligible);
* scores are float32, indices int64, both on the CPU.

``add(vectors)`` appends items while other threads search: searches read a snapshot of the matrix,
and rows a snapshot can see are never written (see :meth:`Index.add`).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from modalrec.evaluate.scoring import Exclusions, Scorer, exclusions, sort_desc_then_index, top_k
from modalrec.evaluate.scoring import dot as _dot

KINDS = ("auto", "exact", "ivf", "hnsw")
_NEG_INF = float("-inf")
_GROWTH = 1.25  # spare capacity when the matrix has to be reallocated by add()
_MIN_SCAN = 8192  # IVF's default nprobe scans at least about this many vectors


# --------------------------------------------------------------------------------------------
# Input checks shared by every index


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, not {k!r}")
    if k < 1:
        raise ValueError(f"k={k}: must be at least 1")
    return int(k)


def _as_matrix(x, what: str) -> torch.Tensor:
    """A floating 2-D tensor (no copy when ``x`` already is one)."""
    t = torch.as_tensor(x)
    if t.dim() != 2:
        raise ValueError(f"{what} must be a 2-D [rows, dim] matrix, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t.detach()


def _exclusion_pairs(exclude, n_queries: int, n_rows: int, device) -> Exclusions:
    """:class:`Exclusions` of ``exclude`` (one collection of item indices per query row)."""
    if exclude is None:
        return Exclusions.none(device)
    if isinstance(exclude, (torch.Tensor, np.ndarray)) and exclude.ndim == 1:
        raise ValueError(
            "exclude must hold one collection of item indices per query row (a list of "
            "1-D tensors or arrays, or a 2-D [B, L] array), not a single 1-D array"
        )
    if len(exclude) != n_queries:
        raise ValueError(
            f"exclude has {len(exclude)} entries for {n_queries} queries: give one collection "
            "of item indices per query row (an empty one for none)"
        )
    parts = [torch.as_tensor(e if e is not None else [], dtype=torch.long).reshape(-1) for e in exclude]
    cols = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(n_queries), torch.tensor([len(p) for p in parts], dtype=torch.long))
    bad = (cols < 0) | (cols >= n_rows)
    if bool(bad.any()):
        j = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"exclude[{int(rows[j])}] holds item index {int(cols[j])}, outside the index's 0..{n_rows - 1}"
        )
    return exclusions(rows, cols, n_queries, n_rows, device=device)


def _allowed_mask(allowed, n_rows: int, device) -> torch.Tensor | None:
    """Bool [n_rows] (row 0 False) from ``allowed``.

    A mask shorter than the matrix is accepted and its missing tail counts as not allowed: serving
    builds the mask from the catalogue size a moment before searching, while items may be added.
    """
    if allowed is None:
        return None
    a = torch.as_tensor(allowed)
    if a.dtype != torch.bool or a.dim() != 1:
        raise ValueError(
            f"allowed must be a 1-D bool mask over item indices, got dtype {a.dtype} and shape {tuple(a.shape)}"
        )
    if a.numel() > n_rows:
        raise ValueError(
            f"allowed has {a.numel()} entries but the index holds only {n_rows} rows (item indices 0..{n_rows - 1})"
        )
    mask = torch.zeros(n_rows, dtype=torch.bool, device=device)
    mask[: a.numel()] = a.to(device)
    mask[0] = False
    return mask


# --------------------------------------------------------------------------------------------
# Exact chunked top-k


def _exact_topk(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    score: Scorer,
    ex: Exclusions,
    keep: torch.Tensor | None,
    chunk: int,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`modalrec.evaluate.scoring.top_k` padded to the index's convention: CPU [B, k], -inf / -1.

    ``rows`` (sorted item indices without 0): only those items compete; ``keep``: bool mask over item
    indices (only without ``rows``).
    """
    vals, idx = top_k(score, queries, items, k, ex, chunk, keep, rows)
    return _pad(vals.cpu(), idx.cpu(), k)


def _pad(vals: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad [B, <=k] results to [B, k] and mark ineligible (-inf) entries with index -1."""
    B, have = vals.shape
    if have < k:
        vals = torch.cat([vals, torch.full((B, k - have), _NEG_INF)], 1)
        idx = torch.cat([idx, torch.full((B, k - have), -1, dtype=torch.long)], 1)
    idx = torch.where(vals == _NEG_INF, torch.full_like(idx, -1), idx)
    return vals.float(), idx.long()


# --------------------------------------------------------------------------------------------
# Indexes


class Index:
    """What serving needs from an item index: ``search``, ``add``, ``len`` and the item matrix ``items``."""

    def __init__(self, items, scorer: Scorer | None = None):
        t = _as_matrix(items, "items")
        if t.shape[0] < 1:
            raise ValueError("items must hold at least the padding row 0 (shape [N + 1, d])")
        self.scorer = scorer
        self._items = t
        self._buf: torch.Tensor | None = None  # owned storage with spare rows (after the first add)
        self._add_lock = threading.Lock()

    @property
    def items(self) -> torch.Tensor:
        """The current item matrix [N + 1, d] (row 0: padding). Treat it as read-only."""
        return self._items

    @property
    def dim(self) -> int:
        return int(self._items.shape[1])

    def __len__(self) -> int:
        """Number of real items (the padding row is not counted)."""
        return int(self._items.shape[0]) - 1

    def _queries(self, queries, items: torch.Tensor) -> torch.Tensor:
        q = torch.as_tensor(queries)
        if q.dim() != 2:
            raise ValueError(f"queries must be a 2-D [B, d] matrix (one row per user), got shape {tuple(q.shape)}")
        if self.scorer is None and q.shape[1] != items.shape[1]:
            raise ValueError(f"queries have dimension {q.shape[1]} but the item vectors have {items.shape[1]}")
        return q.detach().to(items.device, items.dtype if self.scorer is None else q.dtype)

    def _vectors(self, vectors) -> torch.Tensor:
        v = _as_matrix(vectors, "vectors")
        if v.shape[1] != self._items.shape[1]:
            raise ValueError(
                f"vectors have dimension {v.shape[1]} but the index's item rows have {self._items.shape[1]}"
            )
        return v.to(self._items.device, self._items.dtype)

    def _append(self, v: torch.Tensor) -> torch.Tensor:
        """Append rows to the matrix; returns their indices. Caller holds ``_add_lock``.

        Rows a reader can see are never written: new rows go to spare capacity beyond every
        published view, or into a new buffer, and ``self._items`` is swapped in one assignment.
        """
        cur = self._items
        n, m = cur.shape[0], v.shape[0]
        if self._buf is None or self._buf.shape[0] < n + m:
            cap = max(n + m, int(n * _GROWTH) + 64)
            buf = torch.empty(cap, cur.shape[1], dtype=cur.dtype, device=cur.device)
            buf[:n] = cur
            self._buf = buf
        self._buf[n : n + m] = v
        self._items = self._buf[: n + m]
        return torch.arange(n, n + m, dtype=torch.long)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more rows now, so that the next adds do not copy the matrix (at 1M
        items a copy takes about half a second: the first add would pay it)."""
        with self._add_lock:
            cur = self._items
            n = cur.shape[0]
            if extra > 0 and (self._buf is None or self._buf.shape[0] < n + extra):
                buf = torch.empty(n + int(extra), cur.shape[1], dtype=cur.dtype, device=cur.device)
                buf[:n] = cur
                self._buf, self._items = buf, buf[:n]

    def search(
        self, queries, k: int, exclude: Sequence | None = None, allowed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def add(self, vectors) -> torch.Tensor:
        raise NotImplementedError


class ExactIndex(Index):
    """Exact top-k by ``scorer(queries, items)`` (default: dot product), in item chunks of ``chunk`` rows.

    Memory per search: one ``[B, chunk]`` float32 score block plus a running top-k, whatever N.
    A custom ``scorer`` (e.g. MISSRec's fusion, whose item rows are not plain vectors) receives
    ``[B, q]`` queries and ``[n, d]`` item rows and returns ``[B, n]`` scores; queries then need not
    have the items' width. ``search`` never takes a lock: it reads a snapshot of the matrix, and
    ``add`` never writes a row a snapshot can see (new rows go to spare capacity or a new buffer,
    published by one reference assignment), so adding is safe while other threads search.
    """

    kind = "exact"

    def __init__(self, items, scorer: Scorer | None = None, chunk: int = 65536):
        super().__init__(items, scorer)
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk={chunk!r}: must be a positive integer (items scored per block)")
        self.chunk = int(chunk)

    def search(
        self, queries, k: int, exclude: Sequence | None = None, allowed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items per query row: (scores [B, k] float32, indices [B, k] int64), padded with
        -inf / -1 when fewer than ``k`` items are eligible (see the module docstring)."""
        items = self._items  # snapshot: add() never writes rows visible here
        q = self._queries(queries, items)
        k = _check_k(k)
        n = items.shape[0]
        ex = _exclusion_pairs(exclude, q.shape[0], n, items.device)
        keep = _allowed_mask(allowed, n, items.device)
        rows = None
        if keep is not None and int(keep.sum()) * 4 < n:  # a selective mask: score only the allowed rows
            rows, keep = torch.nonzero(keep).reshape(-1), None
        with torch.no_grad():
            return _exact_topk(q, items, k, self.scorer or _dot, ex, keep, self.chunk, rows)

    def add(self, vectors) -> torch.Tensor:
        """Append item rows ``[n, d]``; returns their new indices (LongTensor [n])."""
        v = self._vectors(vectors)
        with self._add_lock:
            return self._append(v)

    def __repr__(self) -> str:
        return (
            f"ExactIndex({len(self)} items, dim={self.dim}, chunk={self.chunk}, "
            f"scorer={'dot' if self.scorer is None else getattr(self.scorer, '__qualname__', 'custom')})"
        )


# --------------------------------------------------------------------------------------------
# FAISS


def _import_faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "the FAISS indexes (kind 'ivf' or 'hnsw') need the faiss-cpu package: pip install 'modalrec[faiss]'"
        ) from e
    return faiss


def faiss_available() -> bool:
    try:
        _import_faiss()
    except ImportError:
        return False
    return True


class _RWLock:
    """Many readers or one writer; a waiting writer holds off new readers (no starvation). Not re-entrant."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self):
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _rescore(q: torch.Tensor, items: torch.Tensor, cand: torch.Tensor, budget: int = 1 << 22) -> torch.Tensor:
    """Exact dot products of query row b with items ``cand[b]``: [B, C], gathering at most about
    ``budget`` floats at a time."""
    step = max(1, budget // max(1, cand.shape[1] * items.shape[1]))
    return (
        torch.cat(
            [torch.einsum("bd,bcd->bc", q[i : i + step], items[cand[i : i + step]]) for i in range(0, len(cand), step)]
        )
        if len(cand)
        else q.new_zeros(0, cand.shape[1])
    )


class FaissIndex(Index):
    """Approximate maximum-inner-product search with FAISS: ``kind="ivf"`` (IndexIVFFlat) or ``"hnsw"``
    (IndexHNSWFlat).

    IVF reduces inner product to Euclidean search (Bachrach et al., RecSys 2014): every item gets one
    extra coordinate ``sqrt(R^2 - |x|^2)``, with ``R`` the largest item norm at build time, and
    queries get 0, so the nearest items in L2 are exactly the largest dot products. k-means under
    inner product fails on learnt item vectors (measured on PMMRec item vectors, 100k items:
    recall@10 0.30 with an inner-product IVF, 0.98 with the transform at the same ``nprobe``).
    Candidates are re-scored exactly with the float32 matrix, so returned scores are true dot
    products. Items added to an IVF index whose norm exceeds ``R`` cannot be placed that way: they
    are kept aside and scored exactly on every query, then merged (``norm_overflow`` counts them;
    rebuild the index when it grows large).

    IVF: ``nlist`` lists (default ``4 * sqrt(N)``, at most N / 40 so every centroid gets 40
    training points), k-means trained on at most ``train_size`` items (default ``40 * nlist``),
    ``nprobe`` lists scanned per query (default: 1/8 of the lists and enough for about 8k vectors,
    at least 16). ``tune(queries, target)`` raises ``nprobe`` (HNSW: ``ef_search``) until recall@10
    against exact search reaches the target on real queries; serving calls it with user vectors of
    the run's validation histories. Items added later go to the existing lists (no retraining:
    rebuild when the catalogue has changed a lot).
    HNSW (inner-product graph): ``M`` links per node, ``ef_construction`` / ``ef_search`` beam
    widths; on the bench's clustered data the defaults give recall@10 1.0 at 100k items but 0.92 at
    1M: for millions of items prefer IVF (what ``build_index("auto")`` picks) or ``tune``.

    Exclusions and ``allowed`` are applied by over-fetching (``k`` + the largest exclusion list + 1
    for the padding row, scaled up by the share of allowed items, at least ``min_fetch``), doubling
    the fetch for rows that keep fewer than ``k`` survivors. Answered exactly (over the allowed
    items) instead: a row that still lacks survivors when the probed lists are exhausted or the
    fetch would pass ``max_fetch``, and a whole call whose mask is selective (at most
    ``exact_below`` allowed items) or whose first fetch would already pass ``max_fetch``.

    Keeps the float32 item matrix as well (exact re-scoring and fallback, recall checks), so memory
    is about twice the matrix. Searches run concurrently; ``add`` waits for them and blocks new ones
    (FAISS indexes may not be modified while searched). FAISS uses ``torch.get_num_threads()``
    OpenMP threads, read at every call.
    """

    def __init__(
        self,
        items,
        kind: str = "ivf",
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        M: int = 32,
        ef_construction: int = 40,
        ef_search: int = 256,
        train_size: int | None = None,
        seed: int = 0,
        max_fetch: int = 4096,
        min_fetch: int = 32,
        exact_below: int = 20_000,
        chunk: int = 65536,
    ):
        faiss = _import_faiss()
        if kind not in ("ivf", "hnsw"):
            raise ValueError(f"FaissIndex kind={kind!r}: choose 'ivf' or 'hnsw'")
        super().__init__(items, None)
        self._items = self._items.float().cpu().contiguous()
        self._faiss = faiss
        self.kind = kind
        self.max_fetch, self.exact_below, self.chunk = int(max_fetch), int(exact_below), int(chunk)
        self.min_fetch = max(1, int(min_fetch))
        self.recall: dict | None = None  # set by measure_recall / tune
        self._spill = torch.zeros(0, dtype=torch.long)  # items added with a norm above the build-time radius
        self._lock = _RWLock()
        n_real, d = len(self), self.dim
        if n_real < 1:
            raise ValueError("a FAISS index needs at least one item besides the padding row")
        self._threads()
        # IVF: inner product -> L2 by one extra coordinate (see above); HNSW searches inner product directly
        self._radius = float(self._items[1:].norm(dim=1).max()) if kind == "ivf" else math.inf
        x = self._augment(self._items)
        if kind == "ivf":
            d += 1
            if nlist is None:
                nlist = max(1, min(int(round(4 * math.sqrt(n_real))), n_real // 40))
            if not 1 <= nlist <= n_real:
                raise ValueError(f"nlist={nlist}: must be between 1 and the number of items ({n_real})")
            self.nlist = int(nlist)
            quantizer = faiss.IndexFlatL2(d)
            index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_L2)
            index.cp.seed = int(seed)
            train_size = min(n_real, train_size or 40 * self.nlist)
            if train_size < self.nlist:
                raise ValueError(f"train_size={train_size}: IVF needs at least nlist={self.nlist} training items")
            rng = np.random.default_rng(seed)
            sample = (
                np.sort(rng.choice(n_real, size=train_size, replace=False)) + 1
                if train_size < n_real
                else np.arange(1, n_real + 1)
            )
            index.cp.max_points_per_centroid = max(256, -(-train_size // self.nlist))  # no silent resampling
            index.train(np.ascontiguousarray(x[sample]))
            index.add(x)
            self._quantizer = quantizer  # the IVF index does not own it from Python
            if nprobe is None:  # 1/8 of the lists, and at least ~8k vectors (cheaper than any miss)
                nprobe = max(16, self.nlist // 8, math.ceil(self.nlist * _MIN_SCAN / n_real))
            self.nprobe = min(self.nlist, nprobe)
        else:
            index = faiss.IndexHNSWFlat(d, int(M), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(ef_construction)
            self.M, self.ef_construction = int(M), int(ef_construction)
            index.add(x)
            self.ef_search = ef_search
        self._index = index

    # -- search parameters (passed per call, so changing them never races with a search) ----------

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.kind != "ivf":
            raise AttributeError("nprobe applies to kind='ivf' only")
        if not 1 <= int(value) <= self.nlist:
            raise ValueError(f"nprobe={value}: must be between 1 and nlist={self.nlist}")
        p = self._faiss.SearchParametersIVF()
        p.nprobe = int(value)
        self._nprobe, self._params = int(value), p

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise AttributeError("ef_search applies to kind='hnsw' only")
        if int(value) < 1:
            raise ValueError(f"ef_search={value}: must be positive")
        p = self._faiss.SearchParametersHNSW()
        p.efSearch = int(value)
        self._ef_search, self._params = int(value), p

    @property
    def params(self) -> dict:
        """The index's settings, for logs and bench reports."""
        if self.kind == "ivf":
            return {"kind": "ivf", "nlist": self.nlist, "nprobe": self.nprobe}
        return {"kind": "hnsw", "M": self.M, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    def _threads(self) -> None:
        # an OpenMP setting is per calling thread: set it in every thread that calls FAISS
        self._faiss.omp_set_num_threads(max(1, torch.get_num_threads()))

    def _augment(self, x: torch.Tensor) -> np.ndarray:
        """Item rows -> float32 [n, d + 1] with the extra coordinate sqrt(R^2 - |x|^2) (0 when negative);
        unchanged (float32 [n, d]) for HNSW."""
        if self.kind != "ivf":
            return np.ascontiguousarray(x.float().numpy())
        sq = x.float().pow(2).sum(1, keepdim=True)
        extra = (self._radius**2 - sq).clamp(min=0).sqrt()
        return np.ascontiguousarray(torch.cat([x.float(), extra], 1).numpy())

    # -- search ------------------------------------------------------------------------------------

    def search(
        self, queries, k: int, exclude: Sequence | None = None, allowed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Approximate top-``k`` by inner product: (scores [B, k] float32, indices [B, k] int64), padded
        with -inf / -1 when fewer than ``k`` items are eligible (see the module docstring)."""
        k = _check_k(k)
        with self._lock.read():
            items = self._items
            q = self._queries(queries, items).float().contiguous()
            B, n = q.shape[0], items.shape[0]
            ex_rows, ex_cols = _exclusion_pairs(exclude, B, n, "cpu")
            keep = _allowed_mask(allowed, n, "cpu")
            self._threads()
            with torch.no_grad():
                return self._search(q, k, items, ex_rows, ex_cols, keep)

    def _exact(self, q, k, items, ex_rows, ex_cols, keep):
        rows = None if keep is None else torch.nonzero(keep).reshape(-1)
        return _exact_topk(q, items, k, _dot, Exclusions(ex_rows, ex_cols), None, self.chunk, rows)

    def _search(self, q, k, items, ex_rows, ex_cols, keep):
        B, n = q.shape[0], items.shape[0]
        most_ex = int(torch.bincount(ex_rows, minlength=B).max()) if ex_rows.numel() else 0
        want = k + most_ex + 1  # + the padding row
        if keep is not None:
            n_keep = int(keep.sum())
            want = math.ceil(want * (n - 1) / max(n_keep, 1))
            if n_keep <= self.exact_below:
                return self._exact(q, k, items, ex_rows, ex_cols, keep)
        if want > self.max_fetch:  # so deep a fetch costs about as much as exact search
            return self._exact(q, k, items, ex_rows, ex_cols, keep)
        keys = (ex_rows * n + ex_cols).numpy() if ex_rows.numel() else None
        keys = np.unique(keys) if keys is not None else None
        keep_np = keep.numpy() if keep is not None else None
        spill = self._spill
        if spill.numel():  # FAISS ranks these wrongly: drop them from its candidates, score them apart
            keep_np = np.ones(n, dtype=bool) if keep_np is None else keep_np.copy()
            keep_np[spill.numpy()] = False
        approx_rows = np.zeros(B, dtype=bool)
        out_v = torch.full((B, k), _NEG_INF)
        out_i = torch.full((B, k), -1, dtype=torch.long)
        todo = np.arange(B)
        fetch = min(n, max(want, self.min_fetch))
        qa = np.ascontiguousarray((torch.cat([q, q.new_zeros(B, 1)], 1) if self.kind == "ivf" else q).numpy())
        while todo.size:
            _, I = self._index.search(qa[todo], fetch, params=self._params)
            ok = I > 0  # drops FAISS's -1 (nothing found) and the padding row
            if keys is not None:
                ok &= ~np.isin(todo[:, None] * n + I, keys)
            if keep_np is not None:
                ok &= keep_np[np.maximum(I, 0)]
            enough = ok.sum(1) >= k
            if enough.any():
                cand = torch.from_numpy(I[enough]).long().clamp(min=0)
                # exact scores of the candidates; ineligible ones to -inf, then the top k
                d = _rescore(q[torch.from_numpy(todo[enough])], items, cand)
                d[~torch.from_numpy(ok[enough])] = _NEG_INF
                v, i = sort_desc_then_index(d, cand)
                out_v[todo[enough]], out_i[todo[enough]] = v[:, :k], i[:, :k]
                approx_rows[todo[enough]] = True
            short = ~enough
            if not short.any():
                break
            exhausted = (I[short] < 0).any(1) | (fetch >= n) | (2 * fetch > self.max_fetch)
            if exhausted.any():  # the approximate index cannot give more: exact for these rows
                rows = todo[short][exhausted]
                sub = torch.from_numpy(rows)
                m = torch.isin(ex_rows, sub)
                remap = torch.full((B,), -1, dtype=torch.long)
                remap[sub] = torch.arange(len(rows))
                v, i = self._exact(q[sub], k, items, remap[ex_rows[m]], ex_cols[m], keep)
                out_v[sub], out_i[sub] = v, i
            todo = todo[short][~exhausted]
            fetch = min(n, 2 * fetch)
        if spill.numel() and approx_rows.any():
            rows = torch.from_numpy(np.nonzero(approx_rows)[0])
            d = q[rows] @ items[spill].T  # [R, S]
            cols = torch.full((n,), -1, dtype=torch.long)
            cols[spill] = torch.arange(len(spill))
            if ex_rows.numel():  # this query's exclusions that are spill items
                remap = torch.full((B,), -1, dtype=torch.long)
                remap[rows] = torch.arange(len(rows))
                m = (remap[ex_rows] >= 0) & (cols[ex_cols] >= 0)
                d[remap[ex_rows[m]], cols[ex_cols[m]]] = _NEG_INF
            if keep is not None:
                d[:, ~keep[spill]] = _NEG_INF
            v, i = sort_desc_then_index(
                torch.cat([out_v[rows], d], 1), torch.cat([out_i[rows], spill.expand(len(rows), -1)], 1)
            )
            out_v[rows], out_i[rows] = v[:, :k], i[:, :k]
        return out_v, out_i

    # -- add, recall -------------------------------------------------------------------------------

    def add(self, vectors) -> torch.Tensor:
        """Append item rows ``[n, d]`` (into the trained IVF lists / the HNSW graph); returns their indices."""
        v = self._vectors(vectors).contiguous()
        with self._add_lock, self._lock.write():
            self._threads()
            before = self._items
            new = self._append(v)
            long_ = v.float().norm(dim=1) > self._radius * (1 + 1e-6)
            try:
                self._index.add(self._augment(v))
            except BaseException:  # keep FAISS and the matrix in step
                self._items = before
                raise
            if long_.any():
                self._spill = torch.cat([self._spill, new[long_]])
            return new

    @property
    def norm_overflow(self) -> int:
        """How many added items are longer than the build-time radius (scored exactly on every query)."""
        return len(self._spill)

    def measure_recall(self, queries=None, k: int = 10, n: int = 200, seed: int = 0) -> float:
        """Recall@``k`` of this index against exact search; stored in ``self.recall`` for logs.

        ``queries`` default to ``n`` item vectors drawn at random (pass real user vectors when
        available: they are what serving sees).
        """
        items = self._items
        if queries is None:
            g = torch.Generator().manual_seed(seed)
            queries = items[torch.randint(1, items.shape[0], (min(n, len(self)),), generator=g)]
        r = recall_at_k(self, ExactIndex(items, chunk=self.chunk), queries, k)
        self.recall = {"k": k, "recall": r, "queries": int(len(queries)), "items": len(self), **self.params}
        return r

    def tune(self, queries, target: float = 0.95, k: int = 10, max_steps: int = 8) -> float:
        """Double ``nprobe`` (IVF) or ``ef_search`` (HNSW) until recall@``k`` against exact search on
        ``queries`` (real user vectors) reaches ``target``, or the whole index is scanned. Returns the
        recall reached (also in ``self.recall``); never lowers the current setting."""
        if not 0 < target <= 1:
            raise ValueError(f"target={target}: a recall between 0 and 1")
        r = self.measure_recall(queries, k)
        for _ in range(max_steps):
            if r >= target:
                break
            if self.kind == "ivf":
                if self.nprobe >= self.nlist:
                    break
                self.nprobe = min(self.nlist, 2 * self.nprobe)
            else:
                self.ef_search = 2 * self.ef_search
            r = self.measure_recall(queries, k)
        assert self.recall is not None  # measure_recall above recorded it
        self.recall["target"] = target
        return r

    def __repr__(self) -> str:
        return f"FaissIndex({len(self)} items, dim={self.dim}, {self.params})"


# --------------------------------------------------------------------------------------------
# Choosing an index, measuring one


_EXACT_OPTS = {"chunk"}
_FAISS_OPTS = {
    "nlist",
    "nprobe",
    "M",
    "ef_construction",
    "ef_search",
    "train_size",
    "seed",
    "max_fetch",
    "min_fetch",
    "exact_below",
    "chunk",
}


def build_index(
    items, kind: str = "auto", scorer: Scorer | None = None, threshold: int = 200_000, spare: float = 0.05, **opts
) -> Index:
    """The index serving uses: ``"exact"``, ``"ivf"``, ``"hnsw"`` or ``"auto"``.

    ``"auto"`` is exact below ``threshold`` items or with a custom ``scorer``, else IVF when faiss is
    installed (exact with a warning when not). ``opts`` go to the chosen index's constructor (options
    of the other kind are ignored under ``"auto"``). ``spare``: room reserved for items added later
    (share of the catalogue, at least 1024 rows), so that adding does not copy the matrix.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}: choose one of {', '.join(KINDS)}")
    unknown = set(opts) - _FAISS_OPTS - _EXACT_OPTS
    if unknown:
        raise ValueError(
            f"unknown index option(s) {', '.join(sorted(unknown))}: exact takes "
            f"{', '.join(sorted(_EXACT_OPTS))}; ivf/hnsw take {', '.join(sorted(_FAISS_OPTS))}"
        )
    if kind in ("ivf", "hnsw") and scorer is not None:
        raise ValueError(
            f"index kind {kind!r} needs a plain dot-product score, but this model scores with its "
            "own function (e.g. MISSRec's fusion of per-modality cosines); use kind 'exact' or 'auto'"
        )
    items = _as_matrix(items, "items")
    n_real = items.shape[0] - 1
    if kind == "auto":
        if scorer is not None or n_real < threshold:
            kind = "exact"
        elif faiss_available():
            kind = "ivf"
        else:
            warnings.warn(
                f"{n_real} items is above the threshold of {threshold} for an approximate index, "
                "but faiss is not installed: searching exactly (slower). "
                "pip install 'modalrec[faiss]' for FAISS.",
                stacklevel=2,
            )
            kind = "exact"
    index: Index
    if kind == "exact":
        index = ExactIndex(items, scorer, **{k: v for k, v in opts.items() if k in _EXACT_OPTS})
    else:
        index = FaissIndex(items, kind, **{k: v for k, v in opts.items() if k in _FAISS_OPTS})
    if spare > 0:
        index.reserve(max(1024, int(spare * n_real)))
    return index


def recall_at_k(approx: Index, exact: ExactIndex, queries, k: int = 10) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k.

    When a catalogue has fewer than ``k`` items, a row is divided by the number of exact results.
    """
    k = _check_k(k)
    _, a = approx.search(queries, k)
    _, e = exact.search(queries, k)
    valid_e = e >= 0
    hits = ((a[:, :, None] == e[:, None, :]) & valid_e[:, None, :] & (a[:, :, None] >= 0)).any(2).sum(1)
    denom = valid_e.sum(1).clamp(min=1)
    return float((hits.float() / denom.float()).mean()) if len(a) else float("nan")
