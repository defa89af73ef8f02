"""A quoted number is a string and a huge one is out of range: both refused before training, with
the key, the value and what is allowed; a run reference that is not a string is a clear error;
every unreadable image of a folder is named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.config import DataConfig
from cnnlab.data.imagefolder import load_imagefolder
from cnnlab.errors import ConfigError, DataError
from cnnlab.store import RunStore

SRC = Path(cnnlab.__file__).resolve().parents[1]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "book-cnn-mnist.toml"


def test_a_quoted_number_and_a_huge_rate_are_refused_before_anything_is_stored(tmp_path):
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(SRC), "COLUMNS": "300"}
    done = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(EXAMPLE), "-s", "train.epochs='3'",
                           "-s", "train.lr=1e308", "-s", "seed='1'", "-s", "data.dataset='mnist-sample'"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "error: seed: '1' is a string, not an integer: write the number without quotes",
        "error: train.lr: 1e+308 is out of range: must be > 0 and ≤ 1000",
        "error: train.epochs: '3' is a string, not an integer: write the number without quotes",
    ]
    stored = tmp_path / "home" / "runs.sqlite"
    assert not stored.exists() or RunStore(root=tmp_path / "home").list_runs() == []


@pytest.mark.parametrize("ref", [None, 123, "", ["r1"]])
def test_load_run_of_something_that_is_not_a_run_reference(tmp_path, ref):
    with pytest.raises(ConfigError, match=r"^run: .* must be a run id, id prefix or run name"):
        cnnlab.load_run(ref, store=RunStore(root=tmp_path))


def test_every_unreadable_image_of_a_folder_is_named(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "b" / "half.png").write_bytes((tmp_path / "b" / "0.png").read_bytes()[:20])
    with pytest.raises(DataError) as caught:
        load_imagefolder(DataConfig(dataset="imagefolder", path=str(tmp_path)))
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "a" / "broken.png"),
                                                      str(tmp_path / "b" / "half.png")]
    assert all("not a readable image" in line for line in lines)
