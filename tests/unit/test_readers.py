"""Dataset file readers: good files of every format, and one clear DataError for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerscope.data import TextDataset, as_text_dataset, read_conllu, read_dataset
from layerscope.errors import DataError

CONLLU = """\
# sent_id = s1
# text = I don't know.
1\tI\tI\tPRON\tPRP\tCase=Nom|Number=Sing|Person=1\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\tMood=Ind\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\tPolarity=Neg\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\tVerbForm=Inf\t0\troot\t_\t_
4.1\tknows\tknow\tVERB\tVBZ\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\tSpaceAfter=No

# sent_id = s2
1\tHello\thello\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def assert_spans(ds: TextDataset) -> None:
    for text, words, spans in zip(ds.texts, ds.words, ds.word_spans, strict=True):
        assert [text[a:b] for a, b in spans] == words


# -- good files -------------------------------------------------------------------------------------------
def test_csv_all_other_columns_become_typed_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path, "reviews.csv", 'text,stars,score,topic\n"Great, really.",5,0.5,food\nBad  food,1,1,food\n'
    )
    ds = read_dataset(path)
    assert ds.name == "reviews"
    assert ds.texts == ["Great, really.", "Bad  food"]
    assert ds.words == [["Great,", "really."], ["Bad", "food"]]
    assert ds.labels == {"stars": [5, 1], "score": [0.5, 1.0], "topic": ["food", "food"]}
    assert ds.ids == ["0", "1"]
    assert_spans(ds)


def test_csv_with_bom_id_column_and_chosen_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "\ufeffid,sentence,y,junk\na7,one two,pos,x\nb2,three,neg,\n")
    ds = read_dataset(path, text_column="sentence", label_columns=["y"])
    assert ds.ids == ["a7", "b2"]
    assert ds.labels == {"y": ["pos", "neg"]}


def test_csv_empty_cell_in_implicit_label_is_none(tmp_path: Path) -> None:
    ds = read_dataset(write(tmp_path, "d.csv", "text,note\nhi,\nho,x\n"))
    assert ds.labels == {"note": [None, "x"]}


def test_tsv(tmp_path: Path) -> None:
    ds = read_dataset(write(tmp_path, "d.tsv", "label\ttext\nA\ta, b\nB\tc\n"))
    assert ds.texts == ["a, b", "c"]
    assert ds.labels == {"label": ["A", "B"]}


def test_jsonl_with_words_column_and_word_level_label(tmp_path: Path) -> None:
    rows = [
        {
            "text": "The cat's here",
            "words": ["The", "cat", "'s", "here"],
            "pos": ["D", "N", "V", "A"],
            "y": 1,
        },
        {"words": "No text given", "pos": ["X", "X", "X"], "y": 0},
    ]
    path = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = read_dataset(path, words_column="words")
    assert ds.words == [["The", "cat", "'s", "here"], ["No", "text", "given"]]
    assert ds.word_spans[0] == [(0, 3), (4, 7), (7, 9), (10, 14)]
    assert ds.texts[1] == "No text given"
    assert ds.labels == {"pos": [["D", "N", "V", "A"], ["X", "X", "X"]], "y": [1, 0]}
    assert_spans(ds)


def test_jsonl_missing_label_key_is_none(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"text": "a", "y": 1}\n{"text": "b"}\n')
    assert read_dataset(path).labels == {"y": [1, None]}


def test_txt_one_text_per_line(tmp_path: Path) -> None:
    ds = read_dataset(write(tmp_path, "d.txt", "first line\n\n  second \n"))
    assert ds.texts == ["first line", "second"]


def test_conllu_multiword_empty_node_comments(tmp_path: Path) -> None:
    ds = read_dataset(write(tmp_path, "tb.conllu", CONLLU))
    assert ds.words == [["I", "do", "n't", "know", "."], ["Hello"]]
    assert ds.texts == ["I do n't know .", "Hello"]
    assert ds.ids == ["s1", "s2"]
    assert ds.labels["upos"] == [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert ds.labels["xpos"][0] == ["PRP", "VBP", "RB", "VB", "."]
    assert ds.labels["head"] == [[3, 3, 3, -1, 3], [-1]]  # 0-based, root -1
    assert ds.labels["deprel"][0] == ["nsubj", "aux", "advmod", "root", "punct"]
    assert ds.labels["feats"][0][2] == "Polarity=Neg"
    assert_spans(ds)


def test_read_conllu_label_subset_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "tb.conllu", "1\ta\t_\tX\t_\t_\t_\t_\t_\t_\n")
    assert read_conllu(path, label_columns=["upos"]).labels == {"upos": [["X"]]}
    assert set(read_conllu(path).labels) == {"upos"}  # all-"_" columns are left out
    with pytest.raises(DataError, match="unknown CoNLL-U label"):
        read_conllu(path, label_columns=["lemma"])


def test_as_text_dataset_reads_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "text\nhello\n")
    assert as_text_dataset(str(path)).texts == ["hello"]


# -- bad files --------------------------------------------------------------------------------------------
def bad(path: Path, match: str, line: int | None = None, **kwargs: object) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        read_dataset(path, **kwargs)  # type: ignore[arg-type]
    assert str(path) in str(info.value)
    assert info.value.line == line
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    bad(tmp_path / "nope.csv", "not found")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    bad(tmp_path / "dir.csv", "directory")


