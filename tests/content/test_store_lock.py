"""One writer per feature store: concurrent encodes of one store never fail and never both encode."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

pytest.importorskip("transformers")

from modalrec.content.store import encode_text  # noqa: E402
from modalrec.content.text import TextTower, TextTowerConfig  # noqa: E402
from modalrec.utils import LockedError, file_lock  # noqa: E402


def test_two_concurrent_encodes_of_one_store_both_succeed_and_encode_once(bert3, tmp_path):
    ids = ["[PAD]"] + [f"m{i}" for i in range(1, 41)]
    texts = [""] + [f"movie {i} love story" for i in range(1, 41)]
    reports, errors = [], []

    def encode():
        try:
            tw = TextTower(TextTowerConfig(model=bert3, trainable_layers=1), quiet=True).eval()
            reports.append(encode_text(tw, ids, texts, dataset="toy", root=tmp_path, batch_size=4, progress=False))
        except Exception as e:  # the test reports any failure below
            errors.append(e)

    threads = [threading.Thread(target=encode) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (f1, r1), (f2, r2) = reports
    assert sorted([r1.reused, r2.reused]) == [False, True]  # the second waited, then reused
    assert r1.encoded_now + r2.encoded_now == 40
    np.testing.assert_array_equal(f1.values, f2.values)


def test_lock_held_by_another_process_names_its_pid(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from modalrec.utils import file_lock
        with file_lock({str(lock)!r}, wait=False, what="x"):
            print("held", flush=True)
            sys.stdin.read()
    """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"PID {holder.pid}"):
            with file_lock(lock, wait=False, what="the run folder x"):
                pass
    finally:
        holder.communicate("")
    with file_lock(lock, wait=False, what="x"):  # released when the holder exited
        pass
