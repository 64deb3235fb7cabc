"""The legacy .pth reader the ONNX engine uses for its partners' weights, without torch: the same
tensors as torch.load, and a clear refusal of anything that is not a plain legacy state dict."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from engine.model.checkpoints import CheckpointError
from engine.model.package_weights import (LITE0_FILE, LITE0_PACKAGE, LITE2_FILE, LITE2_PACKAGE, MAGIC, PROTOCOL,
                                          package_file, read_legacy_pth)

torch = pytest.importorskip("torch")


def _file_or_skip(package: str, file: str):
    try:
        return package_file(package, file)
    except CheckpointError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("package, file", [(LITE0_PACKAGE, LITE0_FILE), (LITE2_PACKAGE, LITE2_FILE)])
def test_same_tensors_as_torch_load(package, file):
    path = _file_or_skip(package, file)
    ours = read_legacy_pth(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs) and len(ours) > 250
    for key, tensor in theirs.items():
        expected = tensor.numpy()
        assert ours[key].dtype == expected.dtype and ours[key].shape == expected.shape, key
        assert np.array_equal(ours[key], expected), key


def _legacy_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def test_views_offsets_and_dtypes(tmp_path):
    # tensors that share a storage at an offset, a transposed (strided) one, integer and half types
    base = torch.arange(24, dtype=torch.float32)
    state = {"whole": base, "tail": base[10:16], "t": base[:12].view(3, 4).t(), "steps": torch.tensor(7),
             "half": torch.linspace(-1, 1, 5).half(), "empty": torch.zeros(0, 3)}
    path = tmp_path / "views.pth"
    path.write_bytes(_legacy_bytes(state))
    got = read_legacy_pth(path)
    for key, tensor in state.items():
        assert got[key].shape == tuple(tensor.shape) and np.array_equal(got[key], tensor.numpy()), key
    assert got["steps"].dtype == np.int64 and got["half"].dtype == np.float16


def test_truncated_file_refused(tmp_path):
    path = tmp_path / "cut.pth"
    path.write_bytes(_legacy_bytes({"w": torch.ones(1000)})[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        read_legacy_pth(path)


def test_zip_format_refused(tmp_path):
    path = tmp_path / "new.pth"
    torch.save({"w": torch.ones(3)}, path)
    with pytest.raises(CheckpointError, match="not a readable legacy PyTorch state dict"):
        read_legacy_pth(path)


class _Runs:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


@pytest.mark.parametrize("where", [2, 3])  # in the header pickles too, not only in the state dict
def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys, where):
    parts = [MAGIC, PROTOCOL, {"little_endian": True}, {"w": 1}, []]
    parts[where] = {"w": _Runs()}
    buffer = io.BytesIO()
    for part in parts:
        pickle.dump(part, buffer, protocol=2)
    path = tmp_path / "evil.pth"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match=r"\.print is not part of a plain state dict"):
        read_legacy_pth(path)
    assert "ran code" not in capsys.readouterr().out


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="cannot be read") as info:
        read_legacy_pth(tmp_path / "none.pth")
    assert "\n" not in str(info.value)
