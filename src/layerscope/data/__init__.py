"""Datasets and probing data: readers, the embedded corpus, silver syntax labels."""

from .dataset import TextDataset, as_text_dataset

__all__ = ["TextDataset", "as_text_dataset"]
