import pytest
import torch

from xdistill import parts


def test_timestep_sums_abs_over_channels():
    attr = torch.tensor([[[1.0, -2.0, 3.0], [-1.0, 1.0, 0.5]]])  # (1, 2, 3)
    assert torch.equal(parts.timestep_importance(attr), torch.tensor([[2.0, 3.0, 3.5]]))
    assert torch.equal(parts.timestep_importance(attr, signed=True), torch.tensor([[0.0, -1.0, 3.5]]))


def test_window_pads_the_last_window():
    attr = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert torch.equal(parts.window_importance(attr, size=2), torch.tensor([[3.0, 7.0, 5.0]]))
    with pytest.raises(ValueError, match="window size"):
        parts.window_importance(attr, size=0)


def test_pixel_and_patch():
    attr = torch.arange(16.0).reshape(1, 1, 4, 4)
    attr = torch.cat([attr, -attr], 1)  # two channels; abs doubles, signed cancels
    assert torch.equal(parts.pixel_importance(attr), 2 * torch.arange(16.0)[None])
    assert torch.equal(parts.pixel_importance(attr, signed=True), torch.zeros(1, 16))
    # 2x2 grid on 4x4: patch sums of 0..15 laid out row-major
    expected = 2 * torch.tensor([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]], dtype=torch.float)
    assert torch.equal(parts.patch_importance(attr, grid=2), expected)


def test_patch_non_divisible_grid_preserves_total_mass():
    attr = torch.rand(2, 3, 7, 5)
    got = parts.patch_importance(attr, grid=(3, 2))
    assert got.shape == (2, 6)
    assert torch.allclose(got.sum(1), attr.abs().sum((1, 2, 3)), rtol=1e-5)
    # 7 rows in 3 patch rows: rows 0-2, 3-4, 5-6 (r*3//7); 5 cols in 2: cols 0-2, 3-4 (c*2//5)
    assert torch.allclose(got[:, 0], attr.abs()[:, :, 0:3, 0:3].sum((1, 2, 3)), rtol=1e-5)
    assert torch.allclose(got[:, 3], attr.abs()[:, :, 3:5, 3:5].sum((1, 2, 3)), rtol=1e-5)


def test_token_and_registry():
    attr = torch.tensor([[[1.0, -1.0], [2.0, 0.0], [0.0, -3.0]]])
    assert torch.equal(parts.to_parts(attr, "token"), torch.tensor([[2.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        parts.pixel_importance(torch.zeros(2, 3))
