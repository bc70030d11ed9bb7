"""get_data_home precedence: argument > ENSEMBLEKIT_DATA > ~/ensemblekit_data."""

from __future__ import annotations

from pathlib import Path

from ensemblekit.datasets import get_data_home


def test_explicit_argument_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("ENSEMBLEKIT_DATA", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home(str(tmp_path / "arg")) == tmp_path / "arg"


def test_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ENSEMBLEKIT_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"


def test_default_and_empty_variable(monkeypatch):
    monkeypatch.delenv("ENSEMBLEKIT_DATA", raising=False)
    assert get_data_home() == Path.home() / "ensemblekit_data"
    monkeypatch.setenv("ENSEMBLEKIT_DATA", "")
    assert get_data_home() == Path.home() / "ensemblekit_data"


def test_user_expansion_and_no_side_effects(tmp_path):
    assert get_data_home("~/x") == Path.home() / "x"
    target = tmp_path / "not-created"
    get_data_home(target)
    assert not target.exists()
