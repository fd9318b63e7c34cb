"""Translation: word-level vs sequence-level KD on a toy translation task (Kim & Rush 2016), with outputs."""

import streamlit as st

from kdviz.experiments import seqkd
from kdviz.plots import method_bars, token_probabilities
from kdviz.views import translation as tv
from ui.app import bootstrap
from ui.widgets import chart, table

bootstrap()

st.title("Translation: word- vs sequence-level KD")
st.markdown(
    "A toy translation task built so that distillation matters: an English-like source grammar, a target "
    "language that reorders (verb last, adjectives after nouns) and gives some words **two or three valid "
    "translations**, picked at random in every reference — multimodal data, as real parallel data is. "
    "A large GRU teacher learns all pairs; small students learn a subset **from scratch**, by **word-level KD** "
    "(match the teacher's distribution at every reference position), by **sequence-level KD** (train on the "
    "teacher's beam outputs) or its variants. *Exact match* accepts any valid translation; *multimodality* is the "
    "mean normalised entropy of which variant a model writes for each ambiguous word (0: always the same one)."
)

result = tv.load_results()
if result is None:
    st.info("No results yet: run `kdviz experiment seqkd --save sample_models/seqkd/results.json`.")
    st.stop()

st.caption(result["setup"])
table(tv.summary_table(result), "translation_summary", name="seqkd")
st.caption(
    f"Mean ± 95 % Student-t half-interval over seeds. The references' own multimodality: "
    f"{result['reference_multimodality']:.3f}."
)
chart(
    method_bars(
        result["summary"],
        result["teacher"],
        ("bleu_greedy", "bleu_beam", "exact_greedy", "multimodality_greedy"),
        seqkd.LABELS,
        title="Students by method (teacher dashed)",
    ),
    "translation_bars",
)
st.subheader("Paired tests")
table(tv.tests_table(result), "translation_tests", name="seqkd-tests")

st.subheader("Outputs side by side")
n_inputs = len(result["examples"]["inputs"])
index = st.selectbox(
    "Test input", range(n_inputs), format_func=lambda i: tv.example_label(result, i), key="translation_input"
)
chart(
    token_probabilities(tv.example_rows(result, index), title="Each model's output and the probability of each token"),
    "translation_tokens",
)
st.caption("Students shown: seed 0. Colour: the probability the model gave the token it wrote; <eos> included.")
