"""Text as an input kind: a word tokeniser, a vocabulary built from the train split, and `sentiment`.

Token ids are int64 N×L tensors: id 0 is ``<pad>`` (padding at the end of each sentence), id 1 is
``<unk>`` (a word the train split does not contain). Models derive their padding mask from the ids
(`kdviz.models.text.padding_mask`), so the trainer needs no extra tensor.

`sentiment` composes short sentences from words of VADER's human-rated lexicon (the
`vaderSentiment` package, MIT licence: each word rated by ten people from -4 to +4) with negation,
intensifiers and "but", and simulates ten annotators from those real ratings, so each sentence has
a known human label distribution (stored as `true_posterior_*`, like `gaussians`' Bayes posterior).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdviz.data.dataset import SPLITS, Dataset, DatasetError, register_dataset
from kdviz.data.options import check_int, check_seed
from kdviz.data.splits import check_class_counts, stratified_split

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
DEFAULT_MAX_VOCAB = 512  # rows of the text models' default embedding table (kdviz.models.text)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with an apostrophe part, e.g. "didn't") and single punctuation marks."""
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id: ``<pad>``, ``<unk>``, then the train split's words by frequency."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int | None = None, min_count: int = 1) -> Vocabulary:
        """Count the words of `texts` (the train split only); ties in count are ordered alphabetically,
        so the same texts always give the same ids. `max_size` includes ``<pad>`` and ``<unk>``."""
        counts = Counter(word for text in texts for word in tokenize(text))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - 2)]
        return cls((PAD, UNK, *words))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return _index(self.tokens)

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """int64 ids N×`max_length`: words cut after `max_length`, unknown words ``<unk>``, then padding."""
        index = self.index
        ids = torch.full((len(texts), max_length), PAD_ID, dtype=torch.int64)
        for row, text in enumerate(texts):
            words = tokenize(text)[:max_length]
            ids[row, : len(words)] = torch.tensor([index.get(w, UNK_ID) for w in words], dtype=torch.int64)
        return ids

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """The tokens of one row of ids, padding left out."""
        return [self.tokens[int(i)] for i in ids if int(i) != PAD_ID]


@lru_cache(maxsize=8)
def _index(tokens: tuple[str, ...]) -> dict[str, int]:
    return {token: i for i, token in enumerate(tokens)}


