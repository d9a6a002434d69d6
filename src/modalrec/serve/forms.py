"""Form bodies (url-encoded and multipart) are read as UTF-8 text, or refused naming the field.

Starlette decodes a multipart field that is not valid in the form's charset as latin-1 without a word,
and the raw (not percent-escaped) bytes of a url-encoded body always as latin-1, so a wrongly encoded
title would enter the catalogue as mojibake. :class:`StrictFormText` reads a form body before the app,
splits it with the parser Starlette uses (python-multipart) and decodes every field name and text value
strictly: a field that does not decode is a 422 naming it. A url-encoded body is handed on with its raw
non-ASCII bytes percent-escaped, which Starlette reads as UTF-8. File parts (images) are not text and are
not looked at.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:  # checked against the current package; the older one has the same names
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartCallbacks, MultipartParser, QuerystringParser, parse_options_header
else:
    try:
        from python_multipart.exceptions import FormParserError
        from python_multipart.multipart import MultipartParser, QuerystringParser, parse_options_header
    except ImportError:  # python-multipart before 0.0.13
        from multipart.exceptions import FormParserError
        from multipart.multipart import MultipartParser, QuerystringParser, parse_options_header

from modalrec.serve.asgi import read_body, replaying, with_content_length
from modalrec.serve.errors import error_response

URLENCODED, MULTIPART = b"application/x-www-form-urlencoded", b"multipart/form-data"
_RAW_NON_ASCII = re.compile(rb"[\x80-\xff]")


class FormTextError(ValueError):
    """A form field (or its name) that is not text in the form's charset."""


def _decode(raw: bytes, codec: str, what: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as e:
        name = "UTF-8" if codec == "utf-8" else codec
        raise FormTextError(
            f"{what} is not valid {name} (byte {raw[e.start]:#04x} at position {e.start}); "
            "send the form's text in UTF-8"
        ) from None


def _check_fields(fields: Sequence[tuple[bytes, bytes | None]], codec: str) -> None:
    """Each (name, value) decodes with ``codec``; a None value (a file) is not text."""
    for name, value in fields:
        shown = _decode(name, codec, "a form field name")
        if value is not None:
            _decode(value, codec, f"form field {shown[:100]!r}")


def _unquote_plus(raw: bytes | bytearray) -> bytes:
    return unquote_to_bytes(bytes(raw).replace(b"+", b" "))


def urlencoded_fields(body: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, value) bytes of a url-encoded body, percent-escapes undone, as Starlette splits it."""
    fields, name, value = [], bytearray(), bytearray()

    def start():
        name.clear()
        value.clear()

    parser = QuerystringParser(
        {
            "on_field_start": start,
            "on_field_name": lambda data, a, b: name.extend(data[a:b]),
            "on_field_data": lambda data, a, b: value.extend(data[a:b]),
            "on_field_end": lambda: fields.append((_unquote_plus(name), _unquote_plus(value))),
        }
    )
    parser.write(body)
    parser.finalize()
    return fields


class _Parts:
    """python-multipart callbacks collecting each part's name and, unless it is a file, its value."""

    def __init__(self):
        self.fields: list[tuple[bytes, bytes | None]] = []
        self.headers: dict[bytes, bytes] = {}
        self.header, self.value, self.data = bytearray(), bytearray(), bytearray()
        self.name, self.is_file = b"", False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.headers.clear,
            "on_header_field": self._extend(self.header),
            "on_header_value": self._extend(self.value),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    @staticmethod
    def _extend(buffer: bytearray):
        return lambda data, a, b: buffer.extend(data[a:b])

    def _header_end(self):
        self.headers[bytes(self.header).lower()] = bytes(self.value)
        self.header.clear()
        self.value.clear()

    def _headers_finished(self):
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        self.name, self.is_file = options.get(b"name", b""), b"filename" in options
        self.data.clear()

    def _part_data(self, data, a, b):
        if not self.is_file:
            self.data.extend(data[a:b])

    def _part_end(self):
        self.fields.append((self.name, None if self.is_file else bytes(self.data)))


def multipart_fields(body: bytes, boundary: bytes) -> list[tuple[bytes, bytes | None]]:
    """The (name, value) bytes of a multipart body's parts; the value is None for a file."""
    parts = _Parts()
    parser = MultipartParser(boundary, parts.callbacks())
    parser.write(body)
    parser.finalize()
    return parts.fields


def _codec(params: dict[bytes, bytes]) -> str:
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise FormTextError(f"the form's charset {charset[:40]!r} is not known; send the form in UTF-8") from None


def checked_form_body(kind: bytes, params: dict[bytes, bytes], body: bytes) -> bytes:
    """The body to hand the app, once every field is text; FormTextError names the first one that is not.
    A body python-multipart cannot split is handed on as it is (the app says what is broken)."""
    try:
        if kind == URLENCODED:
            _check_fields(urlencoded_fields(body), "utf-8")
            return _RAW_NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], body)
        codec = _codec(params)
        if params.get(b"boundary"):
            _check_fields(multipart_fields(body, params[b"boundary"]), codec)
    except FormParserError:
        pass
    return body


class StrictFormText:
    """ASGI middleware: a form body whose text is not valid UTF-8 (or the charset it names) is a 422."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        kind: bytes = b""
        params: dict[bytes, bytes] = {}
        if scope["type"] == "http":
            kind, params = parse_options_header(
                next((v for k, v in scope.get("headers", ()) if k == b"content-type"), None)
            )
        if kind not in (URLENCODED, MULTIPART):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        try:
            checked = checked_form_body(kind, params, body)
        except FormTextError as e:
            await error_response(422, str(e))(scope, receive, send)
            return
        if len(checked) != len(body):
            scope = with_content_length(scope, len(checked))
        await self.app(scope, replaying(checked, receive), send)
