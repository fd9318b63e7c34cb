"""Home: what kdviz is, and what it can train right now."""

import pandas as pd
import streamlit as st

from kdviz.data import list_datasets
from kdviz.distill import list_methods

st.title("kdviz — an interactive lab for knowledge distillation")
st.markdown(
    """
**Knowledge distillation** trains a small *student* network to imitate a large *teacher*: instead of
learning from hard labels alone, the student also matches the teacher's temperature-softened output
distribution, whose small probabilities on wrong classes ("dark knowledge") say which classes the
teacher finds similar. kdviz trains small teacher/student pairs on built-in or your own data and
compares them.

Train a teacher, a scratch student and a distilled student from a terminal:

```
kdviz train --dataset shapes --teacher cnn-l --student cnn-s --method kd --temperature 4 --alpha 0.9
```
"""
)

left, right = st.columns(2)
with left:
    st.subheader("Built-in datasets")
    st.dataframe(
        pd.DataFrame([{"name": d.name, "kind": d.input_kind, "description": d.description} for d in list_datasets()]),
        hide_index=True,
    )
with right:
    st.subheader("Distillation methods")
    st.dataframe(
        pd.DataFrame(
            [
                {"name": m.name, "family": m.card.family, "needs teacher": m.needs_teacher, "paper": m.card.paper}
                for m in list_methods()
            ]
        ),
        hide_index=True,
    )
