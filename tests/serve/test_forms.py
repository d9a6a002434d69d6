"""Form bodies are UTF-8 text or refused: POST /items/form url-encoded and multipart, and the checks themselves."""

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'modalrec[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from modalrec.serve.app import create_app  # noqa: E402
from modalrec.serve.forms import MULTIPART, URLENCODED, FormTextError, checked_form_body  # noqa: E402
from modalrec.serve.recommender import Recommender  # noqa: E402

BOUNDARY = "b0undary"


def _multipart(fields: dict[str, bytes], charset: str = "") -> tuple[bytes, dict]:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in fields.items()
    ]
    ctype = f"multipart/form-data; boundary={BOUNDARY}" + (f"; charset={charset}" if charset else "")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(), {"content-type": ctype}


def _urlencoded(raw: bytes) -> tuple[bytes, dict]:
    return raw, {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def client(served_runs, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODALREC_HOME", str(tmp_path_factory.mktemp("forms-home")))
        rec = Recommender.load(served_runs["pmmrec"])
    with TestClient(create_app(rec)) as c:
        yield c


INVALID = {  # case: (the id it asks for, body, headers)
    "url-encoded, raw bytes": ("bad-1", *_urlencoded(b"item_id=bad-1&title=\xff\xfe")),
    "url-encoded, percent-escaped": ("bad-2", *_urlencoded(b"item_id=bad-2&title=%FF%FE")),
    "multipart": ("bad-3", *_multipart({"item_id": b"bad-3", "title": b"\xff\xfe"})),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_a_field_in_invalid_utf8_is_refused_naming_it(client, case):
    item_id, body, headers = INVALID[case]
    r = client.post("/items/form", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("form field 'title' is not valid UTF-8 (byte 0xff at position 0)")
    assert client.get(f"/items/{item_id}").status_code == 404  # nothing added


VALID = {
    "url-encoded, raw bytes": _urlencoded("item_id=ok-1&title=Amélie&genres=Comédie".encode()),
    "url-encoded, percent-escaped": _urlencoded(b"item_id=ok-2&title=Am%C3%A9lie&genres=Com%C3%A9die"),
    "multipart": _multipart({"item_id": b"ok-3", "title": "Amélie".encode(), "genres": "Comédie".encode()}),
    "multipart, latin-1 declared": _multipart(
        {"item_id": b"ok-4", "title": "Amélie".encode("latin-1"), "genres": "Comédie".encode("latin-1")},
        charset="iso-8859-1",
    ),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_non_ascii_text_arrives_as_sent(client, case):
    body, headers = VALID[case]
    r = client.post("/items/form", content=body, headers=headers)
    assert r.status_code == 201, r.text
    item = client.get(f"/items/{r.json()['added'][0]}").json()
    assert (item["title"], item["genres"]) == ("Amélie", "Comédie")


def test_a_field_name_or_charset_that_is_not_text_is_refused(client):
    r = client.post("/items/form", content=b"\xff=1&title=x", headers={"content-type": URLENCODED.decode()})
    assert r.status_code == 422 and r.json()["detail"].startswith("a form field name is not valid UTF-8")
    body, headers = _multipart({"title": b"x"}, charset="klingon")
    r = client.post("/items/form", content=body, headers=headers)
    assert r.status_code == 422 and "charset 'klingon' is not known" in r.json()["detail"]


def test_files_are_not_text_and_pass_untouched():
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'.encode()
        + b"\x89PNG\xff\xfe\r\n"
        + f"--{BOUNDARY}--\r\n".encode()
    )
    assert checked_form_body(MULTIPART, {b"boundary": BOUNDARY.encode()}, body) == body


def test_raw_utf8_of_a_url_encoded_body_is_percent_escaped_and_broken_bodies_pass_on():
    assert checked_form_body(URLENCODED, {}, "title=é+x".encode()) == b"title=%C3%A9+x"
    broken = b"--nope\r\nno headers at all"
    assert checked_form_body(MULTIPART, {b"boundary": BOUNDARY.encode()}, broken) == broken  # the app answers 400
    with pytest.raises(FormTextError, match="form field 'genres'"):
        checked_form_body(URLENCODED, {}, b"title=ok&genres=%C3")
