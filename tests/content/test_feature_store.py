"""Feature store with tiny random towers: values, padding row and present mask, text prefixes and
their lengths, reuse, invalidation, resuming an interrupted encoding, images with missing and corrupt
files, and the sharded encoding of two gloo processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402

from modalrec.content.image import ImageReader, ImageTower, ImageTowerConfig, decode_image  # noqa: E402
from modalrec.content.store import (  # noqa: E402
    Features,
    FeatureStoreError,
    encode_images,
    encode_text,
)
from modalrec.content.text import TextTower, TextTowerConfig  # noqa: E402

WORDS = "the movie love story war night day man girl life world comedy drama action city house dark".split()


def catalogue(n=13, seed=0):
    """``(item_ids, texts)`` with row 0 padding and item 5 without text; lengths vary a lot."""
    rng = np.random.default_rng(seed)
    ids = ["[PAD]"] + [f"m{i}" for i in range(1, n + 1)]
    texts = [""] + [
        " ".join(rng.choice(WORDS, int(rng.integers(1, 9)))) + f" ({1950 + 3 * i})" for i in range(1, n + 1)
    ]
    texts[5] = ""
    return ids, texts


def tower(model, trainable_layers=1, max_tokens=32, pooling="mean"):
    return TextTower(
        TextTowerConfig(model=model, trainable_layers=trainable_layers, max_tokens=max_tokens, pooling=pooling),
        quiet=True,
    ).eval()


@pytest.fixture(scope="module")
def tt(bert3):
    return tower(bert3)


def _one(tw, text):
    ids, mask = tw.tokenize([text])
    with torch.no_grad():
        return tw.prefix(ids, mask)[0], tw(ids, mask)[0]


def _fail_on_call(tw, monkeypatch, k):
    """Make ``tw.prefix`` raise on its ``k``-th call; returns the list of calls."""
    real, calls = tw.prefix, []

    def prefix(ids, mask):
        calls.append(len(ids))
        if len(calls) == k:
            raise RuntimeError("tower died")
        return real(ids, mask)

    monkeypatch.setattr(tw, "prefix", prefix)
    return calls


# --------------------------------------------------------------------------------------------- text


def test_pooled_text_values(tt, tmp_path):
    ids, texts = catalogue()
    feats, rep = encode_text(tt, ids, texts, dataset="toy", root=tmp_path, batch_size=4, progress=False)
    assert feats.folder.parent == tmp_path / "toy" and feats.folder.name.startswith("text-pooled-")
    assert feats.values.shape == (14, 32) and feats.values.dtype == np.float16
    assert not feats.values.flags.writeable
    np.testing.assert_array_equal(feats.present, [False] + [i != 5 for i in range(1, 14)])
    assert (feats.values[0] == 0).all() and (feats.values[5] == 0).all()
    assert feats.lengths is None
    assert (rep.items, rep.encoded_now, rep.missing, rep.corrupt, rep.reused) == (13, 12, 1, [], False)
    for r in range(1, 14):
        if r != 5:
            _, pooled = _one(tt, texts[r])
            np.testing.assert_allclose(feats.values[r].astype(np.float32), pooled.numpy(), atol=2e-3, rtol=2e-3)
    # the manifest records what the values depend on
    ident = feats.manifest["identity"]
    assert ident["encoder"] == tt.name and ident["weights"] == tt.weights_hash and ident["max_tokens"] == 32
    assert feats.manifest["complete"] and feats.summary()["encoded_now"] == 12
    g = feats.gather(torch.tensor([3, 0, 3]))
    assert g.dtype == torch.float16 and torch.equal(g[0], g[2]) and (g[1] == 0).all()
    assert torch.equal(feats.tensor()[3], g[0])


def test_prefix_text_values_and_lengths(tt, tmp_path):
    ids, texts = catalogue()
    feats, rep = encode_text(tt, ids, texts, dataset="toy", what="prefix", root=tmp_path, batch_size=3, progress=False)
    true_len = [0] + [0 if not t else len(tt.tokenize([t])[0][0]) for t in texts[1:]]
    assert max(true_len) < 32 and len(set(true_len)) > 4
    assert feats.values.shape == (14, max(true_len), 32)
    np.testing.assert_array_equal(feats.lengths, true_len)
    assert feats.folder.name.startswith("text-prefix-")
    assert (feats.values[0] == 0).all() and (feats.values[5] == 0).all()
    for r in range(1, 14):
        if r == 5:
            continue
        n = true_len[r]
        pre, pooled = _one(tt, texts[r])
        np.testing.assert_allclose(feats.values[r, :n].astype(np.float32), pre.numpy(), atol=5e-3, rtol=2e-3)
        # positions >= n hold padding states of the chunk (or zeros); from_cache masks them (below)
    # the cached prefix + the trainable top give the full tower's pooled vector
    rows = torch.tensor([1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13])
    with torch.no_grad():
        out = tt.from_cache(feats.gather(rows), torch.as_tensor(feats.lengths)[rows])
    ref = torch.stack([_one(tt, texts[r])[1] for r in rows.tolist()])
    torch.testing.assert_close(out, ref, atol=1e-2, rtol=1e-2)


def test_prefix_and_pooled_identities_differ(tt, tmp_path):
    ids, texts = catalogue()
    a, _ = encode_text(tt, ids, texts, dataset="toy", root=tmp_path, progress=False)
    b, _ = encode_text(tt, ids, texts, dataset="toy", what="prefix", root=tmp_path, progress=False)
    assert a.folder != b.folder
    assert b.manifest["identity"]["frozen_layers"] == 2 and a.manifest["identity"]["frozen_layers"] == 3
    with pytest.raises(ValueError, match="what must be 'pooled' or 'prefix'"):
        encode_text(tt, ids, texts, dataset="toy", what="tokens", root=tmp_path, progress=False)


def test_second_call_reuses_and_encodes_nothing(bert3, tmp_path, monkeypatch):
    ids, texts = catalogue()
    tw = tower(bert3)
    first, rep1 = encode_text(tw, ids, texts, dataset="toy", root=tmp_path, batch_size=4, progress=False)
    calls = _fail_on_call(tw, monkeypatch, 1)  # any encoding would now raise
    second, rep2 = encode_text(tw, ids, texts, dataset="toy", root=tmp_path, batch_size=4, progress=False)
    assert calls == []
    assert rep2.reused and not rep1.reused
    assert (rep2.encoded_now, rep2.items, rep2.missing) == (0, 13, 1)
    assert second.folder == first.folder
    np.testing.assert_array_equal(second.values, first.values)
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == [first.folder.name]


def test_changes_select_a_new_folder_and_reencode(bert3, make_bert, tmp_path):
    ids, texts = catalogue()
    base, _ = encode_text(tower(bert3), ids, texts, dataset="toy", root=tmp_path, progress=False)

    texts2 = list(texts)
    texts2[7] = texts2[7] + " night"
    f2, rep2 = encode_text(tower(bert3), ids, texts2, dataset="toy", root=tmp_path, progress=False)
    assert f2.folder != base.folder and rep2.encoded_now == 12 and not rep2.reused
    assert not np.array_equal(f2.values[7], base.values[7])
    np.testing.assert_array_equal(f2.values[6], base.values[6])

    f3, rep3 = encode_text(tower(bert3, max_tokens=5), ids, texts, dataset="toy", root=tmp_path, progress=False)
    assert f3.folder not in (base.folder, f2.folder) and rep3.encoded_now == 12

    ids2 = list(ids)
    ids2[2] = "other-id"
    f4, rep4 = encode_text(tower(bert3), ids2, texts, dataset="toy", root=tmp_path, progress=False)
    assert f4.folder not in (base.folder, f2.folder, f3.folder) and rep4.encoded_now == 12

    # new weights in the same folder (same encoder name): a different store, different values
    folder = tmp_path / "model"
    make_bert(folder, seed=1)
    fa, _ = encode_text(tower(str(folder)), ids, texts, dataset="toy", root=tmp_path, progress=False)
    make_bert(folder, seed=2)
    fb, repb = encode_text(tower(str(folder)), ids, texts, dataset="toy", root=tmp_path, progress=False)
    assert fb.folder != fa.folder and repb.encoded_now == 12 and not repb.reused
    assert fa.manifest["identity"]["encoder"] == fb.manifest["identity"]["encoder"]
    assert not np.allclose(fa.values[1:].astype(np.float32), fb.values[1:].astype(np.float32), atol=1e-2)
    assert fa.folder.is_dir()  # the old store is left alone


@pytest.mark.parametrize("what", ["pooled", "prefix"])
def test_interrupted_encoding_resumes(bert3, tmp_path, monkeypatch, what):
    ids, texts = catalogue()
    clean, _ = encode_text(
        tower(bert3), ids, texts, dataset="toy", what=what, root=tmp_path / "clean", batch_size=3, progress=False
    )

    tw = tower(bert3)
    calls = _fail_on_call(tw, monkeypatch, 3)
    with pytest.raises(RuntimeError, match="tower died"):
        encode_text(tw, ids, texts, dataset="toy", what=what, root=tmp_path / "run", batch_size=3, progress=False)
    assert calls == [3, 3, 3]
    final = tmp_path / "run" / "toy" / clean.folder.name
    partial = final.with_name(final.name + ".partial")
    assert not final.exists() and partial.is_dir()
    assert sorted(p.name for p in (tmp_path / "run" / "toy").iterdir()) == [partial.name]
    assert sorted(p.name for p in (partial / "progress").iterdir()) == ["0.done", "1.done"]
    with pytest.raises(FeatureStoreError, match="no readable manifest"):
        Features.open(partial)

    again = tower(bert3)  # a working tower (the patch was on the old instance only)
    calls2 = _fail_on_call(again, monkeypatch, 0)  # 0: count calls, never fail
    feats, rep = encode_text(
        again, ids, texts, dataset="toy", what=what, root=tmp_path / "run", batch_size=3, progress=False
    )
    assert rep.encoded_now == 12 - 6 and calls2 == [3, 3]
    assert not rep.reused and rep.missing == 1
    assert feats.folder == final and not partial.exists()
    assert not (final / "progress").exists() and not (final / "identity.json").exists()
    np.testing.assert_array_equal(feats.values, clean.values)
    np.testing.assert_array_equal(feats.present, clean.present)
    if what == "prefix":
        np.testing.assert_array_equal(feats.lengths, clean.lengths)


def test_stale_partial_of_another_identity_is_discarded(bert3, tmp_path, monkeypatch):
    ids, texts = catalogue()
    tw = tower(bert3)
    _fail_on_call(tw, monkeypatch, 2)
    with pytest.raises(RuntimeError):
        encode_text(tw, ids, texts, dataset="toy", root=tmp_path, batch_size=3, progress=False)
    (partial,) = (tmp_path / "toy").iterdir()
    # a partial with a different identity.json under the same name must not be continued
    ident = json.loads((partial / "identity.json").read_text())
    (partial / "identity.json").write_text(json.dumps({**ident, "weights": "something-else"}))
    feats, rep = encode_text(tower(bert3), ids, texts, dataset="toy", root=tmp_path, batch_size=3, progress=False)
    assert rep.encoded_now == 12


def test_incomplete_manifest_is_refused(tt, tmp_path):
    ids, texts = catalogue()
    feats, _ = encode_text(tt, ids, texts, dataset="toy", root=tmp_path, progress=False)
    man = json.loads((feats.folder / "manifest.json").read_text())
    (feats.folder / "manifest.json").write_text(json.dumps({**man, "shape": [14, 33]}))
    with pytest.raises(FeatureStoreError, match="the manifest says"):
        Features.open(feats.folder)
    # encode_text does not trust it either: it encodes again and repairs the folder
    again, rep = encode_text(tt, ids, texts, dataset="toy", root=tmp_path, progress=False)
    assert not rep.reused and rep.encoded_now == 12 and again.folder == feats.folder
    (feats.folder / "manifest.json").write_text(json.dumps({**man, "complete": False}))
    with pytest.raises(FeatureStoreError, match="not complete"):
        Features.open(feats.folder)


# --------------------------------------------------------------------------------------------- images


@pytest.fixture
def image_catalogue(item_pngs, tmp_path):
    """Items 1..8: 1-6 and 8 have PNGs, 7 has no image, 3 is a corrupt file."""
    folder, _ = item_pngs
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png, just garbage bytes " * 4)
    ids = ["[PAD]"] + [f"m{i}" for i in range(1, 9)]
    paths = [""] + [str(folder / f"{i}.png") for i in range(1, 9)]
    paths[7] = ""
    paths[3] = str(bad)
    return ids, paths, bad


def _cnn(n=2, size=16):
    return ImageTower(ImageTowerConfig(model="tiny-content-cnn", image_size=size, trainable_layers=n)).eval()


@pytest.mark.parametrize("what", ["pooled", "prefix"])
def test_images_with_missing_and_corrupt_files(image_catalogue, tmp_path, what):
    ids, paths, bad = image_catalogue
    tw = _cnn()
    with pytest.warns(UserWarning) as caught:
        feats, rep = encode_images(
            tw, ImageReader(ids, paths), dataset="toy", what=what, root=tmp_path, batch_size=3, progress=False
        )
    msgs = [str(w.message) for w in caught]
    assert sum(str(bad) in m for m in msgs) == 1  # the reader names the file once
    assert any("1 image(s) could not be decoded" in m for m in msgs)
    assert (rep.items, rep.missing, rep.corrupt, rep.encoded_now) == (8, 2, [str(bad)], 7)
    assert feats.summary()["corrupt_files"] == [str(bad)]
    np.testing.assert_array_equal(feats.present, [False, True, True, False, True, True, True, False, True])
    for r in (0, 3, 7):
        assert (feats.values[r] == 0).all()
    assert feats.folder.name.startswith(f"image-{what}-")
    if what == "pooled":
        assert feats.values.shape == (9, 12)
    else:
        assert feats.values.shape == (9, 8, 4, 4)  # after the 2 frozen stages of the tiny CNN at 16 px
    imgs = np.stack([decode_image(open(paths[r], "rb").read(), 16) for r in (1, 2, 4, 8)])
    with torch.no_grad():
        x = tw.normalise(torch.from_numpy(imgs))
        ref = tw(x) if what == "pooled" else tw.prefix(x)
        got = torch.from_numpy(feats.values[[1, 2, 4, 8]].astype(np.float32))
        torch.testing.assert_close(got, ref, atol=5e-3, rtol=2e-3)
        if what == "prefix":
            torch.testing.assert_close(tw.from_cache(feats.gather([1, 2, 4, 8])), tw(x), atol=1e-2, rtol=1e-2)

    # reused: the report still knows about the broken file, nothing is read again
    reader = ImageReader(ids, paths)
    again, rep2 = encode_images(tw, reader, dataset="toy", what=what, root=tmp_path, batch_size=3, progress=False)
    assert rep2.reused and rep2.encoded_now == 0 and reader.corrupt == []
    assert (rep2.missing, rep2.corrupt) == (2, [str(bad)])
    assert again.folder == feats.folder


def test_image_identity_follows_files_and_tower(image_catalogue, item_pngs, tmp_path):
    ids, paths, _ = image_catalogue
    with pytest.warns(UserWarning):
        a, _ = encode_images(_cnn(), ImageReader(ids, paths), dataset="toy", root=tmp_path, progress=False)
    with pytest.warns(UserWarning):
        b, _ = encode_images(_cnn(size=24), ImageReader(ids, paths), dataset="toy", root=tmp_path, progress=False)
    assert b.folder != a.folder
    # a fixed image file (new size/mtime) selects a new store, where it is present
    folder, arrays = item_pngs
    fixed = tmp_path / "fixed.png"
    fixed.write_bytes((folder / "2.png").read_bytes())
    paths2 = list(paths)
    paths2[3] = str(fixed)
    c, rep = encode_images(_cnn(), ImageReader(ids, paths2), dataset="toy", root=tmp_path, progress=False)
    assert c.folder not in (a.folder, b.folder) and rep.corrupt == [] and rep.missing == 1
    assert c.present[3] and np.array_equal(c.values[3], c.values[2])


def test_lmdb_images_match_file_images(item_pngs, tmp_path):
    lmdb = pytest.importorskip("lmdb")
    folder, _ = item_pngs
    ids = ["[PAD]"] + [f"m{i}" for i in range(1, 7)]
    paths = [""] + [str(folder / f"{i}.png") if i != 4 else "" for i in range(1, 7)]
    env = lmdb.open(str(tmp_path / "img.lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in (1, 2, 3, 5, 6):
            txn.put(f"m{i}".encode(), (folder / f"{i}.png").read_bytes())
    env.close()
    tw = _cnn()
    a, ra = encode_images(tw, ImageReader(ids, paths), dataset="toy", root=tmp_path / "f", progress=False)
    b, rb = encode_images(
        tw, ImageReader(ids, None, str(tmp_path / "img.lmdb")), dataset="toy", root=tmp_path / "l", progress=False
    )
    np.testing.assert_array_equal(b.values, a.values)
    np.testing.assert_array_equal(b.present, a.present)
    assert (ra.missing, rb.missing, rb.corrupt) == (1, 1, [])


# --------------------------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from modalrec.content.store import encode_text
    from modalrec.content.text import TextTower, TextTowerConfig
    from modalrec.core.distributed import init_from_env, shutdown

    model, root, out = sys.argv[1:4]
    data = json.loads(sys.argv[4])
    info = init_from_env("cpu")
    tw = TextTower(TextTowerConfig(model=model, trainable_layers=1, max_tokens=32), quiet=True).eval()
    result = {"rank": info.rank, "world": info.world_size}
    for what in ("pooled", "prefix"):
        feats, rep = encode_text(tw, data["ids"], data["texts"], dataset="toy", what=what, root=root,
                                 batch_size=2, progress=False, dist=info)
        result[what] = {"folder": str(feats.folder), "encoded_now": rep.encoded_now}
    json.dump(result, open(out, "w"))
    shutdown(info)
""")


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(bert3, tmp_path):
    """``encode_text`` sharded over 2 gloo ranks (chunk c on rank c % 2) equals one process, bit for bit."""
    ids, texts = catalogue(n=17, seed=4)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    bert3,
                    str(tmp_path / "ddp"),
                    str(tmp_path / f"r{rank}.json"),
                    json.dumps({"ids": ids, "texts": texts}),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err[-3000:]
    r = [json.loads((tmp_path / f"r{k}.json").read_text()) for k in range(2)]
    assert [x["rank"] for x in r] == [0, 1] and r[0]["world"] == r[1]["world"] == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels as the workers
    try:
        tw = tower(bert3)
        for what in ("pooled", "prefix"):
            single, _ = encode_text(
                tw, ids, texts, dataset="toy", what=what, root=tmp_path / "one", batch_size=2, progress=False
            )
            assert r[0][what]["folder"] == r[1][what]["folder"]
            n0, n1 = r[0][what]["encoded_now"], r[1][what]["encoded_now"]
            assert n0 > 0 and n1 > 0 and n0 + n1 == 16  # 17 items, one without text
            ddp = Features.open(r[0][what]["folder"])
            assert ddp.folder.name == single.folder.name
            assert ddp.manifest["identity"] == single.manifest["identity"]
            assert ddp.manifest["summary"]["missing"] == 1
            np.testing.assert_array_equal(ddp.values, single.values)
            np.testing.assert_array_equal(ddp.present, single.present)
            if what == "prefix":
                np.testing.assert_array_equal(ddp.lengths, single.lengths)
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "ddp" / "toy").iterdir()) == ["pooled", "prefix"]
