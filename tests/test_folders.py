"""``replace_folder``: the one atomic folder swap behind releases, token shards, SFT data and trained tokenizers."""

from __future__ import annotations

import os

import pytest

from hf_gpt2 import folders
from hf_gpt2.folders import replace_folder


def make(path, text):
    path.mkdir()
    (path / "file.txt").write_text(text)
    return path


def test_a_new_folder_replaces_the_old_one_and_leaves_nothing_aside(tmp_path):
    make(tmp_path / "out", "old")
    assert replace_folder(make(tmp_path / "staging", "new"), tmp_path / "out")
    assert (tmp_path / "out/file.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_move_puts_the_old_folder_back(tmp_path):
    make(tmp_path / "out", "old")
    with pytest.raises(OSError):
        replace_folder(tmp_path / "missing-staging", tmp_path / "out")
    assert (tmp_path / "out/file.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_another_writer_that_got_there_first_is_kept(tmp_path, monkeypatch):
    staging, out = make(tmp_path / "staging", "mine"), tmp_path / "out"
    real_replace = os.replace

    def racing_replace(src, dst):
        if src == staging:
            make(out, "theirs")  # another process publishes between the set-aside and our move
        return real_replace(src, dst)

    monkeypatch.setattr(folders.os, "replace", racing_replace)
    assert replace_folder(staging, out) is False
    assert (out / "file.txt").read_text() == "theirs" and not staging.exists()
