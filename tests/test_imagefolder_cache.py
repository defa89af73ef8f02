"""Image folders decoded once: the cache of decoded images, parallel decoding, bad input, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab.data.imagefolder as imagefolder
from cnnlab.config import DataConfig
from cnnlab.data import cache, load_data
from cnnlab.data.decode import CHUNK, decode_file, worker_count
from cnnlab.errors import DataError

SRC = Path(__file__).resolve().parents[1] / "src"


def write_images(folder: Path, counts: dict[str, int], mode: str = "L", size: tuple[int, int] = (9, 7),
                 seed: int = 0) -> list[Path]:
    """``counts[name]`` random images in ``folder/name``; returns their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for name, count in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0]) if mode in ("L", "P") else (size[1], size[0], len(mode))
            image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8),
                                    "L" if mode == "P" else mode)
            path = folder / name / f"{mode}{seed}-{i:04d}.png"
            (image.convert("P") if mode == "P" else image).save(path)
            paths.append(path)
    return paths


def load(path: Path, **settings):
    """The folder loaded, and its cache entry written (the writing goes on after loading)."""
    bundle = load_data(DataConfig(dataset="imagefolder", path=str(path), val=0.0, **settings), seed=0)
    cache.wait_for_writes()
    return bundle


def entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "decoded").glob(f"*{cache.SUFFIX}"))


def same(a, b) -> bool:
    return (torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
            and torch.equal(a.test.images, b.test.images) and a.classes == b.classes)


def test_the_second_load_reads_the_cache(tmp_path: Path, cache_dir: Path, capsys, monkeypatch) -> None:
    write_images(tmp_path / "train", {"cat": 4, "dog": 3})
    write_images(tmp_path / "test", {"cat": 2, "dog": 1}, seed=1)
    first = load(tmp_path)
    err = capsys.readouterr().err
    assert "decoded 10 images of" in err and "caching them meanwhile" in err and "cnnlab cache clear" in err
    assert len(entries(cache_dir)) == 1 and str(entries(cache_dir)[0]) in err.replace("\n", "")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache holds the folder")

    monkeypatch.setattr(imagefolder, "decode_files", no_decoding)
    second = load(tmp_path)
    err = capsys.readouterr().err
    assert "read 10 decoded images of" in err and "from the cache" in err and "cnnlab cache clear" in err
    assert same(first, second)
    assert first.train.images.shape[1:] == (1, 7, 9)


