"""Run store: finished runs keyed by config hash (SQLite index, safetensors weights, JSON metrics).

store = RunStore()                     # $KDVIZ_HOME or ~/.kdviz (kdviz.paths.default_home)
record = store.find(config) or store.save(config, metrics, summary, {epoch: state_dict})
weights = store.load_weights(record.id)            # last checkpoint
card = store.export(record.id); store.import_run(card)
"""

from kdviz.hashing import ConfigError, canonical_json, config_hash
from kdviz.store.errors import (
    CheckpointNotFoundError,
    CorruptRunError,
    InvalidRunError,
    RunCardError,
    RunExistsError,
    RunNotFoundError,
    RunStoreError,
)
from kdviz.store.runs import RunRecord, RunStore, spec_name

__all__ = [
    "CheckpointNotFoundError",
    "ConfigError",
    "CorruptRunError",
    "InvalidRunError",
    "RunCardError",
    "RunExistsError",
    "RunNotFoundError",
    "RunRecord",
    "RunStore",
    "RunStoreError",
    "canonical_json",
    "config_hash",
    "spec_name",
]
