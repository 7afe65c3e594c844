"""Datasets and probing data: readers, the embedded corpus, silver syntax labels, probing tasks."""

from .control import control_labels_sentence, control_labels_word
from .corpus import cifar10_test, fetch_corpus, multiemo
from .dataset import TextDataset, as_text_dataset
from .readers import read_conllu, read_dataset
from .silver import silver_labels  # spaCy itself is imported on first use
from .splits import split_examples
from .tasks import ProbingTask, builtin_tasks, list_builtin_tasks, merge_rare_classes, task_from_file

__all__ = [
    "ProbingTask",
    "TextDataset",
    "as_text_dataset",
    "builtin_tasks",
    "cifar10_test",
    "control_labels_sentence",
    "control_labels_word",
    "fetch_corpus",
    "list_builtin_tasks",
    "merge_rare_classes",
    "multiemo",
    "read_conllu",
    "read_dataset",
    "silver_labels",
    "split_examples",
    "task_from_file",
]
