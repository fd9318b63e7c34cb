"""A toy translation task built so that distillation matters: seeded parallel corpus, word vocabularies, metrics.

The source side is a small English-like grammar in subject–verb–object order:

    DET [ADJ] NOUN [ADV] VERB DET [ADJ] NOUN          e.g. "the big dog often sees a red cat"

The target side (an invented language) puts the verb last (subject–object–verb), adjectives after their
nouns, the adverb just before the verb, and marks the object with a particle:

    NOUN [ADJ] DET  NOUN [ADJ] DET wo  [ADV] VERB      e.g. "inu oki ta  neko aka na wo  yoku miru"

Some source words have two or three valid translations, one- or two-token phrases (`VARIANTS`); every
reference picks one at random with fixed, unequal probabilities, independently per occurrence. So the
training data is multimodal as real parallel data is: the same source phrase has several targets, and a
model that mixes the first token of one variant with the second of another writes something no reference
contains. The generator keeps each example's *slots* (per target position, the set of valid token
sequences), so exact match against **any** valid translation, and which variant a model chose, are exact.

Tokenisation needs no download: whitespace words, one vocabulary per side built from the training split
(`<pad>` = 0, `<bos>` = 1, `<eos>` = 2, `<unk>` = 3), and `pad_batch` returns padded ids with their mask.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIALS",
    "UNK",
    "VARIANTS",
    "Example",
    "ParallelCorpus",
    "TranslationConfig",
    "Vocab",
    "exact_match",
    "exact_match_rate",
    "make_corpus",
    "pad_batch",
    "segment",
    "variant_choices",
    "variant_entropy",
]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

Phrase = tuple[str, ...]

# source word → target words; a list of (phrase, probability) is a multimodal word.
_NOUNS: dict[str, object] = {
    "dog": "inu",
    "cat": "neko",
    "bird": [(("tori",), 0.6), (("chocho",), 0.4)],
    "fish": "sakana",
    "horse": [(("uma",), 0.5), (("koma",), 0.5)],
    "child": "ko",
    "farmer": [(("nofu",), 0.7), (("hyaku", "sho"), 0.3)],
    "king": "o",
    "teacher": [(("sensei",), 0.5), (("kyo", "shi"), 0.5)],
    "river": "kawa",
    "tree": "ki",
    "house": [(("ie",), 0.6), (("uchi",), 0.4)],
}
_ADJECTIVES: dict[str, object] = {
    "big": [(("oki",), 0.5), (("dai",), 0.5)],
    "small": "chisai",
    "red": "aka",
    "old": [(("furui",), 0.6), (("toshi", "yori"), 0.4)],
    "young": "wakai",
    "quiet": [(("shizuka",), 0.5), (("oto", "nashi"), 0.3), (("nodoka",), 0.2)],
}
_VERBS: dict[str, object] = {
    "sees": [(("miru",), 0.6), (("nagameru",), 0.4)],
    "likes": "suku",
    "follows": [(("ou",), 0.5), (("tsuite", "iku"), 0.5)],
    "helps": "tasukeru",
    "finds": [(("mitsukeru",), 0.7), (("hakken", "suru"), 0.3)],
    "calls": "yobu",
    "fears": "osoreru",
}
_ADVERBS: dict[str, object] = {
    "often": [(("yoku",), 0.5), (("shiba", "shiba"), 0.3), (("tabi", "tabi"), 0.2)],
    "never": "kesshite",
    "quickly": [(("hayaku",), 0.6), (("sugu", "ni"), 0.4)],
    "slowly": "yukkuri",
}
_DETERMINERS = {"the": "ta", "a": "na"}
_OBJECT_PARTICLE = "wo"

#: The multimodal source words and their valid target phrases with the probabilities the references use.
VARIANTS: dict[str, tuple[tuple[Phrase, float], ...]] = {
    word: tuple(options)
    for table in (_NOUNS, _ADJECTIVES, _VERBS, _ADVERBS)
    for word, options in table.items()
    if isinstance(options, list)
}


@dataclass(frozen=True)
class Example:
    """One sentence pair: source words, the sampled reference, and per target slot the valid phrases.

    `slots[i]` = (source word or "", valid phrases); a multimodal word's slot has ≥ 2 phrases.
    """

    source: tuple[str, ...]
    reference: tuple[str, ...]
    slots: tuple[tuple[str, tuple[Phrase, ...]], ...]


@dataclass(frozen=True)
class TranslationConfig:
    """Corpus sizes and grammar rates; `seed` fixes every sentence and every variant choice."""

    n_train: int = 4000
    n_valid: int = 200
    n_test: int = 500
    p_adjective: float = 0.5
    p_adverb: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        for name in ("n_train", "n_valid", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("p_adjective", "p_adverb"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


class Vocab:
    """A word vocabulary: `<pad>`=0, `<bos>`=1, `<eos>`=2, `<unk>`=3, then words by frequency (ties alphabetical)."""

    def __init__(self, words: Iterable[str]):
        counts = Counter(words)
        for special in SPECIALS:
            counts.pop(special, None)
        ordered = sorted(counts, key=lambda w: (-counts[w], w))
        self.itos: list[str] = [*SPECIALS, *ordered]
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]]) -> Vocab:
        return cls(word for sentence in sentences for word in sentence)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Sequence[str], *, bos: bool = False, eos: bool = False) -> list[int]:
        """Word ids; unknown words map to `<unk>`."""
        ids = [self.stoi.get(w, UNK) for w in words]
        return [BOS] * bos + ids + [EOS] * eos

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of `ids`, stopping at the first `<eos>` and skipping `<pad>`/`<bos>`."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return words


def pad_batch(sequences: Sequence[Sequence[int]], pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): right-padded (N, L) long tensor and its bool mask (True on real tokens)."""
    if not sequences:
        raise ValueError("pad_batch needs at least one sequence")
    length = max(len(s) for s in sequences)
    if length == 0:
        raise ValueError("pad_batch got only empty sequences")
    ids = torch.full((len(sequences), length), pad, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, seq in enumerate(sequences):
        mask[row, : len(seq)] = True
    return ids, mask


# --------------------------------------------------------------------------- the generator


def _options(entry: object) -> tuple[tuple[Phrase, ...], np.ndarray]:
    if isinstance(entry, str):
        return ((entry,),), np.ones(1)
    phrases = tuple(p for p, _ in entry)  # type: ignore[union-attr]
    return phrases, np.asarray([w for _, w in entry], dtype=float)  # type: ignore[union-attr]


def _slot(word: str, entry: object, rng: np.random.Generator) -> tuple[Phrase, tuple[str, tuple[Phrase, ...]]]:
    phrases, weights = _options(entry)
    choice = phrases[rng.choice(len(phrases), p=weights / weights.sum())] if len(phrases) > 1 else phrases[0]
    return choice, (word if len(phrases) > 1 else "", phrases)


def _sentence(rng: np.random.Generator, config: TranslationConfig) -> Example:
    nouns, adjectives = list(_NOUNS), list(_ADJECTIVES)
    verbs, adverbs, dets = list(_VERBS), list(_ADVERBS), list(_DETERMINERS)

    def noun_phrase() -> tuple[list[str], list[tuple[str, object]]]:
        det, noun = dets[rng.integers(len(dets))], nouns[rng.integers(len(nouns))]
        adj = adjectives[rng.integers(len(adjectives))] if rng.random() < config.p_adjective else None
        source = [det, *([adj] if adj else []), noun]
        target = [(noun, _NOUNS[noun]), *([(adj, _ADJECTIVES[adj])] if adj else []), (det, _DETERMINERS[det])]
        return source, target

    subj_src, subj_tgt = noun_phrase()
    obj_src, obj_tgt = noun_phrase()
    verb = verbs[rng.integers(len(verbs))]
    adv = adverbs[rng.integers(len(adverbs))] if rng.random() < config.p_adverb else None
    source = [*subj_src, *([adv] if adv else []), verb, *obj_src]
    plan = [*subj_tgt, *obj_tgt, ("", _OBJECT_PARTICLE), *([(adv, _ADVERBS[adv])] if adv else []), (verb, _VERBS[verb])]
    reference: list[str] = []
    slots = []
    for word, entry in plan:
        phrase, slot = _slot(word, entry, rng)
        reference.extend(phrase)
        slots.append(slot)
    return Example(tuple(source), tuple(reference), tuple(slots))


@dataclass
class ParallelCorpus:
    """Train / valid / test examples (test and valid sources never occur in train) and the two vocabularies."""

    config: TranslationConfig
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    source_vocab: Vocab = field(repr=False)
    target_vocab: Vocab = field(repr=False)

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; valid: train, valid, test")
        return getattr(self, name)

    def encode_sources(self, examples: Sequence[Example]) -> list[list[int]]:
        return [self.source_vocab.encode(e.source) for e in examples]

    def encode_targets(self, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
        """Target ids with `<eos>` appended (the decoder input adds `<bos>` in front)."""
        return [self.target_vocab.encode(s, eos=True) for s in sentences]


def make_corpus(config: TranslationConfig = TranslationConfig()) -> ParallelCorpus:
    """The seeded toy corpus; the same config always gives the same sentences, references and vocabularies."""
    config.validate()
    rng = np.random.default_rng(config.seed)
    train: list[Example] = []
    held: list[Example] = []
    train_sources: set[tuple[str, ...]] = set()
    held_sources: set[tuple[str, ...]] = set()
    n_held = config.n_valid + config.n_test
    attempts = 0
    while len(held) < n_held:  # held-out sources first, distinct from each other
        attempts += 1
        if attempts > 100 * n_held:
            raise ValueError(f"cannot draw {n_held} distinct held-out sentences from the grammar")
        example = _sentence(rng, config)
        if example.source not in held_sources:
            held_sources.add(example.source)
            held.append(example)
    while len(train) < config.n_train:  # training pairs may repeat a source (with another reference)
        example = _sentence(rng, config)
        if example.source not in held_sources:
            train.append(example)
            train_sources.add(example.source)
    source_vocab = Vocab.from_sentences(e.source for e in train)
    target_vocab = Vocab.from_sentences(e.reference for e in train)
    return ParallelCorpus(config, train, held[: config.n_valid], held[config.n_valid :], source_vocab, target_vocab)


# --------------------------------------------------------------------------- metrics the grammar makes exact


def segment(output: Sequence[str], example: Example) -> list[int] | None:
    """The variant index chosen in each slot when `output` is a valid translation of `example`, else None."""
    words = tuple(output)
    slots = example.slots

    def walk(slot: int, pos: int) -> list[int] | None:
        if slot == len(slots):
            return [] if pos == len(words) else None
        for index, phrase in enumerate(slots[slot][1]):
            if words[pos : pos + len(phrase)] == phrase:
                rest = walk(slot + 1, pos + len(phrase))
                if rest is not None:
                    return [index, *rest]
        return None

    return walk(0, 0)


def exact_match(output: Sequence[str], example: Example) -> bool:
    """True when `output` is one of the example's valid translations (any combination of variants)."""
    return segment(output, example) is not None


def exact_match_rate(outputs: Sequence[Sequence[str]], examples: Sequence[Example]) -> float:
    """Share of outputs that are a valid translation of their example."""
    if len(outputs) != len(examples) or not examples:
        raise ValueError(f"need one output per example, got {len(outputs)} outputs for {len(examples)} examples")
    return float(np.mean([exact_match(o, e) for o, e in zip(outputs, examples)]))


def variant_choices(outputs: Sequence[Sequence[str]], examples: Sequence[Example]) -> dict[str, list[int]]:
    """Per multimodal source word, the variant index each output chose for it (−1: no valid variant found).

    An output that is a valid translation is segmented exactly; otherwise a variant counts as chosen when
    its phrase occurs in the output (the longest such phrase; −1 when none does).
    """
    if len(outputs) != len(examples):
        raise ValueError(f"need one output per example, got {len(outputs)} outputs for {len(examples)} examples")
    choices: dict[str, list[int]] = {}
    for output, example in zip(outputs, examples):
        words = tuple(output)
        exact = segment(words, example)
        for slot_index, (word, phrases) in enumerate(example.slots):
            if len(phrases) < 2:
                continue
            if exact is not None:
                chosen = exact[slot_index]
            else:
                found = [i for i, p in enumerate(phrases) if _contains(words, p)]
                chosen = max(found, key=lambda i: len(phrases[i])) if found else -1
            choices.setdefault(word, []).append(chosen)
    return choices


def _contains(words: Phrase, phrase: Phrase) -> bool:
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def variant_entropy(choices: dict[str, list[int]]) -> float:
    """Output multimodality: the mean over multimodal source words of the normalised entropy of the choice.

    For a word with k valid variants, H = −Σ p_i log p_i / log k over the variants the outputs chose (−1,
    no valid variant, is left out), so 0 means the model always writes the same variant and 1 means it
    spreads evenly over all k. The references themselves score high (they pick at random); a model that
    commits to one mode per word, as a teacher's beam search does, scores near 0. Words never realised
    validly are skipped; NaN when none is left.
    """
    values = []
    for word, picks in choices.items():
        k = len(VARIANTS[word]) if word in VARIANTS else max(picks, default=0) + 1
        valid = [p for p in picks if p >= 0]
        if not valid or k < 2:
            continue
        counts = np.bincount(valid, minlength=k).astype(float)
        probs = counts[counts > 0] / counts.sum()
        values.append(float(-(probs * np.log(probs)).sum() / math.log(k)))
    return float(np.mean(values)) if values else math.nan
