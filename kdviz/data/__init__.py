"""Datasets: the registry of built-in data and validated loaders for users' files."""

from kdviz.data import builtin, shapes, text  # noqa: F401  (importing registers the built-in datasets)
from kdviz.data.dataset import (
    Dataset,
    DatasetError,
    DatasetInfo,
    Split,
    list_datasets,
    load_dataset,
    register_dataset,
)
from kdviz.data.files import load_csv, load_image_folder_zip, load_npz, load_user_file

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "Split",
    "list_datasets",
    "load_csv",
    "load_dataset",
    "load_image_folder_zip",
    "load_npz",
    "load_user_file",
    "register_dataset",
]
