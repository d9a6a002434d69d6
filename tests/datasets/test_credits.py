"""Film credits joined to MovieLens titles (modalrec.datasets.credits), on small hand-made tables."""

from __future__ import annotations

import pandas as pd
import pytest

from modalrec.datasets import credits


def test_normalise_title_moves_the_article_and_drops_punctuation():
    assert credits.normalise_title("Usual Suspects, The") == "the usual suspects"
    assert credits.normalise_title("Amélie!") == "amelie"
    assert credits.normalise_title("Pride & Prejudice") == "pride and prejudice"


def test_title_variants_cover_alternatives_and_subtitles():
    v = credits.title_variants("Seven (a.k.a. Se7en)")
    assert {"seven", "se7en"} <= v
    assert {"star wars episode iv a new hope", "star wars", "a new hope"} <= credits.title_variants(
        "Star Wars: Episode IV - A New Hope"
    )


def _films() -> pd.DataFrame:
    raw = pd.DataFrame(
        {
            "imdbID": ["tt1", "tt2", "tt3"],
            "Title": ["The Usual Suspects", "Heat", "Se7en"],
            "Year": [1995, 1995, 1995],
            "Director": ["Bryan Singer", "Michael Mann", "David Fincher"],
            "Writer": ["Christopher McQuarrie", "Michael Mann", ""],
            "Cast": [
                "Kevin Spacey, Gabriel Byrne",
                "Al Pacino, Robert De Niro, Val Kilmer, Zed Extra",
                "Brad Pitt, Kevin Spacey, Morgan Freeman",
            ],
            "Country": ["United States", "United States", None],
            "Language": ["English", "English, Spanish", "English"],
        }
    )
    return credits.normalise_films(raw)


def test_cast_keeps_the_actors_with_most_films_first():
    films = _films()
    # Kevin Spacey has two films in the table: he leads both casts he is in
    assert films.loc[0, "cast"] == "Kevin Spacey, Gabriel Byrne"
    assert films.loc[2, "cast"].startswith("Kevin Spacey, ")
    assert len(films.loc[1, "cast"].split(", ")) == credits.CAST_SHOWN
    assert films.loc[2, "country"] == ""
    assert films.loc[1, "language"] == "English"


def test_match_uses_variants_and_a_year_within_one():
    films = _films()
    rows = credits.match_films(
        ["Usual Suspects, The", "Seven (Se7en)", "Heat", "Heat", "Unknown Film"],
        ["1995", "1996", "1993", "", "1995"],
        films,
    )
    assert rows.tolist() == [0, 2, -1, -1, -1]


def test_with_credits_adds_fields_and_a_sentence_only_for_matches():
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["Heat", "Nothing Here"], "year": ["1995", "1995"]})
    out = credits.with_credits(items, _films())
    assert out["credits_matched"].tolist() == [True, False]
    assert out.loc[0, "director"] == "Michael Mann"
    assert out.loc[0, "credits"].startswith("Directed by Michael Mann. Starring ")
    assert out.loc[0, "credits"].endswith("Written by Michael Mann. United States.")
    assert out.loc[1, "credits"] == "" and out.loc[1, "cast"] == ""


@pytest.mark.builtin
def test_rich_text_of_ml_100k_matches_most_movies():
    from modalrec.config import build_config
    from modalrec.data.prepare import load_or_prepare

    rich, basic = (
        load_or_prepare(
            build_config({}, ["data.dataset=ml-100k", f"data.text={kind}"]).data, progress=False
        ).catalogue.text[1:]
        for kind in ("rich", "basic")
    )
    assert sum("Directed by" in t for t in rich) / len(rich) > 0.8
    assert all(r.startswith(b) for r, b in zip(rich, basic))  # same items, the basic text then the credits
    assert sum(len(r) > len(b) for r, b in zip(rich, basic)) / len(rich) > 0.8