def text_dataset(
    name: str,
    texts: Sequence[str],
    labels: np.ndarray,
    class_names: list[str],
    *,
    seed: int,
    max_length: int,
    max_vocab: int,
    true_posterior: np.ndarray | None = None,
    metadata: pd.DataFrame | None = None,
) -> Dataset:
    """Split sentences (stratified, seeded), build the vocabulary from the train split, encode every split.

    Each split's metadata is a DataFrame whose ``text`` column holds the sentences (pages show them in
    place of pixels), plus the columns of `metadata`.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels):
        raise DatasetError(f"{len(texts)} texts but {len(labels)} labels; they must match")
    check_class_counts(labels, class_names)
    indices = stratified_split(labels, seed)
    vocabulary = Vocabulary.build([texts[i] for i in indices["train"]], max_size=max_vocab)
    table = pd.DataFrame({"text": list(texts)})
    if metadata is not None:
        table = pd.concat([table, metadata.reset_index(drop=True)], axis=1)
    fields: dict[str, object] = {}
    for split, index in indices.items():
        fields[f"x_{split}"] = vocabulary.encode([texts[i] for i in index], max_length)
        fields[f"y_{split}"] = torch.from_numpy(labels[index])
        fields[f"metadata_{split}"] = table.iloc[index].reset_index(drop=True)
        if true_posterior is not None:
            posterior = np.ascontiguousarray(true_posterior[index], dtype=np.float32)
            fields[f"true_posterior_{split}"] = torch.from_numpy(posterior)
    assert set(indices) == set(SPLITS)
    return Dataset(
        name=name,
        class_names=list(class_names),
        input_kind="text",
        vocabulary=list(vocabulary.tokens),
        **fields,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- the `sentiment` task

SENTIMENT_CLASSES = ["negative", "neutral", "positive"]
SUBJECTS = ("the movie", "the food", "this book", "the service", "the plot", "the staff", "our stay", "the ending")
COPULAS = ("was", "is", "seemed", "felt")
NEGATIONS = ("not", "never")
# multiplicative scales of the word's rating; VADER's own rules are additive, these are simpler to read
INTENSIFIERS = {"very": 1.5, "really": 1.5, "extremely": 2.0, "somewhat": 0.5, "slightly": 0.5, "fairly": 0.75}
NEGATION_SCALE = -0.74  # VADER's N_SCALAR: a negated word flips and weakens
BUT_WEIGHTS = (0.5, 1.5)  # VADER: the clause after "but" counts more, the one before less
NEUTRAL_BAND = 0.5  # |score| <= 0.5 is neutral
N_ANNOTATORS = 10
SENTIMENT_MAX_LENGTH = 16  # the longest sentence has 13 tokens
_GRAMMAR_WORDS = {w for s in SUBJECTS for w in s.split()} | {*COPULAS, *NEGATIONS, *INTENSIFIERS, "and", "but"}


# Words never drawn into a sentence (the lexicon rates slurs, obscenities and chat acronyms too; this is a
# classroom tool). A lexicon word is left out when it contains one of these stems anywhere, so a few
# harmless words go too ("prickly", "grape", "heroine"): a blocklist errs on the safe side.
BLOCKED_STEMS = (
    # obscenities and insults
    "fuck", "shit", "bitch", "bastard", "whore", "slut", "cunt", "dick", "prick", "piss", "wank", "twat",
    "cock", "damn", "goddam", "crap", "asshole", "dumbass", "jackass", "douche", "tits", "suck", "screw",
    "scumbag", "moron", "idiot", "mofo", "bugger", "bollock", "arse", "shyster",
    # slurs
    "nigg", "fag", "retard", "tard", "dyke", "spaz",
    # sexual violence, sex, drugs, self-harm, hate
    "rape", "rapist", "molest", "pervert", "porn", "sexy", "promiscu", "seduc", "heroin", "joypop", "suicide",
    "nazi", "racis", "fascis", "slave",
    # chat acronyms and laughter (not plain words)
    "lmao", "lmfao", "lmbao", "rofl", "rotf", "rotg", "haha", "lol", "lylas", "lylab", "nimjd", "sapfu",
    "sfete", "snafu", "fubar", "mubar", "yeees", "jhomf", "pmfji", "prblm", "iluaaf", "xoxo", "gratz", "jealz",
)  # fmt: skip
MIN_WORD_LENGTH = 5  # shorter lexicon entries are mostly chat acronyms ("afu", "bsod", "tia")


def allowed_word(word: str, min_length: int = MIN_WORD_LENGTH) -> bool:
    """Whether a lexicon word may be drawn: plain letters, at least `min_length` of them, no blocked stem."""
    return bool(re.fullmatch(r"[a-z]+", word)) and len(word) >= min_length and not any(s in word for s in BLOCKED_STEMS)


@lru_cache(maxsize=1)
def vader_lexicon() -> dict[str, tuple[int, ...]]:
    """Alphabetic words of VADER's lexicon → their ten human ratings (-4..+4), read from the installed package."""
    text = resources.files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    lexicon: dict[str, tuple[int, ...]] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 4 or not re.fullmatch(r"[a-z]+", parts[0]) or parts[0] in _GRAMMAR_WORDS:
            continue
        ratings = tuple(int(v) for v in parts[3].strip("[] ").split(","))
        if len(ratings) == N_ANNOTATORS:
            lexicon[parts[0]] = ratings
    return lexicon


@dataclass(frozen=True)
class Clause:
    """One clause: "<subject> <copula> [negation] [intensifier] <word>"."""

    subject: str
    copula: str
    negation: str | None
    intensifier: str | None
    word: str

    def text(self) -> str:
        return " ".join(p for p in (self.subject, self.copula, self.negation, self.intensifier, self.word) if p)

    def scale(self) -> float:
        """What the word's rating is multiplied by: the intensifier's scale, times `NEGATION_SCALE` if negated."""
        scale = INTENSIFIERS[self.intensifier] if self.intensifier else 1.0
        return scale * (NEGATION_SCALE if self.negation else 1.0)


