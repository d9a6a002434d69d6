"""Retrieval indexes: hand-computed top-k (ties, exclusions, masks, padding), chunking, custom
scorers, adding items while searching, build_index, and FAISS recall against exact search."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
import torch

from modalrec.serve.index import ExactIndex, build_index, recall_at_k

INF = float("-inf")

# --------------------------------------------------------------------------------------------
# Hand-computed cases. Query [1, 0] scores each item by its first coordinate.

ITEMS = torch.tensor(
    [
        [9.0, 9.0],  # 0: padding, the best score of all, never returned
        [1.0, 0.0],  # 1
        [2.0, 0.0],  # 2
        [1.0, 1.0],  # 3
        [2.0, 1.0],  # 4
        [0.5, 3.0],  # 5
        [1.0, 2.0],  # 6
    ]
)
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# query 0 scores: 1:1, 2:2, 3:1, 4:2, 5:0.5, 6:1  -> 2, 4 (tie: lower first), 1, 3, 6, 5
# query 1 scores: 1:0, 2:0, 3:1, 4:1, 5:3, 6:2    -> 5, 6, 3, 4, 1, 2


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 7, 65536])
def test_hand_computed_order_and_ties_lower_index_first(chunk):
    scores, idx = ExactIndex(ITEMS, chunk=chunk).search(Q, 6)
    assert idx.tolist() == [[2, 4, 1, 3, 6, 5], [5, 6, 3, 4, 1, 2]]
    assert scores.tolist() == [[2, 2, 1, 1, 1, 0.5], [3, 2, 1, 1, 0, 0]]
    assert scores.dtype == torch.float32 and idx.dtype == torch.int64


@pytest.mark.parametrize("chunk", [1, 2, 3, 65536])
def test_ties_cut_at_k_keep_the_lower_indices(chunk):
    # three items tie at 1 for query 0 (1, 3, 6); k=3 keeps 2, 4 and the lowest of the tie: 1
    _, idx = ExactIndex(ITEMS, chunk=chunk).search(Q[:1], 3)
    assert idx.tolist() == [[2, 4, 1]]
    _, idx = ExactIndex(ITEMS, chunk=chunk).search(Q[:1], 4)
    assert idx.tolist() == [[2, 4, 1, 3]]
    everything_ties = torch.ones(40, 3)
    _, idx = ExactIndex(everything_ties, chunk=chunk).search(torch.ones(1, 3), 5)
    assert idx.tolist() == [[1, 2, 3, 4, 5]]


def test_exclusions_per_query_row():
    scores, idx = ExactIndex(ITEMS, chunk=2).search(Q, 3, exclude=[torch.tensor([2, 1]), np.array([5, 0])])
    assert idx.tolist() == [[4, 3, 6], [6, 3, 4]]
    assert scores.tolist() == [[2, 1, 1], [2, 1, 1]]
    # a 2-D padded array works too (0 = padding, harmless), and None means nothing to exclude
    _, idx = ExactIndex(ITEMS).search(Q, 2, exclude=torch.tensor([[0, 2], [0, 0]]))
    assert idx.tolist() == [[4, 1], [5, 6]]
    _, idx = ExactIndex(ITEMS).search(Q, 2, exclude=[None, [5]])
    assert idx.tolist() == [[2, 4], [6, 3]]


def test_allowed_mask():
    allowed = torch.tensor([True, True, False, True, False, True, True])  # row 0 "allowed": still never returned
    _, idx = ExactIndex(ITEMS).search(Q, 3, allowed=allowed)
    assert idx.tolist() == [[1, 3, 6], [5, 6, 3]]
    # a mask shorter than the matrix (built before items were added): the tail is not allowed
    _, idx = ExactIndex(ITEMS).search(Q, 2, allowed=torch.tensor([False, False, True, True]))
    assert idx.tolist() == [[2, 3], [3, 2]]
    with pytest.raises(ValueError, match="allowed has 9 entries"):
        ExactIndex(ITEMS).search(Q, 2, allowed=torch.ones(9, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool mask"):
        ExactIndex(ITEMS).search(Q, 2, allowed=torch.ones(7))


@pytest.mark.parametrize("chunk", [1, 3, 65536])
def test_row_0_never_returned_and_fewer_eligible_than_k_is_padded(chunk):
    index = ExactIndex(ITEMS, chunk=chunk)
    scores, idx = index.search(Q, 10)  # 6 real items for k=10
    assert idx[:, 6:].eq(-1).all() and scores[:, 6:].eq(INF).all()
    assert sorted(idx[0, :6].tolist()) == [1, 2, 3, 4, 5, 6]
    assert 0 not in idx.tolist()[0] + idx.tolist()[1]
    scores, idx = index.search(Q, 3, exclude=[[1, 2, 3, 4], [1, 2, 3, 4, 5, 6]])
    assert idx.tolist() == [[6, 5, -1], [-1, -1, -1]]
    assert scores.tolist() == [[1, 0.5, INF], [INF, INF, INF]]
    scores, idx = ExactIndex(ITEMS[:1]).search(Q, 2)  # no real item at all
    assert idx.tolist() == [[-1, -1], [-1, -1]] and len(ExactIndex(ITEMS[:1])) == 0


def _reference(queries, items, k, exclude=None, allowed=None, scorer=None):
    """Full score matrix, masks, then a lexicographic sort (score desc, index asc)."""
    s = (scorer(queries, items) if scorer else queries @ items.T).double().numpy()
    s[:, 0] = -np.inf
    if allowed is not None:
        a = np.zeros(len(items), dtype=bool)
        a[: len(allowed)] = allowed.numpy()
        s[:, ~a] = -np.inf
    for b, ex in enumerate(exclude or []):
        s[b, np.asarray(ex, dtype=np.int64)] = -np.inf
    cols = np.arange(s.shape[1])
    idx = np.stack([np.lexsort((cols, -row))[:k] for row in s])
    top = np.take_along_axis(s, idx, 1)
    return np.where(np.isinf(top), -1, idx)


@pytest.mark.parametrize("chunk", [1, 7, 64, 500, 501, 65536])
def test_chunked_equals_unchunked_on_random_data(chunk):
    """Small-integer vectors: every score is an exact integer whatever the BLAS blocking, so there
    are many exact ties and the order must match the reference exactly."""
    g = torch.Generator().manual_seed(0)
    items = torch.randint(-3, 4, (501, 6), generator=g).float()
    q = torch.randint(-2, 3, (9, 6), generator=g).float()
    q[0] = 0  # every item ties
    exclude = [torch.randint(0, 501, (int(n),), generator=g) for n in torch.randint(0, 40, (9,), generator=g)]
    for allowed in (None, torch.rand(501, generator=g) < 0.6, torch.rand(480, generator=g) < 0.1):
        for k in (1, 10, 300):
            ref = _reference(q, items, k, exclude, allowed)
            scores, idx = ExactIndex(items, chunk=chunk).search(q, k, exclude=exclude, allowed=allowed)
            assert np.array_equal(idx.numpy()[:, : ref.shape[1]], ref), (allowed is None, k)
            full, _ = ExactIndex(items).search(q, k, exclude=exclude, allowed=allowed)
            assert torch.equal(scores, full)
            assert (torch.diff(scores, dim=1).nan_to_num(0.0) <= 0).all()


@pytest.mark.parametrize("chunk", [3, 64, 1000])
def test_chunked_gaussian_data_matches_up_to_float_rounding(chunk):
    """Real-valued scores may differ in the last bit with the BLAS blocking: same scores within
    rounding, same items wherever neighbours are not within rounding of each other."""
    g = torch.Generator().manual_seed(5)
    items, q = torch.randn(3001, 32, generator=g), torch.randn(16, 32, generator=g)
    s1, i1 = ExactIndex(items, chunk=chunk).search(q, 50, exclude=[[5, 6]] * 16)
    s2, i2 = ExactIndex(items).search(q, 50, exclude=[[5, 6]] * 16)
    assert torch.allclose(s1, s2, atol=1e-5)
    gap = torch.diff(s2, dim=1).abs()
    clear = torch.cat([gap[:, :1], torch.minimum(gap[:, 1:], gap[:, :-1]), gap[:, -1:]], 1) > 1e-4
    assert torch.equal(i1[clear], i2[clear]) and clear.float().mean() > 0.9


def test_custom_scorer_with_item_rows_wider_than_queries():
    """Like MISSRec: item rows hold two 4-d parts; the score mixes them (not a dot product)."""
    g = torch.Generator().manual_seed(1)
    items = torch.randn(300, 8, generator=g)
    q = torch.randn(5, 4, generator=g)

    def scorer(users, rows):
        return torch.maximum(users @ rows[:, :4].T, users @ rows[:, 4:].T)

    index = ExactIndex(items, scorer=scorer, chunk=37)
    for k in (1, 10):
        _, idx = index.search(q, k, exclude=[[1, 2, 3]] * 5)
        assert np.array_equal(idx.numpy(), _reference(q, items, k, [[1, 2, 3]] * 5, scorer=scorer))
    got = index.add(torch.randn(2, 8, generator=g))
    assert got.tolist() == [300, 301] and len(index) == 301
    with pytest.raises(ValueError, match="must return \\[queries, items\\]"):
        ExactIndex(items, scorer=lambda u, r: (u @ r[:, :4].T).T).search(q, 3)


def test_scores_are_float32_and_nan_is_an_error():
    index = ExactIndex(ITEMS.double())
    scores, _ = index.search(Q.double(), 2)
    assert scores.dtype == torch.float32
    bad = ITEMS.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ExactIndex(bad).search(Q, 2)


def test_input_errors_name_the_problem():
    index = ExactIndex(ITEMS)
    with pytest.raises(ValueError, match="dimension 3 but the item vectors have 2"):
        index.search(torch.ones(1, 3), 2)
    with pytest.raises(ValueError, match="2-D"):
        index.search(torch.ones(2), 2)
    with pytest.raises(ValueError, match="k=0"):
        index.search(Q, 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        index.search(Q, 2.5)
    with pytest.raises(ValueError, match="exclude has 1 entries for 2 queries"):
        index.search(Q, 2, exclude=[[1]])
    with pytest.raises(ValueError, match=r"exclude\[1\] holds item index 7"):
        index.search(Q, 2, exclude=[[1], [7]])
    with pytest.raises(ValueError, match="vectors have dimension 3"):
        index.add(torch.ones(2, 3))
    with pytest.raises(ValueError, match="2-D"):
        ExactIndex(torch.ones(4))
    with pytest.raises(ValueError, match="chunk"):
        ExactIndex(ITEMS, chunk=0)


def test_add_then_search_finds_new_rows_and_old_snapshots_stay_valid():
    index = ExactIndex(ITEMS.clone())
    before = index.items
    snapshot = before.clone()
    new = index.add(torch.tensor([[5.0, 0.0], [0.0, 5.0]]))
    assert new.tolist() == [7, 8] and len(index) == 8
    _, idx = index.search(Q, 2)
    assert idx.tolist() == [[7, 2], [8, 5]]
    for _ in range(30):  # grow past the spare capacity several times
        index.add(torch.zeros(3, 2))
    assert len(index) == 98 and torch.equal(index.items[:9, :], torch.cat([ITEMS, torch.tensor([[5.0, 0], [0, 5]])]))
    assert torch.equal(before, snapshot)  # what a concurrent search held is unchanged


def test_concurrent_add_and_search_never_raise():
    g = torch.Generator().manual_seed(2)
    index = ExactIndex(torch.randn(2001, 16, generator=g), chunk=256)
    q = torch.randn(4, 16, generator=g)
    errors, stop = [], threading.Event()
    n_adders, adds = 2, 40

    def searcher():
        try:
            while not stop.is_set():
                scores, idx = index.search(q, 20, exclude=[[1, 2]] * 4)
                assert idx.shape == (4, 20) and (idx > 0).all()
                assert (torch.diff(scores, dim=1) <= 0).all()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def adder(seed):
        try:
            gen = torch.Generator().manual_seed(seed)
            for _ in range(adds):
                got = index.add(torch.randn(5, 16, generator=gen))
                assert len(got) == 5
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    searchers = [threading.Thread(target=searcher) for _ in range(3)]
    adders = [threading.Thread(target=adder, args=(s,)) for s in range(n_adders)]
    for t in searchers + adders:
        t.start()
    for t in adders:
        t.join()
    stop.set()
    for t in searchers:
        t.join()
    assert not errors, errors[0]
    assert len(index) == 2000 + n_adders * adds * 5


# --------------------------------------------------------------------------------------------
# build_index, recall_at_k (no FAISS needed)


def test_build_index_choices():
    assert isinstance(build_index(ITEMS), ExactIndex)
    assert isinstance(build_index(ITEMS, kind="exact", chunk=2), ExactIndex)
    # a custom scorer stays exact even above the threshold
    index = build_index(ITEMS, kind="auto", scorer=lambda u, r: u @ r.T, threshold=1)
    assert isinstance(index, ExactIndex) and index.scorer is not None
    for kind in ("ivf", "hnsw"):
        with pytest.raises(ValueError, match="plain dot-product score"):
            build_index(ITEMS, kind=kind, scorer=lambda u, r: u @ r.T)
    with pytest.raises(ValueError, match="unknown index kind 'flat'"):
        build_index(ITEMS, kind="flat")
    with pytest.raises(ValueError, match="unknown index option"):
        build_index(ITEMS, nprob=3)


def test_auto_without_faiss_warns_and_stays_exact(monkeypatch):
    import modalrec.serve.index as mod

    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.warns(UserWarning, match="faiss is not installed"):
        index = build_index(ITEMS, kind="auto", threshold=3)
    assert isinstance(index, ExactIndex)
    with pytest.raises(ImportError, match=r"pip install 'modalrec\[faiss\]'"):
        mod.FaissIndex(ITEMS, "ivf")


def test_recall_at_k():
    exact = ExactIndex(ITEMS)
    assert recall_at_k(exact, exact, Q, k=3) == 1.0

    class Shifted:  # returns the exact ranks 2..4 instead of 1..3: 2 of 3 right
        def search(self, queries, k, exclude=None, allowed=None):
            s, i = exact.search(queries, k + 1)
            return s[:, 1:], i[:, 1:]

    assert recall_at_k(Shifted(), exact, Q, k=3) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------
# FAISS


def clustered(n: int, d: int, n_clusters: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(items [n + 1, d] with a zero padding row, 200 queries) from one mixture of unit-norm clusters."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_clusters, d, generator=g), dim=1)

    def draw(m):
        x = centres[torch.randint(0, n_clusters, (m,), generator=g)] + torch.randn(m, d, generator=g) / d**0.5
        return torch.nn.functional.normalize(x, dim=1)

    return torch.cat([torch.zeros(1, d), draw(n)]), draw(200)


@pytest.fixture(scope="module")
def faiss_data():
    pytest.importorskip("faiss")
    items, queries = clustered(20_000, 64, 200, seed=0)
    from modalrec.serve.index import FaissIndex

    # exact_below=1000: masks of 1000+ allowed items go through over-fetching, not exact search
    return (
        items,
        queries,
        ExactIndex(items),
        {kind: FaissIndex(items, kind, exact_below=1000) for kind in ("ivf", "hnsw")},
    )


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_recall_at_10(faiss_data, kind):
    items, queries, exact, indexes = faiss_data
    index = indexes[kind]
    r = recall_at_k(index, exact, queries, k=10)
    assert r >= 0.95, (kind, r, index.params)
    assert index.measure_recall(k=10, n=100) >= 0.95
    assert index.recall["k"] == 10 and index.recall["kind"] == kind and index.recall["queries"] == 100
    scores, idx = index.search(queries[:3], 10)
    assert scores.dtype == torch.float32 and idx.dtype == torch.int64
    assert (torch.diff(scores, dim=1) <= 0).all()
    assert torch.allclose(scores, (queries[:3, None, :] * items[idx]).sum(-1), atol=1e-4)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_exclusions_and_allowed(faiss_data, kind):
    items, queries, exact, indexes = faiss_data
    index, q = indexes[kind], queries[:8]
    _, top = exact.search(q, 30)
    exclude = [top[b, : 5 + 3 * b] for b in range(len(q))]  # drop each row's best 5..26 items
    _, idx = index.search(q, 10, exclude=exclude)
    assert (idx > 0).all()
    for b in range(len(q)):
        assert not set(idx[b].tolist()) & set(exclude[b].tolist())
    _, want = exact.search(q, 10, exclude=exclude)
    hits = sum(len(set(a) & set(w)) for a, w in zip(idx.tolist(), want.tolist()))
    assert hits / want.numel() >= 0.9
    g = torch.Generator().manual_seed(3)
    for share in (0.5, 0.002):  # over-fetching, and a selective mask answered exactly
        allowed = torch.rand(len(items), generator=g) < share
        _, idx = index.search(q, 10, exclude=exclude, allowed=allowed)
        assert allowed[idx[idx > 0]].all() and (idx > 0).all()
        for b in range(len(q)):
            assert not set(idx[b].tolist()) & set(exclude[b].tolist())
        if share < 0.01:
            assert torch.equal(idx, exact.search(q, 10, exclude=exclude, allowed=allowed)[1])


class _CountingSearch:
    """Wraps a FAISS index and records the k of every search call."""

    def __init__(self, inner):
        self.inner, self.fetches = inner, []

    def search(self, x, k, **kw):
        self.fetches.append(k)
        return self.inner.search(x, k, **kw)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_refetches_until_enough_survive_then_goes_exact(faiss_data, kind, monkeypatch):
    items, queries, exact, indexes = faiss_data
    index, q = indexes[kind], queries[:4]
    spy = _CountingSearch(index._index)
    monkeypatch.setattr(index, "_index", spy)
    monkeypatch.setattr(index, "min_fetch", 1)  # first fetch = k + 1, so that it finds none
    _, top = exact.search(q, 40)
    allowed = torch.ones(len(items), dtype=torch.bool)
    allowed[top.reshape(-1)] = False  # the best 40 of every query are not allowed: the first fetch finds none
    _, idx = index.search(q, 10, allowed=allowed)
    assert len(spy.fetches) >= 3 and spy.fetches[1] == 2 * spy.fetches[0]
    assert allowed[idx].all() and (idx > 0).all()
    _, want = exact.search(q, 10, allowed=allowed)
    assert sum(len(set(a) & set(w)) for a, w in zip(idx.tolist(), want.tolist())) >= 0.9 * want.numel()
    spy.fetches.clear()
    monkeypatch.setattr(index, "max_fetch", 32)  # 10 + 40 excluded + 1 > 32: exact from the start
    exclude = [t for t in top]
    _, idx = index.search(q, 10, exclude=exclude)
    assert spy.fetches == [] and torch.equal(idx, exact.search(q, 10, exclude=exclude)[1])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_small_catalogue_row_0_add_and_padding(kind):
    pytest.importorskip("faiss")
    from modalrec.serve.index import FaissIndex

    items, _ = clustered(60, 8, 4, seed=1)
    items[0] = 100.0  # the padding row would win every query
    index = FaissIndex(items, kind)
    q = items[1:4].clone()
    scores, idx = index.search(q, 70)  # more than the 60 real items
    assert (idx[:, :60] > 0).all() and idx[:, 60:].eq(-1).all() and scores[:, 60:].eq(INF).all()
    assert sorted(idx[0, :60].tolist()) == list(range(1, 61))
    new = index.add(5 * q[:1])
    assert new.tolist() == [61] and len(index) == 61 and index.items.shape == (62, 8)
    _, idx = index.search(q[:1], 1)
    assert idx.tolist() == [[61]]
    with pytest.raises(ValueError, match="dimension 3"):
        index.search(torch.ones(1, 3), 2)
    with pytest.raises(ValueError, match="k=0"):
        index.search(q, 0)


def test_faiss_concurrent_add_and_search():
    pytest.importorskip("faiss")
    from modalrec.serve.index import FaissIndex

    items, queries = clustered(3000, 16, 30, seed=2)
    errors = []
    for kind in ("ivf", "hnsw"):
        index = FaissIndex(items, kind)
        stop = threading.Event()

        def searcher():
            try:
                while not stop.is_set():
                    _, idx = index.search(queries[:4], 10, exclude=[[1, 2]] * 4)
                    assert (idx > 0).all()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        def adder():
            try:
                for s in range(20):
                    index.add(clustered(5, 16, 30, seed=100 + s)[0][1:])
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=searcher) for _ in range(2)] + [threading.Thread(target=adder)]
        for t in threads:
            t.start()
        threads[-1].join()
        stop.set()
        for t in threads[:-1]:
            t.join()
        assert len(index) == 3000 + 100 and index._index.ntotal == 3101
    assert not errors, errors[0]


def test_faiss_with_a_custom_scorer_is_refused():
    pytest.importorskip("faiss")
    with pytest.raises(ValueError, match="plain dot-product score"):
        build_index(ITEMS, kind="ivf", scorer=lambda u, r: u @ r.T)
    index = build_index(clustered(500, 8, 5, seed=3)[0], kind="auto", threshold=100)
    assert type(index).__name__ == "FaissIndex" and index.kind == "ivf"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_faiss_inner_product_with_uneven_norms(kind):
    """Uneven item norms and queries off the item cloud (IVF searches them through the L2 reduction,
    with a radius from the longest item): recall holds and the scores are the exact dot products."""
    pytest.importorskip("faiss")
    from modalrec.serve.index import FaissIndex

    g = torch.Generator().manual_seed(3)
    items, queries = clustered(20_000, 32, 100, seed=3)
    items[1:] *= 0.5 + 2 * torch.rand(20_000, 1, generator=g)  # norms 0.5 .. 2.5
    queries = queries * 4 + 2 * torch.randn(1, 32, generator=g)  # shifted off the item cloud
    exact = ExactIndex(items)
    index = FaissIndex(items, kind)
    assert recall_at_k(index, exact, queries, 10) >= 0.9
    s, i = index.search(queries[:5], 10)
    assert torch.allclose(s, (queries[:5, None, :] * items[i]).sum(-1), atol=1e-4)


def test_faiss_tune_raises_nprobe_until_target():
    pytest.importorskip("faiss")
    from modalrec.serve.index import FaissIndex

    items, queries = clustered(20_000, 32, 100, seed=4)
    index = FaissIndex(items, "ivf", nprobe=1)
    before = index.measure_recall(queries)
    reached = index.tune(queries, target=0.97)
    assert before < 0.97 <= reached and index.nprobe > 1
    assert index.recall["recall"] == reached and index.recall["target"] == 0.97
    assert index.tune(queries, target=0.5) == reached  # never lowers nprobe
    with pytest.raises(ValueError, match="target"):
        index.tune(queries, target=1.5)


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_build_index_reserves_room_so_adds_do_not_copy(kind):
    if kind == "ivf":
        pytest.importorskip("faiss")
    items, queries = clustered(2_000, 16, 10, seed=5)
    index = build_index(items, kind=kind, spare=0.5)
    buf = index._buf
    assert buf is not None and buf.shape[0] >= 2_001 + 1_024
    rows = [int(index.add(queries[i : i + 1])[0]) for i in range(5)]
    assert index._buf is buf and rows == list(range(2_001, 2_006))  # same storage: nothing copied
    _, idx = index.search(queries[:5], 1)
    assert idx[:, 0].tolist() == rows
