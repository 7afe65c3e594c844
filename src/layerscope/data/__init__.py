"""Datasets and probing data: readers, the embedded corpus, silver syntax labels."""

from .corpus import cifar10_test, fetch_corpus, multiemo
from .dataset import TextDataset, as_text_dataset
from .readers import read_conllu, read_dataset
from .silver import silver_labels  # spaCy itself is imported on first use

__all__ = [
    "TextDataset",
    "as_text_dataset",
    "cifar10_test",
    "fetch_corpus",
    "multiemo",
    "read_conllu",
    "read_dataset",
    "silver_labels",
]