@pytest.mark.parametrize("name", ["e.csv", "e.jsonl", "e.conllu", "e.tsv", "e.txt"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    bad(write(tmp_path, name, "  \n\n"), "empty")


def test_header_only_csv(tmp_path: Path) -> None:
    bad(write(tmp_path, "h.csv", "text,label\n"), "no data rows")


def test_undecodable_bytes_report_line(tmp_path: Path) -> None:
    err = bad(write(tmp_path, "b.csv", b"text\nfine\nbad \xff byte\n"), "cannot decode", line=3)
    assert "encoding=" in str(err)


def test_other_encoding_works(tmp_path: Path) -> None:
    path = write(tmp_path, "l.csv", "text\ncafé\n".encode("latin-1"))
    assert read_dataset(path, encoding="latin-1").texts == ["café"]


def test_missing_text_column_lists_columns(tmp_path: Path) -> None:
    err = bad(write(tmp_path, "m.csv", "sentence,label\nhi,1\n"), "no text column 'text'")
    assert "'sentence', 'label'" in str(err)


def test_missing_label_column(tmp_path: Path) -> None:
    bad(write(tmp_path, "m.csv", "text,label\nhi,1\n"), "no label column", label_columns=["y"])


def test_empty_explicit_label_cell(tmp_path: Path) -> None:
    bad(
        write(tmp_path, "m.csv", "text,y\nhi,1\nho,\n"),
        "empty value in label column 'y'",
        line=3,
        label_columns=["y"],
    )


@pytest.mark.parametrize("cell", ['""', '"   "'])
def test_blank_text_cell(tmp_path: Path, cell: str) -> None:
    bad(write(tmp_path, "b.csv", f"text,y\nok,1\n{cell},2\n"), "blank text", line=3)


def test_blank_text_in_jsonl(tmp_path: Path) -> None:
    bad(write(tmp_path, "b.jsonl", '{"text": "ok"}\n{"text": " "}\n'), "blank text", line=2)


def test_ragged_csv_row(tmp_path: Path) -> None:
    bad(write(tmp_path, "r.csv", "text,y\na,1\nb,2,3\n"), "3 fields but the header has 2", line=3)


def test_unterminated_quote(tmp_path: Path) -> None:
    bad(write(tmp_path, "q.csv", 'text,y\na,1\n"b,2\n'), "malformed CSV", line=3)


def test_duplicate_header(tmp_path: Path) -> None:
    bad(write(tmp_path, "d.csv", "text,y,y\na,1,2\n"), "duplicate column", line=1)


def test_duplicate_ids(tmp_path: Path) -> None:
    bad(write(tmp_path, "d.csv", "id,text\nx,a\nx,b\n"), "duplicate id 'x'", line=3)


def test_malformed_json_line(tmp_path: Path) -> None:
    bad(write(tmp_path, "j.jsonl", '{"text": "a"}\n\n{"text": "b",}\n'), "malformed JSON", line=3)


@pytest.mark.parametrize("value", ['["a", "b"]', '"just text"', "3"])
def test_non_object_json_line(tmp_path: Path, value: str) -> None:
    bad(write(tmp_path, "j.jsonl", f'{{"text": "a"}}\n{value}\n'), "expected a JSON object", line=2)


def test_jsonl_row_without_text_key_lists_keys(tmp_path: Path) -> None:
    err = bad(
        write(tmp_path, "j.jsonl", '{"text": "a"}\n{"sentence": "b", "y": 1}\n'), "no 'text' key", line=2
    )
    assert "'sentence', 'y'" in str(err)


def test_jsonl_text_not_a_string(tmp_path: Path) -> None:
    bad(write(tmp_path, "j.jsonl", '{"text": 5}\n'), "not a string", line=1)


def test_words_not_in_text(tmp_path: Path) -> None:
    path = write(tmp_path, "w.jsonl", '{"text": "a b", "words": ["a", "c"]}\n')
    bad(path, "word 'c' does not occur", line=1, words_column="words")


def test_bad_words_value(tmp_path: Path) -> None:
    path = write(tmp_path, "w.jsonl", '{"text": "a b", "words": [1, 2]}\n')
    bad(path, "list of strings", line=1, words_column="words")


def test_word_label_length_mismatch(tmp_path: Path) -> None:
    path = write(tmp_path, "w.jsonl", '{"words": ["a", "b"], "tags": ["X"]}\n')
    bad(path, "has 1 values for 2 words", line=1, words_column="words")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    err = bad(write(tmp_path, "d.xlsx", "x"), "unsupported file extension '.xlsx'")
    assert ".csv" in str(err) and ".conllu" in str(err)


def test_conllu_ragged_line(tmp_path: Path) -> None:
    bad(
        write(tmp_path, "r.conllu", "# c\n1\tword\tword\tNOUN\n"), "10 tab-separated columns, found 4", line=2
    )


def test_conllu_spaces_instead_of_tabs(tmp_path: Path) -> None:
    bad(write(tmp_path, "r.conllu", "1 a a X _ _ 0 root _ _\n"), "found 1", line=1)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("x\ta\t_\tX\t_\t_\t0\troot\t_\t_", "ID 'x' is not an integer"),
        ("1-x\ta\t_\t_\t_\t_\t_\t_\t_\t_", "ID 'x' is not an integer"),
        ("1\ta\t_\tX\t_\t_\tnone\troot\t_\t_", "HEAD 'none' is not an integer"),
        ("1\ta\t_\tX\t_\t_\t7\troot\t_\t_", "HEAD 7 is outside"),
        ("2\ta\t_\tX\t_\t_\t0\troot\t_\t_", "out of order"),
    ],
)
def test_conllu_bad_ids_and_heads(tmp_path: Path, line: str, match: str) -> None:
    bad(write(tmp_path, "h.conllu", f"# sent_id = 1\n{line}\n"), match, line=2)


def test_conllu_comments_only(tmp_path: Path) -> None:
    bad(write(tmp_path, "c.conllu", "# just a comment\n"), "no sentences")
