"""Preparation: dedup, k-core, ordering, splits (exact contents on hand-made data), cache."""

from __future__ import annotations

import numpy as np
import pytest

from modalrec.config import DataConfig, InteractionsSpec, ItemsSpec
from modalrec.data import prepare as prep
from modalrec.data.dataset import PreparedDataset
from modalrec.data.prepare import TIE_BREAK, load_or_prepare, prepare, resolve_source
from modalrec.data.tables import DataError

NO_FILTER = dict(min_user_inter=0, min_item_inter=0, min_seq_len=1, cache=False)


def write_events(path, rows, header="user_id,item_id,timestamp"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def cfg_for(path, items=None, **kw) -> DataConfig:
    cfg = DataConfig(interactions=InteractionsSpec(path=str(path)), **kw)
    if items is not None:
        cfg.items = items
    return cfg


def seqs(ds: PreparedDataset) -> dict[str, list[str]]:
    """user raw id -> raw item ids in order."""
    ids = ds.catalogue.item_ids
    return {ds.user_ids[u]: ids[ds.items[ds.offsets[u] : ds.offsets[u + 1]]].tolist() for u in range(ds.n_users)}


# --------------------------------------------------------------------------------- filtering


def test_dedup_modes(tmp_path):
    # user 1 sees a at t=1 and again at t=3 (the later row comes first in the file)
    p = write_events(tmp_path / "e.csv", [(1, "a", 3), (1, "b", 2), (1, "a", 1), (1, "c", 4)])
    first = prepare(cfg_for(p, split="time", dedup="first", **NO_FILTER), progress=False)
    assert seqs(first) == {"1": ["a", "b", "c"]}
    assert first.timestamps.tolist() == [1, 2, 4]
    assert first.meta["stats"]["removed_dedup"] == 1
    last = prepare(cfg_for(p, split="time", dedup="last", **NO_FILTER), progress=False)
    assert seqs(last) == {"1": ["b", "a", "c"]}
    none = prepare(cfg_for(p, split="time", dedup="none", **NO_FILTER), progress=False)
    assert seqs(none) == {"1": ["a", "b", "a", "c"]}
    assert none.meta["stats"]["removed_dedup"] == 0


def test_iterative_kcore(tmp_path):
    rows = [
        (1, "a"),
        (1, "b"),
        (1, "c"),
        (1, "d"),
        (2, "a"),
        (2, "b"),
        (2, "c"),
        (3, "a"),
        (3, "b"),
        (3, "e"),
        (4, "e"),
        (4, "f"),
    ]
    p = write_events(tmp_path / "e.csv", [(u, i, t) for t, (u, i) in enumerate(rows)])
    cfg = cfg_for(p, split="time", min_user_inter=2, min_item_inter=2, min_seq_len=1, cache=False)
    ds = prepare(cfg, progress=False)
    # round 1 drops d, f; round 2 drops user 4 (1 event left); round 3 drops e (1 event left)
    assert seqs(ds) == {"1": ["a", "b", "c"], "2": ["a", "b", "c"], "3": ["a", "b"]}
    assert ds.meta["stats"]["removed_kcore"] == 4
    assert ds.meta["stats"]["kcore_rounds"] == 4
    assert ds.catalogue.item_ids.tolist() == ["[PAD]", "a", "b", "c"]


def test_kcore_can_be_disabled_and_everything_removed_is_an_error(tmp_path):
    p = write_events(tmp_path / "e.csv", [(1, "a", 1), (1, "b", 2), (2, "c", 3)])
    ds = prepare(cfg_for(p, split="time", **NO_FILTER), progress=False)
    assert ds.n_users == 2 and ds.n_items == 3
    with pytest.raises(DataError, match="no interactions remain"):
        prepare(cfg_for(p, min_user_inter=5, cache=False), progress=False)


def test_max_seq_len_keeps_most_recent_and_min_seq_len(tmp_path):
    rows = [(1, f"i{t}", t) for t in (5, 1, 4, 2, 3)] + [(2, "i1", 1), (2, "i2", 2)]
    p = write_events(tmp_path / "e.csv", rows)
    ds = prepare(cfg_for(p, split="time", max_seq_len=3, **NO_FILTER), progress=False)
    assert seqs(ds) == {"1": ["i3", "i4", "i5"], "2": ["i1", "i2"]}
    assert ds.meta["stats"]["removed_max_seq_len"] == 2
    ds = prepare(
        cfg_for(p, split="time", max_seq_len=3, min_user_inter=0, min_item_inter=0, min_seq_len=3, cache=False),
        progress=False,
    )
    assert seqs(ds) == {"1": ["i3", "i4", "i5"]}
    assert ds.meta["stats"]["removed_min_seq_len"] == 2
    # loo needs 3 events per user whatever min_seq_len says
    ds = prepare(cfg_for(p, split="loo", **NO_FILTER), progress=False)
    assert ds.user_ids.tolist() == ["1"] and ds.meta["stats"]["min_seq_len_applied"] == 3


def test_tie_break_is_file_order(tmp_path):
    p = write_events(tmp_path / "e.csv", [(1, "x", 100), (1, "y", 100), (1, "z", 50), (1, "w", 100)])
    ds = prepare(cfg_for(p, split="time", **NO_FILTER), progress=False)
    assert seqs(ds) == {"1": ["z", "x", "y", "w"]}
    q = write_events(tmp_path / "f.csv", [(1, "w", 100), (1, "y", 100), (1, "z", 50), (1, "x", 100)])
    assert seqs(prepare(cfg_for(q, split="time", **NO_FILTER), progress=False)) == {"1": ["z", "w", "y", "x"]}
    assert "file order" in ds.meta["tie_break"] and ds.meta["tie_break"] == TIE_BREAK
    assert "stable" in prep.prepare.__doc__


def test_id_order_numeric_or_lexicographic(tmp_path):
    rows = [("10", "b", 1), ("9", "a", 2), ("2", "10", 3), ("10", "a", 4)]
    p = write_events(tmp_path / "e.csv", rows)
    ds = prepare(cfg_for(p, split="time", **NO_FILTER), progress=False)
    assert ds.user_ids.tolist() == ["2", "9", "10"]  # all integers: numeric order
    assert ds.catalogue.item_ids.tolist() == ["[PAD]", "10", "a", "b"]  # mixed: lexicographic
    assert ds.offsets.dtype == np.int64 and ds.items.dtype == np.int32 and ds.timestamps.dtype == np.int64


# --------------------------------------------------------------------------------- splits


def test_loo_split_exact_and_shared(tmp_path):
    p = write_events(tmp_path / "e.csv", [(1, 1, 1), (1, 2, 2), (2, 3, 1), (1, 3, 3), (2, 1, 2), (1, 4, 4), (2, 2, 3)])
    ds = prepare(cfg_for(p, split="loo", **NO_FILTER), progress=False)
    assert ds.items.tolist() == [1, 2, 3, 4, 3, 1, 2]
    assert ds.offsets.tolist() == [0, 4, 7]
    sp = ds.split
    assert sp.kind == "loo"
    assert sp.train.start.tolist() == [0, 4] and sp.train.end.tolist() == [2, 5]
    assert sp.valid.start.tolist() == [0, 4] and sp.valid.end.tolist() == [2, 5]
    assert sp.valid.targets.tolist() == [3, 1]
    assert sp.test.start.tolist() == [0, 4] and sp.test.end.tolist() == [3, 6]
    assert sp.test.targets.tolist() == [4, 2]
    assert sp.train.users.tolist() == [0, 1]
    assert sp.train.items is ds.items and sp.valid.items is ds.items and sp.test.items is ds.items
    # a save/load round trip keeps the sharing and the contents
    ds.save(tmp_path / "saved")
    back = PreparedDataset.load(tmp_path / "saved")
    assert back.split.test.items is back.items
    assert back.split.test.targets.tolist() == [4, 2]


def test_time_split_exact(tmp_path):
    rows = [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u1", "c", 3),
        ("u1", "d", 10),
        ("u1", "e", 11),
        ("u2", "a", 4),
        ("u2", "b", 12),
        ("u3", "c", 5),
        ("u3", "d", 6),
        ("u3", "e", 13),
        ("u4", "a", 14),
        ("u4", "c", 15),
    ]
    p = write_events(tmp_path / "e.csv", rows)
    ds = prepare(cfg_for(p, split="time", time_cut=0.5, **NO_FILTER), progress=False)
    assert ds.meta["split"]["t_cut"] == 8.0
    assert ds.offsets.tolist() == [0, 5, 7, 10, 12]
    sp = ds.split
    # u1: pre-cut a b c -> train [a b], valid target c, test target d after [a b c]
    # u2: one pre-cut event -> no training sequence, hence no valid/test; u4: none before the cut
    # u3: pre-cut c d -> train [c], valid target d, test target e after [c d]
    assert sp.train.users.tolist() == [0, 2]
    assert sp.train.start.tolist() == [0, 7] and sp.train.end.tolist() == [2, 8]
    assert sp.valid.users.tolist() == [0, 2] and sp.valid.end.tolist() == [2, 8]
    assert sp.valid.targets.tolist() == [3, 4]
    assert sp.test.users.tolist() == [0, 2]
    assert sp.test.start.tolist() == [0, 7] and sp.test.end.tolist() == [3, 9]
    assert sp.test.targets.tolist() == [4, 5]
    assert sp.train.items is ds.items and sp.test.items is ds.items


def test_cold_split_exact(tmp_path):
    rows = [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u1", "e", 9),
        ("u1", "c", 10),
        ("u1", "d", 11),
        ("u2", "a", 3),
        ("u2", "c", 4),
        ("u2", "b", 5),
        ("u3", "d", 12),
        ("u3", "a", 13),
        ("u3", "b", 14),
        ("u4", "e", 8),
        ("u4", "a", 15),
        ("u4", "b", 16),
    ]
    p = write_events(tmp_path / "e.csv", rows)
    ds = prepare(cfg_for(p, split="cold", cold_item_ratio=0.4, **NO_FILTER), progress=False)
    # first seen: a 1, b 2, c 4, e 8, d 11 -> the newest 40% (2 items) are d and e
    assert ds.meta["cold_items"] == [4, 5]
    assert ds.items.tolist() == [1, 2, 5, 3, 4, 1, 3, 2, 4, 1, 2, 5, 1, 2]
    sp = ds.split
    assert sp.train.items.tolist() == [1, 2, 3, 1, 3, 2, 1, 2, 1, 2]  # warm events only
    assert sp.train.items is not ds.items and sp.valid.items is sp.train.items
    assert sp.train.start.tolist() == [0, 3, 6, 8] and sp.train.end.tolist() == [2, 5, 7, 9]
    assert sp.valid.targets.tolist() == [3, 2, 2, 2]
    # test: only u1 has a cold event with warm history before it
    assert sp.test.items is ds.items
    assert sp.test.users.tolist() == [0]
    assert sp.test.start.tolist() == [0] and sp.test.end.tolist() == [2] and sp.test.targets.tolist() == [5]
    assert not ds.seen_in_train()[[4, 5]].any()


def test_split_invariants_on_synthetic():
    for split in ("loo", "time", "cold"):
        ds = prepare(DataConfig(dataset="synthetic", split=split, cache=False), progress=False)
        sp = ds.split
        for s in (sp.train, sp.valid, sp.test):
            assert (s.end >= s.start).all() and s.start.dtype == np.int64 and s.users.dtype == np.int32
        assert (sp.train.lengths >= 1).all()
        for s in (sp.valid, sp.test):
            assert (s.lengths >= 1).all() and s.targets.dtype == np.int32 and (s.targets >= 1).all()
        # histories end right before their target in the user's full sequence (test) / warm sequence
        pos = sp.test.end
        assert (ds.items[pos] == sp.test.targets).all()
        if split == "cold":
            cold = np.zeros(ds.n_items + 1, bool)
            cold[ds.meta["cold_items"]] = True
            assert not cold[sp.train.items].any() and cold[sp.test.targets].all()


# --------------------------------------------------------------------------------- sources


def test_items_unknown_and_drop(tmp_path):
    p = write_events(tmp_path / "e.csv", [(1, 1, 1), (1, 2, 2), (1, 9, 3), (1, 3, 4)])
    (tmp_path / "i.csv").write_text("item_id,title\n1,One\n2,Two\n3,Three\n")
    items = ItemsSpec(path=str(tmp_path / "i.csv"), text_fields=["title"])
    with pytest.raises(DataError, match=r"1 interaction\(s\) reference 1 item id\(s\).*'9'"):
        prepare(cfg_for(p, items, **NO_FILTER), progress=False)
    ds = prepare(cfg_for(p, items, drop_unknown_items=True, **NO_FILTER), progress=False)
    assert ds.meta["stats"]["dropped_unknown_items"] == 1
    assert ds.catalogue.text.tolist() == ["", "One", "Two", "Three"]
    assert ds.catalogue.image_paths is None


def test_no_items_spec_gives_empty_text(tmp_path):
    p = write_events(tmp_path / "e.csv", [(1, 5, 1), (1, 6, 2), (1, 7, 3)])
    ds = prepare(cfg_for(p, **NO_FILTER), progress=False)
    assert ds.catalogue.item_ids.tolist() == ["[PAD]", "5", "6", "7"]
    assert ds.catalogue.text.tolist() == ["", "", "", ""]


def test_yaml_spec_with_relative_paths(tmp_path):
    d = tmp_path / "myset"
    (d / "img").mkdir(parents=True)
    (d / "img" / "2.png").write_bytes(b"x")
    write_events(d / "events.tsv", [(1, 1, 1), (1, 2, 2), (1, 3, 3)], header="u\ti\tt")
    (d / "events.tsv").write_text((d / "events.tsv").read_text().replace(",", "\t"))
    (d / "items.jsonl").write_text('{"id": 1, "name": "A"}\n{"id": 2, "name": "B"}\n{"id": 3, "name": "C"}\n')
    (d / "spec.yaml").write_text(
        "name: mine\ninteractions: {path: events.tsv, user_col: u, item_col: i, time_col: t}\n"
        "items: {path: items.jsonl, item_col: id, text_template: 'Item {name}', image_dir: img}\n"
    )
    ds = prepare(DataConfig(dataset=str(d / "spec.yaml"), **NO_FILTER), progress=False)
    assert ds.name == "mine"
    assert ds.catalogue.text.tolist() == ["", "Item A", "Item B", "Item C"]
    assert ds.catalogue.image_paths.tolist() == ["", "", str((d / "img" / "2.png").resolve()), ""]
    assert ds.meta["source"]["kind"] == "yaml"
    (d / "bad.yaml").write_text("interactions: {path: events.tsv, usr_col: u}\n")
    with pytest.raises(DataError, match=r"bad\.yaml.*usr_col"):
        prepare(DataConfig(dataset=str(d / "bad.yaml")), progress=False)


def test_atomic_folder_source(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "tiny.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t1\t1\n1\t2\t2\n1\t3\t3\n")
    (d / "tiny.item").write_text("item_id:token\ttitle:token\tgenre:token_seq\n1\tA\tx y\n2\tB\t\n3\tC\tz\n")
    ds = prepare(DataConfig(dataset=str(d), **NO_FILTER), progress=False)
    assert ds.name == "tiny"
    assert ds.catalogue.text.tolist() == ["", "A. x, y", "B", "C. z"]
    with pytest.raises(DataError, match="neither a built-in"):
        resolve_source(DataConfig(dataset="no-such-thing"))
    with pytest.raises(DataError, match="expected RecBole atomic files"):
        resolve_source(DataConfig(dataset=str(tmp_path)))


# --------------------------------------------------------------------------------- cache


@pytest.fixture
def small(tmp_path):
    rows = [(u, i, t) for u in range(1, 6) for t, i in enumerate(range(u, u + 6))]
    return write_events(tmp_path / "e.csv", rows)


def _count_builds(monkeypatch):
    calls = []
    real = prep.prepare_frames

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(prep, "prepare_frames", counting)
    return calls


def test_cache_hit_and_miss(small, tmp_path, monkeypatch):
    calls = _count_builds(monkeypatch)
    cfg = cfg_for(small, min_user_inter=0, min_item_inter=0)
    a = load_or_prepare(cfg, progress=False)
    b = load_or_prepare(cfg, progress=False)
    assert len(calls) == 1 and a.meta["key"] == b.meta["key"]
    assert np.array_equal(a.items, b.items) and b.split.train.items is b.items
    from modalrec.utils import modalrec_home  # isolated per test by conftest

    assert (modalrec_home() / "prepared" / f"e-{a.meta['key']}" / "manifest.json").is_file()
    # another option -> another key
    c = load_or_prepare(cfg_for(small, min_user_inter=0, min_item_inter=0, split="time"), progress=False)
    assert len(calls) == 2 and c.meta["key"] != a.meta["key"]
    # same options, changed content -> rebuilt
    small.write_text(small.read_text() + "9,1,100\n9,2,101\n9,3,102\n")
    d = load_or_prepare(cfg, progress=False)
    assert len(calls) == 3 and d.meta["key"] != a.meta["key"] and d.n_users == 6
    # explicit cache_dir
    e = load_or_prepare(cfg, cache_dir=tmp_path / "c", progress=False)
    assert (tmp_path / "c" / f"e-{e.meta['key']}").is_dir() and len(calls) == 4


def test_cache_false_never_writes(small, monkeypatch):
    from modalrec.utils import modalrec_home

    calls = _count_builds(monkeypatch)
    cfg = cfg_for(small, min_user_inter=0, min_item_inter=0, cache=False)
    load_or_prepare(cfg, progress=False)
    load_or_prepare(cfg, progress=False)
    assert len(calls) == 2 and not (modalrec_home() / "prepared").exists()


def test_corrupt_cache_is_rebuilt(small, tmp_path, monkeypatch):
    calls = _count_builds(monkeypatch)
    cfg = cfg_for(small, min_user_inter=0, min_item_inter=0)
    a = load_or_prepare(cfg, cache_dir=tmp_path / "c", progress=False)
    folder = tmp_path / "c" / f"e-{a.meta['key']}"
    (folder / "arrays.npz").write_bytes(b"garbage")
    b = load_or_prepare(cfg, cache_dir=tmp_path / "c", progress=False)
    assert len(calls) == 2 and np.array_equal(a.items, b.items)
    assert PreparedDataset.load(folder).n_users == a.n_users


def test_cache_write_is_atomic(small, tmp_path, monkeypatch):
    cfg = cfg_for(small, min_user_inter=0, min_item_inter=0)

    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        load_or_prepare(cfg, cache_dir=tmp_path / "c", progress=False)
    assert list((tmp_path / "c").iterdir()) == []  # no half-written folder, no temp left behind


def test_meta_records_options_sources_and_stats(small):
    ds = prepare(cfg_for(small, min_user_inter=0, min_item_inter=0, cache=False), progress=False)
    m = ds.meta
    assert "cache" not in m["options"] and m["options"]["split"] == "loo"
    assert m["source"]["interactions"]["digest"] and m["source"]["interactions"]["path"] == str(small.resolve())
    assert m["stats"]["events_read"] == 30 and m["stats"]["interactions"] == 30
    assert {"removed_dedup", "removed_kcore", "dropped_unknown_items", "users", "items"} <= set(m["stats"])


def test_bad_options(small):
    with pytest.raises(DataError, match="data.dedup"):
        prepare(cfg_for(small, dedup="keep", cache=False), progress=False)
    with pytest.raises(DataError, match="time_cut"):
        prepare(cfg_for(small, split="time", time_cut=1.5, cache=False), progress=False)


def test_saved_split_arrays_stay_shared(tmp_path):
    """Sets that share a flat array in memory share it after a save/load round trip too."""
    import numpy as np

    from modalrec.data.dataset import PreparedDataset, SeqSet, Split

    items = np.arange(1, 10, dtype=np.int32)
    warm = np.array([1, 2, 3, 4], dtype=np.int32)
    z = np.array([0], dtype=np.int64)
    sets = [
        SeqSet(warm, z, z + 3, z.astype(np.int32)),
        SeqSet(warm, z, z + 3, z.astype(np.int32), warm[3:4]),
        SeqSet(items, z, z + 5, z.astype(np.int32), items[5:6]),
    ]
    from modalrec.data.dataset import PAD, Catalogue

    cat = Catalogue(np.array([PAD] + [str(i) for i in range(1, 10)]), np.array([""] * 10))
    ds = PreparedDataset("t", cat, np.array(["u"]), np.array([0, 9]), items, np.arange(9), Split("cold", *sets))
    ds.save(tmp_path / "d")
    back = PreparedDataset.load(tmp_path / "d")
    assert back.split.train.items is back.split.valid.items
    assert back.split.test.items is back.items
    assert back.split.train.items.tolist() == warm.tolist()
    with np.load(tmp_path / "d" / "arrays.npz") as f:
        assert "valid_items" not in f.files and "train_items" in f.files


def test_user_fraction_keeps_a_stable_subset_of_users():
    import pandas as pd

    from modalrec.config import DataConfig
    from modalrec.data.prepare import prepare_frames, sample_users

    rng = np.random.default_rng(0)
    inter = pd.DataFrame(
        {
            "user_id": [f"u{k}" for k in rng.integers(0, 400, 6000)],
            "item_id": [f"i{k}" for k in rng.integers(0, 30, 6000)],
            "timestamp": np.arange(6000, dtype=np.int64),
        }
    )
    half, tenth = sample_users(inter, 0.5), sample_users(inter, 0.1)
    users = lambda df: set(df["user_id"])  # noqa: E731
    assert 0.4 < len(users(half)) / 400 < 0.6 and 0.05 < len(users(tenth)) / 400 < 0.15
    assert users(tenth) <= users(half)  # nested
    shuffled = sample_users(inter.sample(frac=1.0, random_state=1), 0.5)
    assert users(shuffled) == users(half)  # independent of row order
    assert len(half) == inter["user_id"].isin(users(half)).sum()  # every event of a kept user
    ds = prepare_frames(inter, None, DataConfig(user_fraction=0.5, min_item_inter=1))
    assert set(ds.user_ids) <= users(half)


def test_catalogue_keeps_raw_fields_through_the_cache(tmp_path):
    from modalrec.data.dataset import PreparedDataset

    p = write_events(tmp_path / "e.csv", [(1, 1, 1), (1, 2, 2), (1, 3, 3)])
    (tmp_path / "i.csv").write_text("item_id,title,year,genres,studio\n1,One,1995,a|b,X\n2,Two,,c,Y\n3,Three,2001,,Z\n")
    items = ItemsSpec(path=str(tmp_path / "i.csv"), text_template="{title} ({year})", keep_fields=["genres"])
    ds = prepare(cfg_for(p, items, **NO_FILTER), progress=False)
    f = ds.catalogue.fields
    assert set(f) == {"title", "year", "genres"}  # the template's fields and keep_fields, not "studio"
    order = ds.catalogue.item_ids.tolist()
    assert [f["title"][order.index(i)] for i in "123"] == ["One", "Two", "Three"]
    assert f["year"][order.index("2")] == "" and f["year"][order.index("1")] == "1995"
    assert f["title"][0] == ""  # padding row
    ds.save(tmp_path / "cache")
    again = PreparedDataset.load(tmp_path / "cache")
    assert {k: v.tolist() for k, v in again.catalogue.fields.items()} == {k: v.tolist() for k, v in f.items()}