def annotator_scores(
    clauses: Sequence[Clause], conjunction: str | None, lexicon: dict[str, tuple[int, ...]]
) -> np.ndarray:
    """Each simulated annotator's score of a sentence (length `N_ANNOTATORS`).

    Annotator j rates each word with the word's j-th human rating in the lexicon (the lexicon does
    not say which person gave which rating, so "annotator j" is a modelling choice), scaled by the
    clause's intensifier and negation; clauses add up, weighted (0.5, 1.5) around "but".
    """
    weights = BUT_WEIGHTS if conjunction == "but" else (1.0, 1.0)
    scores = np.zeros(N_ANNOTATORS)
    for clause, weight in zip(clauses, weights):
        scores += weight * clause.scale() * np.asarray(lexicon[clause.word], dtype=float)
    return scores


def score_labels(scores: np.ndarray) -> np.ndarray:
    """0 negative (< -0.5), 1 neutral, 2 positive (> 0.5)."""
    return np.where(scores < -NEUTRAL_BAND, 0, np.where(scores > NEUTRAL_BAND, 2, 1))


def human_distribution(scores: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Share of annotators choosing each class (the last axis of `scores` runs over annotators)."""
    labels = score_labels(scores)
    return np.stack([(labels == k).mean(axis=-1) for k in range(n_classes)], axis=-1)


def _sentence(rng: np.random.Generator, words: list[str]) -> tuple[list[Clause], str | None]:
    def clause() -> Clause:
        return Clause(
            subject=SUBJECTS[rng.integers(len(SUBJECTS))],
            copula=COPULAS[rng.integers(len(COPULAS))],
            negation=NEGATIONS[rng.integers(len(NEGATIONS))] if rng.random() < 0.3 else None,
            intensifier=list(INTENSIFIERS)[rng.integers(len(INTENSIFIERS))] if rng.random() < 0.4 else None,
            word=words[rng.integers(len(words))],
        )

    if rng.random() < 0.6:
        return [clause()], None
    return [clause(), clause()], ("and", "but")[rng.integers(2)]


@register_dataset(
    "sentiment",
    "text",
    "short sentences built from VADER's human-rated words (with negation, intensifiers, 'but'); "
    "3 classes, each sentence's label distribution over ten simulated annotators is known",
    {"n_samples": 3000, "n_words": 150, "min_word_length": MIN_WORD_LENGTH, "seed": 0},
)
def load_sentiment(
    n_samples: int = 3000, n_words: int = 150, min_word_length: int = MIN_WORD_LENGTH, seed: int = 0
) -> Dataset:
    """Generate sentences from `n_words` lexicon words drawn at random among the `allowed_word`s (plain
    words of at least `min_word_length` letters, none of `BLOCKED_STEMS`); the label of each sentence is
    one annotator's, drawn at random.

    A random annotator's label (not the majority) makes `true_posterior_*` exactly p(label | sentence),
    as for `gaussians`: a model fitting the labels well learns the human disagreement, and calibration
    can be measured against it. The majority label and the agreement stay in the metadata.
    """
    n_samples = check_int("n_samples", n_samples, 30, 200_000)
    lexicon = vader_lexicon()
    n_words = check_int("n_words", n_words, 2, 480)  # all fit the default vocabulary
    min_word_length = check_int("min_word_length", min_word_length, 3, 12)
    seed = check_seed(seed)
    rng = np.random.default_rng((seed, 0x7E47))
    words = sorted(w for w in lexicon if allowed_word(w, min_word_length))
    if len(words) < n_words:
        raise DatasetError(
            f"n_words={n_words} but only {len(words)} lexicon words have at least {min_word_length} letters; "
            "lower n_words or min_word_length"
        )
    pool = [words[i] for i in np.sort(rng.choice(len(words), size=n_words, replace=False))]
    texts, scores, sentences, conjunctions = [], [], [], []
    for _ in range(n_samples):
        clauses, conjunction = _sentence(rng, pool)
        joined = f" {conjunction} ".join(c.text() for c in clauses)
        texts.append(joined)
        sentences.append(clauses)
        conjunctions.append(conjunction)
        scores.append(annotator_scores(clauses, conjunction, lexicon))
    posterior = human_distribution(np.stack(scores))
    annotator = rng.integers(N_ANNOTATORS, size=n_samples)
    labels = score_labels(np.stack(scores))[np.arange(n_samples), annotator]
    metadata = pd.DataFrame(
        {
            "majority": [SENTIMENT_CLASSES[k] for k in posterior.argmax(axis=1)],
            "agreement": posterior.max(axis=1),
            "n_clauses": [len(c) for c in sentences],
            "n_words": [len(t.split()) for t in texts],
            "negation": [any(c.negation for c in cs) for cs in sentences],
            "intensifier": [any(c.intensifier for c in cs) for cs in sentences],
            "conjunction": [conj or "none" for conj in conjunctions],
        }
    )
    return text_dataset(
        "sentiment",
        texts,
        labels,
        SENTIMENT_CLASSES,
        seed=seed,
        max_length=SENTIMENT_MAX_LENGTH,
        max_vocab=DEFAULT_MAX_VOCAB,
        true_posterior=posterior,
        metadata=metadata,
    )


# --------------------------------------------------------------------------- users' own text (CSV)

MAX_TEXT_CHARS = 5_000  # one text; longer ones are almost certainly a wrong column or a broken file
TEXT_MAX_LENGTH = 64  # words kept per text (the rest is cut)


def load_text_csv(
    source: Any,
    text_column: str,
    label_column: str,
    *,
    seed: int = 0,
    max_bytes: int | None = None,
    filename: str | None = None,
) -> Dataset:
    """A text `Dataset` from a UTF-8 CSV with a header row: `text_column` holds one text per row,
    `label_column` its class. Texts are cut after `TEXT_MAX_LENGTH` words; the vocabulary comes from the
    train split (`DEFAULT_MAX_VOCAB` most frequent words). Empty or over-long texts, missing labels,
    missing columns and non-UTF-8 bytes are refused with the line at fault.
    """
    from kdviz.data.files import (
        DEFAULT_MAX_BYTES,
        _about,
        _check_text,
        _count,
        _encode_labels,
        _read_source,
        _source_spec,
        read_csv_table,
    )

    data, name = _read_source(source, filename, DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)
    seed = check_seed(seed)
    with _about(name):
        _check_text(data)
        # every cell as written: "NA" is a word here, not a missing value
        table = read_csv_table(data, dtype=str, keep_default_na=False)
        columns = [str(c) for c in table.columns]
        if text_column == label_column:
            raise DatasetError(f"text_column and label_column are both {text_column!r}; they must differ")
        for role, column in (("text", text_column), ("label", label_column)):
            if column not in columns:
                raise DatasetError(
                    f"{role} column {column!r} not found; available columns: {', '.join(map(repr, columns))}"
                )
        if table.empty:
            raise DatasetError("has a header but no data rows")
        texts = [str(t) for t in table[text_column]]
        # line numbers count the header as line 1 (texts with line breaks inside quotes shift them)
        empty = [i for i, t in enumerate(texts) if not tokenize(t)]
        if empty:
            raise DatasetError(
                f"text column {text_column!r} is empty in {_count(len(empty), 'row')} (first on line {empty[0] + 2})"
            )
        long = [i for i, t in enumerate(texts) if len(t) > MAX_TEXT_CHARS]
        if long:
            raise DatasetError(
                f"text column {text_column!r} has {_count(len(long), 'text')} over {MAX_TEXT_CHARS:,} characters "
                f"(first on line {long[0] + 2}, {len(texts[long[0]]):,} characters); is it the right column?"
            )
        raw_labels = table[label_column].str.strip()
        missing = np.flatnonzero((raw_labels == "").to_numpy())
        if len(missing):
            raise DatasetError(
                f"label column {label_column!r} is empty in {_count(len(missing), 'row')} "
                f"(first on line {missing[0] + 2})"
            )
        numeric = pd.to_numeric(raw_labels, errors="coerce")
        values = numeric.to_numpy() if numeric.notna().all() else raw_labels.to_numpy()
        y, class_names = _encode_labels(values)
        dataset = text_dataset(
            f"csv:{name}", texts, y, class_names, seed=seed, max_length=TEXT_MAX_LENGTH, max_vocab=DEFAULT_MAX_VOCAB
        )
    dataset.spec = _source_spec("csv", name, data, label_column=label_column, text_column=text_column, seed=seed)
    return dataset
