"""Downloads are checked against pinned SHA-256 digests whenever they are used."""

import pytest

from modalrec.datasets import builtin
from modalrec.datasets.builtin import Builtin, FetchError, check_pinned


def test_a_damaged_download_is_refused_naming_both_digests(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path))
    builtin.downloads_dir().mkdir(parents=True)
    fake = builtin.downloads_dir() / "recbole-1.2.1-py3-none-any.whl"
    fake.write_bytes(b"not the wheel")
    with pytest.raises(FetchError, match="is not the pinned 9c9948202011") as e:
        builtin._download_wheel(Builtin("ml-100k", "", "pypi", "recbole==1.2.1"), quiet=True)
    assert str(fake) in str(e.value) and "delete it and fetch again" in str(e.value)


def test_every_pin_is_a_sha256_and_an_unpinned_file_is_used_with_a_note(tmp_path, capsys):
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in builtin.PINNED_SHA256.values())
    other = tmp_path / "r-cran-dslabs_9.9-1_all.deb"  # a Debian update this release has no pin for
    other.write_bytes(b"x")
    assert check_pinned(other) == other
    out = capsys.readouterr()
    assert "no pinned SHA-256" in out.err + out.out
