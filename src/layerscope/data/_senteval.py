"""Built-in probing tasks over the embedded MultiEmo corpus and its spaCy silver parses.

Everything is derived from ONE pool: the de-duplicated MultiEmo sentences in a fixed shuffled order
(``POOL_SEED``), parsed by :func:`~layerscope.data.silver_labels` in chunks of ``CHUNK`` sentences (each
chunk cached under its own fingerprint, so any prefix of the pool is parsed at most once, whatever
``n_sentences`` is). Word-level tasks use the first ``n_sentences`` pool sentences. A sentence-level task
starts from a prefix a few times ``n_sentences`` long and doubles it (up to the whole corpus) until every
class reaches its quota, so a task's content depends only on its own name, ``n_sentences`` and ``seed``.

The sentence tasks follow SentEval (Conneau et al. 2018) in spirit, built our own way; the per-task
descriptions below say what each controls. ``docs/probing-tasks.md`` has the measured distributions.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError, DataError
from .corpus import multiemo
from .dataset import TextDataset
from .silver import silver_cache_path, silver_labels
from .splits import split_examples
from .tasks import ProbingTask, merge_rare_classes

POOL_SEED = 1234
CHUNK = 1000
MIN_SENTENCES = 40
MIN_PER_CLASS = 4  # train >= 2 plus one each in val and test
GROUP_CAP = 0.05  # at most this share of a class's quota per verb form / subject or object noun
WC_WORDS = 100
WC_SKIP = 100  # the most frequent word types (function words) are not WC targets
SENTLEN_BINS = ((5, 8), (9, 12), (13, 16), (17, 20), (21, 25), (26, 28))
DEPTH_CLASSES = ("3", "4", "5", "6", "7+")
SILVER_NOTE = "Silver labels: spaCy en_core_web_sm (automatic, not gold) on MultiEmo review sentences."


# -- the shared pool -----------------------------------------------------------------------------------------
class Pool:
    """The de-duplicated corpus in a fixed shuffled order, parsed lazily chunk by chunk."""

    def __init__(self, *, progress: bool) -> None:
        corpus = multiemo()
        first: dict[str, int] = {}
        for i, t in enumerate(corpus.texts):
            first.setdefault(t, i)
        unique = np.fromiter(first.values(), dtype=np.int64)
        self._setup(corpus, unique[np.random.default_rng(POOL_SEED).permutation(len(unique))], progress)

    @classmethod
    def from_parsed(cls, dataset: TextDataset) -> Pool:
        """A fully loaded pool over a dataset that already has the silver labels and ``sentiment``."""
        pool = cls.__new__(cls)
        pool._setup(dataset, np.arange(len(dataset)), False)
        pool._add(dataset)
        return pool

    def _setup(self, corpus: TextDataset, order: np.ndarray, progress: bool) -> None:
        self._corpus = corpus
        self._order = order
        self._progress = progress
        self.texts: list[str] = []
        self.words: list[list[str]] = []
        self.spans: list[list[tuple[int, int]]] = []
        self.ids: list[str] = []
        self.labels: dict[str, list[Any]] = {
            k: [] for k in ("upos", "xpos", "dep", "head", "morph", "sentiment")
        }
        self._feat: dict[str, list[Any]] = {"root": [], "depth": []}

    @property
    def total(self) -> int:
        """Sentences in the whole (de-duplicated) corpus."""
        return len(self._order)

    def __len__(self) -> int:
        return len(self.texts)

    def ensure(self, n: int) -> None:
        """Parse (or read from the silver cache) chunks until the first ``min(n, total)`` are loaded."""
        n = min(n, self.total)
        todo = list(range(-(-len(self) // CHUNK), -(-n // CHUNK)))  # only the last chunk is partial
        if not todo:
            return
        chunks = [self._corpus.subset(self._order[k * CHUNK : (k + 1) * CHUNK].tolist()) for k in todo]
        cold = sum(not silver_cache_path(c).exists() for c in chunks)
        bar = _bar(self._progress and cold > 0, "silver parses (spaCy)")
        with bar:
            task = bar.add_task("parse", total=len(chunks))
            for chunk in chunks:
                self._add(silver_labels(chunk, progress=False))
                bar.advance(task)

    def _add(self, ds: TextDataset) -> None:
        self.texts += ds.texts
        self.words += ds.words
        self.spans += ds.word_spans
        self.ids += ds.ids
        for k, v in self.labels.items():
            v += ds.labels[k]
        for heads in ds.labels["head"]:
            roots = [i for i, h in enumerate(heads) if h == -1]
            self._feat["root"].append(roots[0] if len(roots) == 1 else None)
            self._feat["depth"].append(_depth(heads))

    def root(self, i: int) -> int | None:
        """The root word of sentence ``i`` if spaCy found exactly one sentence in it, else ``None``."""
        return self._feat["root"][i]  # type: ignore[no-any-return]

    def depth(self, i: int) -> int:
        """Longest root-to-word path (in arcs) over the sentences of text ``i``."""
        return self._feat["depth"][i]  # type: ignore[no-any-return]

    def children(self, i: int, head: int, deps: set[str]) -> list[int]:
        """Words of text ``i`` attached to ``head`` with a relation in ``deps``."""
        hs, ds = self.labels["head"][i], self.labels["dep"][i]
        return [j for j, h in enumerate(hs) if h == head and ds[j] in deps]

    def dataset(
        self, idx: Sequence[int], *, name: str, labels: dict[str, list[Any]] | None = None
    ) -> TextDataset:
        """A ``TextDataset`` of pool sentences ``idx`` (all silver labels unless ``labels`` is given)."""
        lab = {k: [v[i] for i in idx] for k, v in self.labels.items()} if labels is None else labels
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            words=[list(self.words[i]) for i in idx],
            word_spans=[list(self.spans[i]) for i in idx],
            labels=lab,
            ids=[self.ids[i] for i in idx],
            name=name,
        )


def _depth(heads: list[int]) -> int:
    depth: dict[int, int] = {}
    for start in range(len(heads)):
        path: list[int] = []
        j = start
        while j not in depth and heads[j] != -1 and len(path) <= len(heads):
            path.append(j)
            j = heads[j]
        d = depth.get(j, 0)
        depth.setdefault(j, d)
        for k in reversed(path):
            d += 1
            depth[k] = d
    return max(depth.values(), default=0)


def _bar(show: bool, label: str) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=True,
    )


# -- shared helpers ------------------------------------------------------------------------------------------
class Built(NamedTuple):
    """How to make a task (deferred: a short draw is never validated), and whether every class is full."""

    make: Callable[[], ProbingTask]
    full: bool


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _quota(name: str, n: int, n_classes: int) -> int:
    q = n // n_classes
    if q < MIN_PER_CLASS:
        raise ConfigError(
            f"n_sentences={n} is too small for task {name!r} ({n_classes} classes need at least "
            f"{MIN_PER_CLASS * n_classes} sentences)"
        )
    return q


def _balanced(
    cands: dict[str, list[int]],
    quota: int,
    rng: np.random.Generator,
    *,
    group: Callable[[int], str] | None = None,
    cap: int | None = None,
) -> tuple[dict[str, list[int]], bool]:
    """The same number (<= quota) of random candidates per class; at most ``cap`` per group if given."""
    picked: dict[str, list[int]] = {}
    for c in sorted(cands):
        order = [cands[c][k] for k in rng.permutation(len(cands[c]))]
        if group is not None and cap is not None:
            seen: Counter[str] = Counter()
            kept = []
            for i in order:
                g = group(i)
                if seen[g] < cap:
                    seen[g] += 1
                    kept.append(i)
            order = kept
        picked[c] = order
    q = min(quota, *(len(v) for v in picked.values())) if picked else 0
    return {c: v[:q] for c, v in picked.items()}, q >= quota


def _summary(labels: Sequence[Any], level: str) -> str:
    flat = Counter(labels if level == "sentence" else [c for ls in labels for c in ls if c is not None])
    total = sum(flat.values())
    what = "examples" if level == "sentence" else "labelled words"
    if len(flat) <= 8:
        parts = ", ".join(f"{c} {k}" for c, k in sorted(flat.items()))
        return f" Measured: {total} {what}; {parts}."
    top = ", ".join(f"{c} {k / total:.1%}" for c, k in flat.most_common(5))
    return f" Measured: {total} {what} in {len(flat)} classes; most common {top}."


def _sentence_task(
    name: str,
    pool: Pool,
    picked: dict[str, list[int]],
    *,
    seed: int,
    description: str,
    groups: Callable[[int], str] | None = None,
) -> ProbingTask:
    """A sentence task over the picked pool sentences (kept in pool order, which is a random order)."""
    label_of = {i: c for c, idx in picked.items() for i in idx}
    idx = sorted(label_of)
    if not idx:
        raise DataError(f"task {name!r}: no sentence of the corpus qualifies")
    labels = [label_of[i] for i in idx]
    extra = {"group": [groups(i) for i in idx]} if groups is not None else {}
    ds = pool.dataset(idx, name=f"multiemo-{name}", labels={name: labels, **extra})
    keys = extra.get("group", ds.texts)
    split = split_examples(len(idx), groups=keys, seed=seed, stratify=labels)
    return ProbingTask(
        name=name,
        level="sentence",
        dataset=ds,
        labels=labels,
        split=split,
        description=description + _summary(labels, "sentence"),
    )


# -- word-level tasks -----------------------------------------------------------------------------------
WORD_DESCRIPTIONS = {
    "upos": "Universal POS tag of each word (17 UD tags).",
    "xpos": "Penn Treebank POS tag of each word (fine-grained: VBD vs VBZ, NN vs NNS, ...).",
    "dep": "Dependency relation of each word to its head (spaCy's ClearNLP labels: nsubj, dobj, ROOT, ...).",
    "is_root": "Whether the word is the syntactic head (root) of its sentence ('root' vs 'non-root'); a text "
    "spaCy splits into several sentences has several roots.",
}


def _word_tasks(pool: Pool, names: list[str], n: int, seed: int) -> dict[str, ProbingTask]:
    pool.ensure(n)
    m = min(n, len(pool))
    ds = pool.dataset(range(m), name="multiemo-silver")
    split = split_examples(m, groups=ds.texts, seed=seed)
    out: dict[str, ProbingTask] = {}
    for name in names:
        if name == "is_root":
            raw: list[Any] = [["root" if h == -1 else "non-root" for h in hs] for hs in ds.labels["head"]]
        else:
            raw = ds.labels[name]
        labels, _ = merge_rare_classes(raw, split, level="word")
        desc = (
            f"{WORD_DESCRIPTIONS[name]} Built from the first {m} sentences of the fixed shuffle of the "
            f"de-duplicated MultiEmo corpus; every word (spaCy token, punctuation included) is labelled. "
            f"{SILVER_NOTE} Split by text (seed {seed}), shared by all word-level tasks so one extraction "
            "serves them all; tags with fewer than 2 training words merged into 'other'. Controls: compare "
            "with task.control() (one random label per word type)."
        )
        out[name] = ProbingTask(
            name=name,
            level="word",
            dataset=ds,
            labels=labels,
            split=split,
            description=desc + _summary(labels, "word"),
        )
    return out


# -- sentence-level tasks ------------------------------------------------------------------------------------
def _sentlen(pool: Pool, m: int, n: int, seed: int) -> Built:
    q = _quota("sentlen", n, len(SENTLEN_BINS))
    cands: dict[str, list[int]] = {f"{a:02d}-{b:02d}": [] for a, b in SENTLEN_BINS}
    for i in range(m):
        k = len(pool.words[i])
        for a, b in SENTLEN_BINS:
            if a <= k <= b:
                cands[f"{a:02d}-{b:02d}"].append(i)
    picked, full = _balanced(cands, q, _rng("sentlen", seed))
    desc = (
        "SentLen: the number of words (spaCy tokens, punctuation included) of the sentence, in SentEval's 6 "
        "bins 05-08, 09-12, 13-16, 17-20, 21-25, 26-28 (the corpus has enough long sentences, so the bins "
        "are kept). Balanced: the same number of randomly chosen pool sentences per bin; texts beyond 28 "
        "words or below 5 are not used. Split by text, stratified by bin."
    )
    return Built(lambda: _sentence_task("sentlen", pool, picked, seed=seed, description=desc), full)


def _wc(pool: Pool, m: int, n: int, seed: int) -> Built:
    n_words = WC_WORDS if n >= WC_WORDS * MIN_PER_CLASS else max(2, n // MIN_PER_CLASS)
    q = _quota("wc", n, n_words)
    df: Counter[str] = Counter()
    lowered = [[w.lower() for w in pool.words[i]] for i in range(m)]
    for ws in lowered:
        df.update({w for w in ws if w.isalpha()})
    ranked = sorted(df, key=lambda w: (-df[w], w))
    targets = set(ranked[WC_SKIP : WC_SKIP + n_words])
    cands: dict[str, list[int]] = {w: [] for w in targets}
    for i, ws in enumerate(lowered):
        hits = [w for w in ws if w in targets]
        if len(hits) == 1:
            cands[hits[0]].append(i)
    picked, full = _balanced(cands, q, _rng("wc", seed))
    lo, hi = min(df[w] for w in targets), max(df[w] for w in targets)
    desc = (
        f"WC (word content): which of {n_words} mid-frequency words occurs in the sentence. The targets are "
        f"the word types (lower-cased, alphabetic) ranked {WC_SKIP + 1}-{WC_SKIP + n_words} by document "
        f"frequency in the first {m} pool sentences ({lo}-{hi} sentences each; the {WC_SKIP} most frequent, "
        "mostly function words, are skipped). Only sentences containing exactly one target token are "
        "used, so the label is unambiguous; balanced (the same number of sentences per word). Split by "
        "text, stratified by word, so every word occurs in every split."
    )
    return Built(lambda: _sentence_task("wc", pool, picked, seed=seed, description=desc), full)


def _swap_positions(pool: Pool, i: int) -> list[int]:
    ws, sp, text = pool.words[i], pool.spans[i], pool.texts[i]
    return [
        j
        for j in range(1, len(ws) - 1)
        if ws[j].isalpha()
        and ws[j + 1].isalpha()
        and ws[j].islower()
        and ws[j + 1].islower()
        and ws[j] != ws[j + 1]
        and text[sp[j][1] : sp[j + 1][0]].isspace()
    ]


def _bshift(pool: Pool, m: int, n: int, seed: int) -> Built:
    q = _quota("bshift", n, 2)
    rng = _rng("bshift", seed)
    cands = [i for i in range(m) if 5 <= len(pool.words[i]) <= 40 and _swap_positions(pool, i)]
    chosen = [cands[k] for k in rng.permutation(len(cands))[: 2 * q]]
    full = len(chosen) == 2 * q
    chosen = chosen[: len(chosen) // 2 * 2]

    def make() -> ProbingTask:
        # within each length, alternate labels in a random order: equal length distributions for both classes
        keyed = sorted(chosen, key=lambda i: (len(pool.words[i]), float(rng.random())))
        inverted = set(keyed[1::2])
        idx = sorted(chosen)
        ds = pool.dataset(idx, name="multiemo-bshift", labels={})
        texts, words, spans, labels = list(ds.texts), list(ds.words), list(ds.word_spans), []
        for k, i in enumerate(idx):
            if i not in inverted:
                labels.append("original")
                continue
            positions = _swap_positions(pool, i)
            j = positions[int(rng.integers(len(positions)))]
            texts[k], words[k], spans[k] = _swap(pool.texts[i], pool.words[i], pool.spans[i], j)
            labels.append("inverted")
        src = {"bshift": labels, "source": ds.texts}
        ds = TextDataset(texts=texts, words=words, word_spans=spans, labels=src, ids=ds.ids, name=ds.name)
        split = split_examples(len(idx), groups=[pool.texts[i] for i in idx], seed=seed, stratify=labels)
        desc = (
            "BShift: were two adjacent words swapped ('inverted') or not ('original')? The inverted text "
            "is the model's input (its source is in dataset.labels['source']). Each source sentence is "
            "used once (half of them inverted), so no original/shifted pair can leak across splits. Swaps "
            "never touch the first word and only exchange two different lower-case alphabetic words "
            "separated by whitespace, so capitalisation and punctuation give nothing away; labels "
            "alternate within each sentence length, so both classes have the same length distribution. "
            "Split by source text, stratified by label."
        )
        return ProbingTask(
            name="bshift",
            level="sentence",
            dataset=ds,
            labels=labels,
            split=split,
            description=desc + _summary(labels, "sentence"),
        )

    return Built(make, full)


def _swap(
    text: str, words: list[str], spans: list[tuple[int, int]], j: int
) -> tuple[str, list[str], list[tuple[int, int]]]:
    """Swap words ``j`` and ``j + 1`` in the text; the other characters and words stay where they are."""
    (a0, a1), (b0, b1) = spans[j], spans[j + 1]
    new_text = text[:a0] + words[j + 1] + text[a1:b0] + words[j] + text[b1:]
    new_words = [*words[:j], words[j + 1], words[j], *words[j + 2 :]]
    first = (a0, a0 + len(words[j + 1]))
    second = (b1 - len(words[j]), b1)
    return new_text, new_words, [*spans[:j], first, second, *spans[j + 2 :]]


def _treedepth(pool: Pool, m: int, n: int, seed: int) -> Built:
    q = _quota("treedepth", n, len(DEPTH_CLASSES))
    rng = _rng("treedepth", seed)
    by_len: dict[int, dict[str, list[int]]] = {}
    single = [i for i in range(m) if pool.root(i) is not None]
    r = np.corrcoef([len(pool.words[i]) for i in single], [pool.depth(i) for i in single])[0, 1]
    for i in single:
        d = pool.depth(i)
        if d < 3:
            continue
        c = DEPTH_CLASSES[min(d, 7) - 3]
        by_len.setdefault(len(pool.words[i]), {k: [] for k in DEPTH_CLASSES})[c].append(i)
    lengths = sorted(by_len)
    room = np.array([min(len(v) for v in by_len[L].values()) for L in lengths], dtype=np.float64)
    total = int(room.sum())
    k = min(q, total)
    alloc = np.floor(room * k / max(total, 1)).astype(int)
    extra = room * k / max(total, 1) - alloc
    for j in np.argsort(-extra, kind="stable")[: k - int(alloc.sum())]:
        alloc[j] += 1
    picked: dict[str, list[int]] = {c: [] for c in DEPTH_CLASSES}
    for L, a in zip(lengths, alloc, strict=True):
        for c in DEPTH_CLASSES:
            members = by_len[L][c]
            picked[c] += [members[t] for t in rng.permutation(len(members))[:a]]
    desc = (
        "TreeDepth: the depth of the silver dependency tree (longest root-to-word path in arcs), classes "
        "3, 4, 5, 6 and 7+ (shallower trees are too rare in matched lengths). Only texts spaCy parses as "
        "one sentence are used. Decorrelated from length as SentEval does, but exactly: for every sentence "
        "length (in words) each class gets the same number of sentences, so the length distribution is "
        "identical across classes and length alone predicts nothing; the corpus allows this only for "
        f"lengths where all depths occur (depth and length correlate at r = {r:.2f} over the "
        f"{len(single)} single-sentence texts read). "
        f"{SILVER_NOTE} Split by text, stratified by class."
    )
    return Built(lambda: _sentence_task("treedepth", pool, picked, seed=seed, description=desc), total >= q)


def _root_relation(
    name: str, pool: Pool, m: int, n: int, seed: int, *, deps: set[str], tags: dict[str, str], what: str
) -> Built:
    """Label by the PTB tag of the single child of the root with a relation in ``deps``."""
    q = _quota(name, n, len(set(tags.values())))
    cands: dict[str, list[int]] = {c: [] for c in sorted(set(tags.values()))}
    form: dict[int, str] = {}
    for i in range(m):
        r = pool.root(i)
        if r is None:
            continue
        if deps:
            kids = pool.children(i, r, deps)
            if len(kids) != 1:
                continue
            j = kids[0]
        else:
            j = r
        tag = pool.labels["xpos"][i][j]
        if tag in tags:
            cands[tags[tag]].append(i)
            form[i] = pool.words[i][j].lower()
    cap = max(2, math.ceil(GROUP_CAP * q))
    picked, full = _balanced(cands, q, _rng(name, seed), group=form.__getitem__, cap=cap)
    n_forms = len({form[i] for v in picked.values() for i in v})
    desc = DESCRIPTIONS[name].format(cap=cap, n_forms=n_forms, what=what) + f" {SILVER_NOTE}"
    return Built(
        lambda: _sentence_task(name, pool, picked, seed=seed, description=desc, groups=form.__getitem__), full
    )


DESCRIPTIONS = {
    "tense": "Tense: is the main verb past or present? The main verb is the root of the silver parse (texts "
    "spaCy splits into several sentences are skipped); PTB tag VBD -> 'past', VBP/VBZ -> 'present' (other "
    "roots, e.g. VB/VBN/VBG with auxiliaries or verbless roots, are not used). Balanced. Lexical cue "
    "controlled as in SentEval: the split groups sentences by the lower-cased {what} (kept in "
    "dataset.labels['group']), so no verb form occurs in two splits, and at most {cap} sentences per form "
    "are used ({n_forms} forms). Sentence length is not controlled.",
    "subjnum": "SubjNum: is the subject of the main clause singular (NN) or plural (NNS)? The subject is the "
    "single nsubj/nsubjpass child of the silver root (pronouns and proper nouns are not used). Balanced. "
    "Lexical cue controlled as in SentEval: the split groups sentences by the lower-cased {what} (kept in "
    "dataset.labels['group']), so no subject noun occurs in two splits, and at most {cap} sentences per "
    "noun are used ({n_forms} nouns).",
    "objnum": "ObjNum: is the direct object of the main clause singular (NN) or plural (NNS)? The object is "
    "the single dobj child of the silver root. Balanced. Lexical cue controlled as in SentEval: the split "
    "groups sentences by the lower-cased {what} (kept in dataset.labels['group']), so no object noun occurs "
    "in two splits, and at most {cap} sentences per noun are used ({n_forms} nouns).",
}


def _tense(pool: Pool, m: int, n: int, seed: int) -> Built:
    tags = {"VBD": "past", "VBP": "present", "VBZ": "present"}
    return _root_relation("tense", pool, m, n, seed, deps=set(), tags=tags, what="verb form")


def _subjnum(pool: Pool, m: int, n: int, seed: int) -> Built:
    tags = {"NN": "singular", "NNS": "plural"}
    deps = {"nsubj", "nsubjpass"}
    return _root_relation("subjnum", pool, m, n, seed, deps=deps, tags=tags, what="subject noun")


def _objnum(pool: Pool, m: int, n: int, seed: int) -> Built:
    tags = {"NN": "singular", "NNS": "plural"}
    return _root_relation("objnum", pool, m, n, seed, deps={"dobj"}, tags=tags, what="object noun")


def _sentiment(pool: Pool, m: int, n: int, seed: int) -> Built:
    classes = ("ambivalent", "negative", "neutral", "positive")
    q = _quota("sentiment", n, len(classes))
    cands: dict[str, list[int]] = {c: [] for c in classes}
    for i in range(m):
        cands[pool.labels["sentiment"][i]].append(i)
    picked, full = _balanced(cands, q, _rng("sentiment", seed))
    desc = (
        "Sentiment: the MultiEmo sentence-level sentiment label (human annotation from the corpus, not "
        "silver): negative, positive, neutral, ambivalent. Balanced by sampling (the corpus is 37% negative, "
        "12% ambivalent). Duplicate texts are removed from the pool (the first occurrence's label is kept); "
        "split by text, stratified by class. Length and topic are not controlled."
    )
    return Built(lambda: _sentence_task("sentiment", pool, picked, seed=seed, description=desc), full)


# -- registry and driver --------------------------------------------------------------------------------
Builder = Callable[[Pool, int, int, int], Built]
WORD_TASKS = ("upos", "xpos", "dep", "is_root")
SENTENCE_TASKS: dict[str, tuple[Builder, float]] = {  # builder, first pool size as a multiple of n_sentences
    "sentlen": (_sentlen, 3.0),
    "wc": (_wc, 4.0),
    "bshift": (_bshift, 1.5),
    "treedepth": (_treedepth, 10.0),
    "tense": (_tense, 3.0),
    "subjnum": (_subjnum, 10.0),
    "objnum": (_objnum, 14.0),
    "sentiment": (_sentiment, 2.5),
}
BUILTIN_TASKS = (*WORD_TASKS, *SENTENCE_TASKS)


def build_builtin_tasks(
    names: Sequence[str] | None, *, n_sentences: int, seed: int, progress: bool
) -> dict[str, ProbingTask]:
    """See :func:`layerscope.data.builtin_tasks`."""
    if isinstance(names, str):
        names = [names]
    wanted = list(BUILTIN_TASKS) if names is None else list(dict.fromkeys(names))
    unknown = [t for t in wanted if t not in BUILTIN_TASKS]
    if unknown:
        raise ConfigError(f"unknown built-in task(s) {unknown}; available: {', '.join(BUILTIN_TASKS)}")
    if not wanted:
        raise ConfigError("names is empty; pass None for all built-in tasks")
    if isinstance(n_sentences, bool) or not isinstance(n_sentences, int) or n_sentences < MIN_SENTENCES:
        raise ConfigError(f"n_sentences must be an integer >= {MIN_SENTENCES}, got {n_sentences!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    pool = Pool(progress=progress)
    out: dict[str, ProbingTask] = {}
    words = [t for t in wanted if t in WORD_TASKS]
    if words:
        out.update(_word_tasks(pool, words, n_sentences, seed))
    for name in wanted:
        if name in SENTENCE_TASKS:
            out[name] = _grow(pool, name, n_sentences, seed)
    return {t: out[t] for t in wanted}


def _grow(pool: Pool, name: str, n: int, seed: int) -> ProbingTask:
    """Build on a pool prefix, doubling it until every class is full or the corpus is used up."""
    builder, mult = SENTENCE_TASKS[name]
    size = min(pool.total, -(-math.ceil(n * mult) // CHUNK) * CHUNK)
    while True:
        pool.ensure(size)
        built = builder(pool, min(size, len(pool)), n, seed)
        if built.full or size >= pool.total:
            return built.make()
        size = min(pool.total, size * 2)
