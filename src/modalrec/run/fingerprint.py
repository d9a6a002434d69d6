"""What data a run was trained on, and the check that data met later is the same.

The fingerprint hashes the prepared data (item and user ids, sequences, timestamps, split), so a
renamed item, an added event or another split all change it. A mismatch is always an error that
names the difference; data is never silently remapped onto a run.
"""

from __future__ import annotations

import hashlib

import numpy as np


class DataMismatchError(ValueError):
    """The data met by a run is not the data it was trained on."""


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind in "US":
            h.update("\0".join(a.astype(str).tolist()).encode("utf-8"))
        else:
            h.update(np.ascontiguousarray(a.astype(np.int64)).tobytes())
        h.update(b"\1")
    return h.hexdigest()[:16]


def _split_arrays(ds) -> list:
    out = [np.asarray([ds.split.kind])]
    for name in ("train", "valid", "test"):
        s = getattr(ds.split, name)
        out += [s.start, s.end, s.users, s.targets if s.targets is not None else np.zeros(0)]
        if s.items is not ds.items:
            out.append(s.items)
    return out


def data_fingerprint(ds) -> dict:
    """The data record a run keeps: digests of the id map, the sequences and the split, and counts."""
    parts = {
        "id_map": _digest(ds.catalogue.item_ids),
        "sequences": _digest(ds.user_ids, ds.offsets, ds.items, ds.timestamps),
        "split": _digest(*_split_arrays(ds)),
    }
    return {
        "fingerprint": _digest(np.asarray([f"{k}={v}" for k, v in sorted(parts.items())])),
        **parts,
        "name": ds.name,
        "items": int(ds.n_items),
        "users": int(ds.n_users),
        "interactions": int(len(ds.items)),
        "split_kind": ds.split.kind,
    }


def _shown(ids: list[str], n: int = 5) -> str:
    return ", ".join(repr(i) for i in ids[:n]) + (" ..." if len(ids) > n else "")


def id_map_difference(run_ids, data_ids) -> str:
    """Says how two catalogues' item ids differ (padding row excluded); "" when they are equal."""
    run_ids = [str(i) for i in np.asarray(run_ids)[1:]]
    data_ids = [str(i) for i in np.asarray(data_ids)[1:]]
    if run_ids == data_ids:
        return ""
    in_data, in_run = set(data_ids), set(run_ids)
    missing = [i for i in run_ids if i not in in_data]
    added = [i for i in data_ids if i not in in_run]
    parts = [f"the run has {len(run_ids)} items, the data {len(data_ids)}"]
    if missing:
        parts.append(f"{len(missing)} of the run's item ids are not in the data ({_shown(missing)})")
    if added:
        parts.append(f"{len(added)} item ids of the data are not in the run ({_shown(added)})")
    if not missing and not added:
        row = next(k for k, (a, b) in enumerate(zip(run_ids, data_ids)) if a != b)
        parts.append(
            f"the same ids in another order (first at row {row + 1}: run {run_ids[row]!r}, data {data_ids[row]!r})"
        )
    return "; ".join(parts)


def check_ids(run_ids, ds, where: str) -> None:
    """Raise DataMismatchError unless ``ds`` has exactly the item ids ``run_ids``, in the same order."""
    diff = id_map_difference(run_ids, ds.catalogue.item_ids)
    if diff:
        raise DataMismatchError(
            f"the data {ds.name!r} is not the data {where} was trained on: {diff}. Nothing was "
            "remapped; restore the data the run was trained on, or train a new run on this data"
        )


def check_data(record: dict, run_ids, ds, where: str) -> None:
    """Raise DataMismatchError unless ``ds`` is the data described by ``record`` (a run's data record)
    with the item ids ``run_ids`` (the run's catalogue). ``where`` names the run in the message."""
    if "items" in record:  # items added to a served run after training are not part of its data
        run_ids = np.asarray(run_ids)[: record["items"] + 1]
    check_ids(run_ids, ds, where)
    theirs = data_fingerprint(ds)
    if record.get("fingerprint") in (None, theirs["fingerprint"]):
        return
    what = [k for k in ("sequences", "split") if record.get(k) != theirs[k]]
    counts = (
        f"run: {record.get('users')} users, {record.get('interactions')} interactions, split "
        f"{record.get('split_kind')}; data: {theirs['users']} users, {theirs['interactions']} interactions, "
        f"split {theirs['split_kind']}"
    )
    raise DataMismatchError(
        f"the data {ds.name!r} is not the data {where} was trained on: same item ids, but the "
        f"{' and '.join(what) or 'prepared data'} differ ({counts}). Restore the data the run "
        "was trained on, or train a new run on this data"
    )
