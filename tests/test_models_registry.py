"""Models stored in a cache (sensorq/models/registry.py): add, list, get,
export, import, remove; a failed write at any file call leaves the old model
or none; a power cut after any file operation leaves, of an acknowledged
model, that model or a later one, never a torn file."""
from __future__ import annotations

import errno
import random
import shutil

import numpy as np
import pytest

import sensorq
from sensorq.models import encode_model, load_model
from sensorq.models.model import ModelError
from sensorq.models.registry import ModelRegistry, format_table
from sensorq.store import fileio

from faultfs import FaultyFS, RecordingFS, crash_states

pytest.importorskip("sklearn", reason="scikit-learn (the 'models' extra) is not installed")
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

SECOND = 1_000_000_000
FEATURES = ["mean(x)", "std(x)", "max(x)"]


def make_cache(path):
    cache = sensorq.open(path, create=True)
    cache.create_stream("s", [sensorq.Channel("x", "int16"), sensorq.Channel("lab", "int8", categories=("calm", "busy"))],
                        rate_hz=50)
    n = 6000
    t = 1_700_000_000 * SECOND + np.arange(n, dtype=np.int64) * 20_000_000
    lab = (np.arange(n) // 500 % 2).astype(np.int8)
    x = (np.random.default_rng(0).normal(0, 100, n) * (1 + 3 * lab)).astype(np.int16)
    cache.append("s", t, {"x": x, "lab": lab})
    cache.flush()
    return cache


def estimator(cache, depth):
    from sensorq.models.features import compute_windows, make_pipeline
    p = make_pipeline(cache.streams["s"], FEATURES, window="1s", hop="500ms")
    w = compute_windows(cache, p, codes=False, values=True, label="lab")
    return DecisionTreeClassifier(max_depth=depth, random_state=0).fit(w.values, w.label)


def add(reg, cache, depth, name="m"):
    return reg.add(name, estimator(cache, depth), stream="s", window="1s", hop="500ms",
                   features=FEATURES, label="lab")      # the label's categories name the classes


def test_add_list_get_export_import_remove(tmp_path):
    with make_cache(tmp_path / "c") as cache:
        reg = ModelRegistry(cache)
        assert reg.names() == [] and reg.list() == []
        model = add(reg, cache, 3)
        assert reg.names() == ["m"]
        got = reg.get("m")
        assert encode_model(got) == encode_model(model)
        assert got.outputs.name == "m" and got.outputs.classes == ["calm", "busy"]
        (s,) = reg.list()
        assert (s.kind, s.stream, s.inputs, s.window_ns, s.hop_ns) == ("forest", "s", ["x"], SECOND, SECOND // 2)
        assert s.size_quantized < s.size_float and s.device_flash == s.size_quantized
        assert "m " in format_table(reg.list()) and "1s/500ms" in format_table(reg.list())
        n = reg.export("m", tmp_path / "m.sqm", quantized_only=True)
        assert n == s.size_quantized
        reg.import_file(tmp_path / "m.sqm", "copy")
        assert reg.names() == ["copy", "m"]
        reg.remove("m")
        assert reg.names() == ["copy"]
        with pytest.raises(ModelError, match="no model 'm'.*copy"):
            reg.get("m")
        with pytest.raises(ModelError, match="not valid"):
            reg.add("bad name", model)


def test_a_damaged_model_file_is_reported_by_name(tmp_path):
    with make_cache(tmp_path / "c") as cache:
        reg = ModelRegistry(cache)
        add(reg, cache, 2)
        path = tmp_path / "c" / "models" / "m.sqm"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
        with pytest.raises(ModelError, match="m.sqm.*CRC"):
            reg.get("m")


def test_read_only_caches_cannot_change_models(tmp_path):
    make_cache(tmp_path / "c").close()
    with sensorq.open(tmp_path / "c", readonly=True) as cache:
        with pytest.raises(ModelError, match="read-only"):
            add(ModelRegistry(cache), cache, 2)


@pytest.mark.parametrize("call", ["create", "pwrite", "fsync", "replace", "fsync_directory"])
@pytest.mark.parametrize("short", [False, True])
def test_a_failed_write_keeps_the_old_model(tmp_path, call, short):
    if short and call != "pwrite":
        pytest.skip("short writes are pwrite's")
    with make_cache(tmp_path / "c") as cache:
        reg = ModelRegistry(cache)
        old = encode_model(add(reg, cache, 2))
        new_est = estimator(cache, 5)
        fs = FaultyFS(call=call, at=0, errno_=errno.ENOSPC, short=short)
        with fileio.install(fs), pytest.raises(sensorq.StorageError, match="cannot store model 'm'"):
            reg.add("m", new_est, stream="s", window="1s", hop="500ms", features=FEATURES)
        assert fs.fired == 1
        kept = (tmp_path / "c" / "models" / "m.sqm").read_bytes()
        # the rename is the commit point: before it the old file is untouched;
        # a failure after it (the directory fsync) has the new one in place
        assert kept == old or (call == "fsync_directory" and load_model(kept))
        assert reg.names() == ["m"]


def test_a_power_cut_at_any_point_leaves_a_whole_model(tmp_path):
    root = tmp_path / "live"
    root.mkdir()
    fs = RecordingFS(root)
    with fileio.install(fs):
        cache = make_cache(root / "c")
        reg = ModelRegistry(cache)
        blobs = {}
        for version, depth in (("v1", 1), ("v2", 4)):
            blobs[version] = encode_model(add(reg, cache, depth))
            fs.mark(version)
        cache.close()
    assert blobs["v1"] != blobs["v2"]
    states = 0
    for directory, acked in crash_states(fs.log, tmp_path / "states", random.Random(3), 2):
        path = directory / "c" / "models" / "m.sqm"
        found = path.read_bytes() if path.exists() else None
        allowed = {None: (None, blobs["v1"], blobs["v2"]), "v1": (blobs["v1"], blobs["v2"]),
                   "v2": (blobs["v2"],)}[acked]
        assert found in allowed, f"state {directory.name} (acknowledged {acked}): a torn or lost model"
        states += 1
        shutil.rmtree(directory)
    assert states > 50
