"""A new item's content in its data set's shape: MovieLens fields and posters, other data sets' templates."""

from __future__ import annotations

from types import SimpleNamespace

from modalrec.datasets.new_items import item_fields, item_poster


def _source(name: str, kind: str = "builtin"):
    return SimpleNamespace(name=name, kind=kind, items=None)


def test_a_new_movie_gets_the_normalised_movielens_fields():
    df = item_fields(_source("ml-100k"), {"title": "Heat (1995)", "genres": "Action|Crime"}, ["title_year", "genres"])
    assert df.iloc[0]["title_year"] == "Heat (1995)" and df.iloc[0]["genres"] == "Action, Crime"


def test_other_data_sets_take_the_fields_they_name():
    df = item_fields(_source("shop", "yaml"), {"title": "Heat (1995)", "brand": "acme"}, ["title", "brand"])
    assert df.to_dict("records") == [{"title": "Heat (1995)", "brand": "acme"}]
    assert item_fields(_source("shop", "yaml"), {"colour": "red"}, ["title"]) is None


def test_posters_only_for_movielens_with_posters_on():
    heat = {"title": "Heat", "year": 1995, "genres": ["Action"]}
    png = item_poster(_source("ml-100k"), heat, posters=True)
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert item_poster(_source("ml-100k"), heat, posters=False) is None
    assert item_poster(_source("shop", "yaml"), heat, posters=True) is None
