"""The packaged ImageNet EfficientNet-Lite0 weights, converted to timm's names by our own code."""
from __future__ import annotations

import pytest
import torch

from engine.model.checkpoints import CheckpointError
from engine.model.pretrained import (efficientnet_lite0_state_dict, efficientnet_lite2_state_dict, map_in_order,
                                     package_file)

timm = pytest.importorskip("timm")


def _converted_or_skip(convert):
    try:
        return convert()
    except CheckpointError as exc:  # the package is not installed
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def lite0_state():
    return _converted_or_skip(efficientnet_lite0_state_dict)


@pytest.fixture(scope="module")
def lite2_state():
    return _converted_or_skip(efficientnet_lite2_state_dict)


def test_converted_weights_load_strictly_into_timm(lite0_state, lite2_state):
    for arch, state in (("efficientnet_lite0", lite0_state), ("efficientnet_lite2", lite2_state)):
        net = timm.create_model(arch, pretrained=False)
        net.load_state_dict(state, strict=True)


@pytest.mark.parametrize("arch, package, file", [
    ("efficientnet_lite0", "LITE0_PACKAGE", "LITE0_FILE"), ("efficientnet_lite2", "LITE2_PACKAGE", "LITE2_FILE")])
def test_tensors_pair_up_by_kind(arch, package, file):
    # shapes alone cannot tell weight, bias, running_mean and running_var apart: the package's own
    # names, taken in the same order, must end like timm's
    from engine.model import pretrained
    from engine.model.weight_files import torch_load_weights_only

    raw = torch_load_weights_only(package_file(getattr(pretrained, package), getattr(pretrained, file)))
    ours = [k for k in timm.create_model(arch).state_dict() if not k.endswith("num_batches_tracked")]
    theirs = [k for k in raw if not k.endswith("num_batches_tracked")]
    assert [k.rsplit(".", 1)[1] for k in theirs] == [k.rsplit(".", 1)[1] for k in ours]


def test_batchnorm_variances_are_variances(lite0_state):
    variances = [v for k, v in lite0_state.items() if k.endswith("running_var")]
    assert len(variances) > 40
    assert all((v >= 0).all() for v in variances)  # some channels are dead (exactly 0) in this file


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite2"])
def test_pretrained_features_separate_simple_images(arch, request):
    # ImageNet features of a striped and a flat image differ far more than two flat images of
    # slightly different grey: random weights would not order them so reliably
    state = request.getfixturevalue(arch.replace("efficientnet_", "") + "_state")
    net = timm.create_model(arch, pretrained=False, num_classes=0)
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier")})
    net.eval()
    flat_a, flat_b = torch.full((1, 3, 128, 128), 0.1), torch.full((1, 3, 128, 128), 0.15)
    stripes = torch.zeros(1, 3, 128, 128)
    stripes[..., ::8, :] = 1.0
    with torch.no_grad():
        fa, fb, fs = (torch.nn.functional.normalize(net(x), dim=-1) for x in (flat_a, flat_b, stripes))
    assert (fa @ fb.T).item() > (fa @ fs.T).item()


def test_map_in_order_checks_count_and_shapes():
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2), "bn.num_batches_tracked": torch.zeros(())}
    mapped = map_in_order({"x": torch.ones(2, 3), "y": torch.full((2,), 7.0)}, target, "src")
    assert list(mapped) == ["a.weight", "a.bias"]
    assert mapped["a.bias"].tolist() == [7.0, 7.0]
    with pytest.raises(CheckpointError, match="does not fit"):
        map_in_order({"x": torch.ones(3, 2), "y": torch.ones(2)}, target, "src")
    with pytest.raises(CheckpointError, match="holds 1 tensors"):
        map_in_order({"x": torch.ones(2, 3)}, target, "src")


def test_missing_package_is_a_clear_error():
    with pytest.raises(CheckpointError, match="not installed"):
        package_file("no_such_package_for_sketch_search", "x.pth")
