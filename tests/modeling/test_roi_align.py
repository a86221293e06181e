"""FastROIPooler / roi_align_rows compute torchvision's RoIAlign (forward and gradient) up to float rounding."""

import pytest
import torch
import torchvision

from cascade_det.modeling.roi_align import FastROIPooler, roi_align_rows

from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes


def random_rois(num, n_images, width, height, max_size, generator):
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([width, height]) - 8  # some start outside
    wh = torch.rand(num, 2, generator=generator) * max_size
    batch = torch.randint(0, n_images, (num, 1), generator=generator).float()
    return torch.cat([batch, xy, xy + wh], 1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_roi_align_rows_equals_torchvision_forward_and_backward(aligned, sampling_ratio, channels_last):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 24, 40, generator=g)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    rois = random_rois(60, 2, 160, 96, 150, g)  # image pixels at scale 1/4; some larger than the image
    rois[0, 1:] = torch.tensor([10.0, 10.0, 10.0, 10.0])  # empty
    rois[1, 1:] = torch.tensor([170.0, 100.0, 200.0, 130.0])  # entirely outside
    expected_in, got_in = features.clone().requires_grad_(), features.clone().requires_grad_()
    expected = torchvision.ops.roi_align(expected_in, rois, 7, 0.25, sampling_ratio, aligned)
    got = roi_align_rows(got_in, rois, 7, 0.25, sampling_ratio, aligned)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    grad = torch.randn(expected.shape, generator=g)
    expected.backward(grad)
    got.backward(grad)
    torch.testing.assert_close(got_in.grad, expected_in.grad, rtol=0, atol=1e-5)


def test_no_rois_give_an_empty_output():
    assert roi_align_rows(torch.randn(1, 4, 8, 8), torch.zeros(0, 5), 7, 1.0, 0, True).shape == (0, 4, 7, 7)


def test_fast_pooler_equals_detectron2_pooler_over_fpn_levels():
    g = torch.Generator().manual_seed(1)
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    kwargs = {"output_size": 7, "scales": scales, "sampling_ratio": 0, "pooler_type": "ROIAlignV2"}
    features = [torch.randn(2, 8, 256 // s, 320 // s, generator=g) for s in (4, 8, 16, 32)]
    boxes = [Boxes(random_rois(80, 1, 320, 256, 300, g)[:, 1:]) for _ in range(2)]
    expected = ROIPooler(**kwargs)(features, boxes)
    fast = FastROIPooler(**kwargs)
    torch.testing.assert_close(fast(features, boxes), expected, rtol=0, atol=1e-5)
    # The cascade pools the same maps once per stage: they are converted to channels-last once.
    converted = fast._channels_last(features)
    assert all(c.is_contiguous(memory_format=torch.channels_last) for c in converted)
    assert fast._channels_last(features) is converted
    torch.testing.assert_close(fast(features, boxes), expected, rtol=0, atol=1e-5)


def test_fast_pooler_refuses_other_pooler_types():
    with pytest.raises(ValueError, match="ROIAlign and ROIAlignV2 only; got pooler_type 'ROIPool'"):
        FastROIPooler(output_size=7, scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIPool")


def test_bfloat16_features_are_pooled_in_float32_like_torchvision_under_autocast():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(1, 8, 16, 16, generator=g).bfloat16()
    rois = random_rois(20, 1, 64, 64, 40, g)
    got = roi_align_rows(features, rois, 7, 0.25, 0, True)
    assert got.dtype == torch.bfloat16
    expected = torchvision.ops.roi_align(features.float(), rois, 7, 0.25, 0, True).bfloat16()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