def test_a_changed_added_or_removed_file_is_decoded_again(tmp_path: Path, cache_dir: Path, capsys) -> None:
    paths = write_images(tmp_path, {"a": 5, "b": 5})
    before = load(tmp_path, test_fraction=0.2)
    capsys.readouterr()

    Image.new("L", (9, 7), 77).save(paths[0])  # new content, new modification time
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load(tmp_path, test_fraction=0.2)
    assert "decoded 10 images" in capsys.readouterr().err
    assert not same(before, changed)
    assert len(entries(cache_dir)) == 1, "the entry of the old state is deleted"

    write_images(tmp_path, {"b": 1}, seed=5)  # one more file
    grown = load(tmp_path, test_fraction=0.2)
    assert len(grown.train) + len(grown.test) == 11 and "decoded 11" in capsys.readouterr().err
    paths[3].unlink()
    load(tmp_path, test_fraction=0.2)
    assert "decoded 10" in capsys.readouterr().err
    assert len(entries(cache_dir)) == 1

    load(tmp_path, test_fraction=0.2, size=5)  # other settings: an entry of their own
    assert "decoded 10" in capsys.readouterr().err and len(entries(cache_dir)) == 2


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage"])
def test_a_damaged_entry_is_named_and_decoded_again(tmp_path: Path, cache_dir: Path, capsys,
                                                    damage: str) -> None:
    write_images(tmp_path, {"a": 4, "b": 4}, size=(16, 16))
    first = load(tmp_path, test_fraction=0.25)
    capsys.readouterr()
    (entry,) = entries(cache_dir)
    data = bytearray(entry.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":  # same size, pixels changed: only the checksum can tell
        middle = len(data) - 600
        data[middle:middle + 8] = bytes(255 - b for b in data[middle:middle + 8])
    else:
        data = bytearray(b"not an entry at all")
    entry.write_bytes(bytes(data))
    again = load(tmp_path, test_fraction=0.25)
    err = capsys.readouterr().err
    assert f"the cache entry {entry} is damaged" in err.replace("\n", "") and "decoding again" in err
    assert "decoded 8 images" in err
    assert same(first, again)
    assert load(tmp_path, test_fraction=0.25) and "from the cache" in capsys.readouterr().err


def test_an_entry_of_another_version_is_named_and_decoded_again(tmp_path: Path, cache_dir: Path, capsys,
                                                                monkeypatch) -> None:
    write_images(tmp_path, {"a": 3, "b": 3})
    current = cache.FORMAT
    monkeypatch.setattr(cache, "FORMAT", 0)
    first = load(tmp_path, test_fraction=0.5)
    monkeypatch.setattr(cache, "FORMAT", current)
    capsys.readouterr()
    again = load(tmp_path, test_fraction=0.5)
    err = capsys.readouterr().err
    assert "written by another version of cnnlab" in err and "format 0" in err and "decoded 6" in err
    assert same(first, again)


def test_every_unreadable_file_is_named_and_nothing_is_cached(tmp_path: Path, cache_dir: Path) -> None:
    paths = write_images(tmp_path, {"a": 3, "b": 3}, size=(32, 32))
    garbage, truncated = tmp_path / "a" / "L0-0001.png", tmp_path / "b" / "L0-0001.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    truncated.write_bytes(paths[4].read_bytes()[:80])
    with pytest.raises(DataError) as caught:
        load(tmp_path)
    lines = str(caught.value).splitlines()  # a line per file, in the folder's order
    assert [line.split(": ")[0] for line in lines] == [str(garbage), str(truncated)]
    assert all(": not a readable image (" in line for line in lines)
    assert entries(cache_dir) == []


def test_decoding_in_processes_gives_what_decoding_each_file_gives(tmp_path: Path) -> None:
    paths = write_images(tmp_path, {"gray": CHUNK + 3}) + write_images(tmp_path, {"rgb": CHUNK}, mode="RGB")
    paths += write_images(tmp_path, {"palette": 5}, mode="P")
    paths += write_images(tmp_path, {"alpha": 4}, mode="LA")
    if worker_count(len(paths)) < 2:
        pytest.skip("one CPU: no worker processes")
    bundle = load(tmp_path, test_fraction=0.5)
    images = torch.cat([bundle.train.images, bundle.test.images])
    assert images.shape[1:] == (3, 7, 9)
    expected = {}
    for path in paths:  # one at a time, in this process, as RGB
        stat = path.stat()
        array, error, changed = decode_file(str(path), (stat.st_size, stat.st_mtime_ns), "RGB", None)
        assert error is None and not changed
        expected[array.tobytes()] = expected.get(array.tobytes(), 0) + 1
    got = {}
    for image in images:
        key = image.permute(1, 2, 0).contiguous().numpy().tobytes()
        got[key] = got.get(key, 0) + 1
    assert got == expected
    gray = load(tmp_path, test_fraction=0.5, channels=1)  # converted in the workers
    assert gray.train.images.shape[1] == 1


def test_a_file_is_checked_against_the_state_the_key_was_made_from(tmp_path: Path) -> None:
    (path,) = write_images(tmp_path, {"a": 1})
    stat = path.stat()
    assert decode_file(str(path), (stat.st_size, stat.st_mtime_ns), None, None)[0].shape == (7, 9, 1)
    assert decode_file(str(path), (stat.st_size, stat.st_mtime_ns - 1), None, None) == (None, None, True)
    assert "cannot be read" in decode_file(str(tmp_path / "gone.png"), (0, 0), None, None)[1]


def test_a_folder_that_changes_while_it_is_decoded_is_decoded_again(tmp_path: Path, cache_dir: Path,
                                                                    capsys, monkeypatch) -> None:
    paths = write_images(tmp_path, {"a": 4, "b": 4})
    decode = imagefolder.decode_files
    calls = []

    def decode_then_change(*args, **kwargs):
        arrays = decode(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # the user copies a new version of one file in meanwhile
            Image.new("L", (9, 7), 200).save(paths[2])
            os.utime(paths[2], ns=(time.time_ns(), time.time_ns() + 10**9))
        return arrays

    monkeypatch.setattr(imagefolder, "decode_files", decode_then_change)
    bundle = load(tmp_path, test_fraction=0.5)
    err = capsys.readouterr().err
    assert f"{paths[2]} changed while" in err.replace("\n", "") and "decoding the folder again" in err
    assert len(calls) == 2
    images = torch.cat([bundle.train.images, bundle.test.images])
    assert (images == 200).flatten(1).all(1).sum() == 1, "the new version of the file is used"
    capsys.readouterr()
    assert same(load(tmp_path, test_fraction=0.5), bundle) and "from the cache" in capsys.readouterr().err

    def always_change(*args, **kwargs):
        arrays = decode(*args, **kwargs)
        (tmp_path / "b" / f"new-{len(calls)}.png").write_bytes(paths[0].read_bytes())
        calls.append(1)
        return arrays

    monkeypatch.setattr(imagefolder, "decode_files", always_change)
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    with pytest.raises(DataError, match="files keep changing while they are decoded"):
        load(tmp_path, test_fraction=0.5)


def _python(code: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    return subprocess.Popen([sys.executable, "-c", code, str(folder)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


LOAD = ("import sys; from cnnlab.config import DataConfig; from cnnlab.data import load_data; "
        "b = load_data(DataConfig(dataset='imagefolder', path=sys.argv[1], val=0.0), seed=0); "
        "print(int(b.train.images.sum()) + int(b.test.images.sum()))")


def test_two_processes_decode_a_folder_once(tmp_path: Path, cache_dir: Path) -> None:
    write_images(tmp_path, {"a": CHUNK, "b": CHUNK}, size=(48, 48))
    first, second = _python(LOAD, tmp_path), _python(LOAD, tmp_path)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]  # the same pixels
    errs = [err for _, err in outputs]
    assert sum("decoded 128 images" in err for err in errs) == 1, errs
    assert sum("from the cache" in err for err in errs) == 1, errs
    assert len(entries(cache_dir)) == 1 and not list((cache_dir / "decoded").glob(".*.tmp"))


def _stalled_folder(tmp_path: Path, files: int) -> Path:
    """A folder whose images include a named pipe: reading it blocks, like a file on a stalled
    network disk, so decoding never ends on its own."""
    write_images(tmp_path, {"a": files // 2, "b": files - files // 2})
    os.mkfifo(tmp_path / "b" / "L0-0000x.png")
    return tmp_path / "b" / "L0-0000x.png"


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 120) -> str:
    seen = ""
    end = time.monotonic() + timeout
    while text not in seen:
        line = process.stderr.readline()
        assert line or time.monotonic() < end, f"no {text!r} in {seen!r}"
        if not line and process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} before {text!r}: {seen}")
        seen += line
    return seen


def _no_reader(fifo: Path) -> bool:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # ENXIO: nobody has it open for reading
        return True
    return False


@pytest.mark.parametrize(("signum", "files"), [(signal.SIGINT, 3 * CHUNK), (signal.SIGTERM, 3 * CHUNK),
                                               (signal.SIGTERM, 6)])
def test_ctrl_c_and_sigterm_stop_decoding_within_a_second(tmp_path: Path, cache_dir: Path, signum: int,
                                                           files: int) -> None:
    fifo = _stalled_folder(tmp_path, files)
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "400"}
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "datasets", "imagefolder", "--path",
                                str(tmp_path)], env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        _wait_for(process, "data: decoding")
        time.sleep(0.5)  # the workers are in the middle of it, one stuck on the pipe
        sent = time.monotonic()
        process.send_signal(signum)
        err = _wait_for(process, "interrupted:", timeout=30)
        took = time.monotonic() - sent  # decoding stopped and its processes ended
        err += process.communicate(timeout=60)[1]  # then the interpreter unloads torch
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "stopped while decoding" in err and "Traceback" not in err
    assert took < 3.0, f"took {took:.1f} s"  # 1 s promised (0.1 s measured); slack for a loaded machine
    assert entries(cache_dir) == [] and not list((cache_dir / "decoded").glob(".*.tmp"))
    assert _no_reader(fifo), "a decoding process is still running"


def test_ctrl_c_while_waiting_for_another_process(tmp_path: Path, cache_dir: Path) -> None:
    _stalled_folder(tmp_path, 3 * CHUNK)
    builder = _python(LOAD, tmp_path)
    waiter = None
    try:
        _wait_for(builder, "data: decoding")
        waiter = _python(LOAD, tmp_path)
        seen = _wait_for(waiter, "data: waiting for process")
        assert f"process {builder.pid}, which is decoding" in seen
        sent = time.monotonic()
        waiter.send_signal(signal.SIGINT)
        err = _wait_for(waiter, "stopped while waiting for another process", timeout=30)
        assert time.monotonic() - sent < 3.0, err
        waiter.communicate(timeout=60)
        assert waiter.returncode != 0
    finally:
        for process in (builder, waiter):
            if process is not None:
                process.kill()  # its decoding processes die with it (they would hold its pipes open)
                process.communicate(timeout=60)


def test_cache_list_and_clear(tmp_path: Path, cache_dir: Path) -> None:
    from typer.testing import CliRunner

    from cnnlab.cli import app

    write_images(tmp_path, {"a": 2, "b": 2})
    load(tmp_path, test_fraction=0.5)
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list"])
    assert listed.exit_code == 0
    assert "1 decoded dataset" in listed.output
    assert f"image folder {tmp_path}: 4 images 1×7×9" in listed.output
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 1 decoded dataset" in cleared.output
    assert entries(cache_dir) == []
    assert "0 decoded datasets" in runner.invoke(app, ["cache", "list"]).output


def test_the_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.decoded_dir() == tmp_path / "mine" / "decoded"
    monkeypatch.delenv("CNNLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "cnnlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path("~/.cache/cnnlab").expanduser()


def test_an_old_npz_entry_is_listed_replaced_and_cleared(tmp_path: Path, cache_dir: Path) -> None:
    write_images(tmp_path, {"a": 2, "b": 2})
    load(tmp_path, test_fraction=0.5)
    (entry,) = entries(cache_dir)
    old = entry.with_suffix(".npz")  # what cnnlab 0.x (format 1) wrote for the same folder
    meta = {"format": 1, "description": "image folder (old)", "arrays": ["images"]}
    encoded = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(old, meta=encoded, images=np.zeros((4, 1, 7, 9)))
    listed = {found.path: found.description for found in cache.entries()}
    assert listed[old] == "image folder (old) (format 1: another version's, not used)"
    assert listed[entry].startswith(f"image folder {tmp_path}")
    entry.unlink()
    load(tmp_path, test_fraction=0.5)  # decoded again: the new entry replaces the old one
    assert not old.exists() and entries(cache_dir) == [entry]
    np.savez(old, meta=encoded)
    assert cache.clear()[0] == 2 and not old.exists() and not entry.exists()


def test_the_entry_is_written_while_training_starts_and_a_failed_write_is_said(
        tmp_path: Path, cache_dir: Path, capsys, monkeypatch) -> None:
    write_images(tmp_path, {"a": 3, "b": 3})
    written = threading.Event()
    write = cache.write_entry

    def slow_write(*args, **kwargs):
        assert written.wait(10), "the load waited for the write"
        return write(*args, **kwargs)

    monkeypatch.setattr(cache, "write_entry", slow_write)
    config = DataConfig(dataset="imagefolder", path=str(tmp_path), val=0.0, test_fraction=0.5)
    bundle = load_data(config, seed=0)
    assert entries(cache_dir) == [] and len(bundle.train) == 3  # loaded; the entry is still being written
    written.set()
    assert load(tmp_path, test_fraction=0.5) and "from the cache" in capsys.readouterr().err  # waits, reads

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "write_entry", disk_full)
    cache.clear()
    assert same(load(tmp_path, test_fraction=0.5), bundle)
    err = capsys.readouterr().err.replace("\n", "")
    assert f"could not cache the images of {tmp_path} (no space left on the device" in err
    assert entries(cache_dir) == []
