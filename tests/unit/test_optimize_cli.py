"""``layerscope visualize | prototypes | isolate | attack``: registration and bad input (no model is loaded)."""

from __future__ import annotations


def test_commands_are_registered(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    for name in ("visualize", "prototypes", "isolate", "attack"):
        assert name in out
    code, out, _ = run_cli("featureviz", "--help")  # hidden alias
    assert code == 0 and "layerscope featureviz" in out


def test_attack_rejects_non_positive_eps(run_cli):
    code, _, err = run_cli("attack", "cifar10-cnn", "--eps", "0")
    assert code == 2
    assert "--eps must be > 0" in err
    code, _, err = run_cli("attack", "cifar10-cnn", "--eps", "8/255,-1")
    assert code == 2 and "> 0" in err


def test_attack_rejects_bad_norm_and_numbers(run_cli):
    code, _, err = run_cli("attack", "cifar10-cnn", "--norm", "l7")
    assert code == 2 and "linf or l2" in err
    code, _, err = run_cli("attack", "cifar10-cnn", "--eps", "eight")
    assert code == 2 and "8/255" in err


def test_visualize_rejects_bad_kind_and_units(run_cli):
    code, _, err = run_cli("visualize", "cifar10-cnn", "--site", "module:7", "--kind", "pixel")
    assert code == 2 and "--kind" in err
    code, _, err = run_cli("visualize", "cifar10-cnn", "--site", "module:7", "--units", "a,b")
    assert code == 2 and "--units" in err


def test_isolate_rejects_bad_index(run_cli):
    code, _, err = run_cli("isolate", "cifar10-cnn", "--index", "5000")
    assert code == 2 and "--index" in err


def test_visualize_and_prototypes_reject_bad_precision(run_cli):
    for cmd in (["visualize", "cifar10-cnn", "--site", "module:7"], ["prototypes", "cifar10-cnn"]):
        code, _, err = run_cli(*cmd, "--precision", "half")
        assert code == 2 and "precision must be" in err and "Traceback" not in err
