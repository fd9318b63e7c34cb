"""Users' own text: a CSV with a text column and a label column, and its bad-input messages."""

from __future__ import annotations

import pytest
import torch

from kdviz.data import DatasetError, load_csv, load_user_file
from kdviz.data.cache import check_spec
from kdviz.data.text import MAX_TEXT_CHARS


def reviews(n: int = 30) -> str:
    words = {"pos": ["great", "lovely", "fine"], "neg": ["awful", "dull", "bad"]}
    rows = [f'"the film was {words[c][i % 3]}, NA",{c},{i}' for i in range(n) for c in ("pos", "neg")]
    return "review,label,id\n" + "\n".join(rows) + "\n"


def test_text_csv_builds_a_text_dataset():
    dataset = load_csv(reviews().encode(), "label", text_column="review", filename="reviews.csv")
    assert dataset.input_kind == "text" and dataset.class_names == ["neg", "pos"]
    assert dataset.x_train.dtype == torch.int64
    assert len(dataset.y_train) + len(dataset.y_val) + len(dataset.y_test) == 60
    assert "na" in dataset.vocabulary  # "NA" is a word, not a missing value
    assert dataset.metadata_test["text"].str.startswith("the film was").all()
    assert dataset.spec["text_column"] == "review" and dataset.spec["filename"] == "reviews.csv"
    same = load_user_file("reviews.csv", reviews().encode(), label_column="label", text_column="review")
    assert torch.equal(same.x_train, dataset.x_train)
    check_spec({"name": "reviews.csv", "upload": "0" * 64, "filename": "reviews.csv", "text_column": "review"})


def test_numeric_labels_sort_as_numbers():
    text = "text,stars\n" + "\n".join(f"word{i % 4} here,{[2, 10][i % 2]}" for i in range(12)) + "\n"
    assert load_csv(text.encode(), "stars", text_column="text", filename="s.csv").class_names == ["2", "10"]


@pytest.mark.parametrize(
    ("content", "label", "text_column", "message"),
    [
        (reviews(), "label", "body", "'r.csv': text column 'body' not found; available columns: 'review', 'label'"),
        (reviews(), "stars", "review", "label column 'stars' not found"),
        (reviews(), "review", "review", "text_column and label_column are both 'review'"),
        (reviews().replace('"the film was great, NA"', '"  "', 1), "label", "review", "is empty in 1 row"),
        (reviews().replace(",pos,0", ",,0", 1), "label", "review", "label column 'label' is empty in 1 row"),
        (
            reviews().replace("the film was great", "x" * (MAX_TEXT_CHARS + 1), 1),
            "label",
            "review",
            f"has 1 text over {MAX_TEXT_CHARS:,} characters (first on line 2",
        ),
        ("review,label\n", "label", "review", "has a header but no data rows"),
    ],
)
def test_bad_text_csv_gets_a_specific_message(content, label, text_column, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_csv(content.encode(), label, text_column=text_column, filename="r.csv")


def test_undecodable_bytes_name_the_position():
    data = reviews().encode().replace(b"lovely", b"lov\xe9ly", 1)
    with pytest.raises(DatasetError, match=r"is not UTF-8 text .* at line \d+"):
        load_csv(data, "label", text_column="review", filename="r.csv")
    with pytest.raises(DatasetError, match="UTF-16"):
        load_csv(reviews().encode("utf-16"), "label", text_column="review", filename="r.csv")


def test_an_uploaded_text_csv_reloads_from_its_spec(tmp_path):
    from kdviz.data.uploads import load_upload, save_upload

    spec, dataset = save_upload(
        "reviews.csv", reviews().encode(), root=tmp_path, label_column="label", text_column="review"
    )
    assert spec["text_column"] == "review" and dataset.input_kind == "text"
    again = load_upload(spec, root=tmp_path)
    assert torch.equal(again.x_test, dataset.x_test) and again.vocabulary == dataset.vocabulary
