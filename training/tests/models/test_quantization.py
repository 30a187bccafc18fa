"""int8 dynamic quantization (torch.ao) applies to every ViT projection and keeps the output."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pumit.models import SegmenterConfig, SpadViTSegmenter, ViTConfig


def test_int8_dynamic_quantization_covers_attention_and_keeps_the_output():
    torch.manual_seed(0)
    model = SpadViTSegmenter(SegmenterConfig(vit=ViTConfig.preset("small", patch_size=16), num_classes=3)).eval()
    x = torch.randn(1, 1, 16, 64, 64)
    spacing = (4.0, 1.0, 1.0)
    with torch.no_grad():
        ref = model(x, spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        qmodel = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    attn = [m for m in qmodel.modules() if type(m).__name__ == "Attention"]
    assert attn and all("quantized" in type(a.v_proj).__module__ and "quantized" in type(a.q_proj).__module__ for a in attn), "q/v projections must be swappable modules"
    with torch.no_grad():
        out = qmodel(x, spacing)  # crashed before: attention read q_proj.weight, a method on quantized modules
    assert out.shape == ref.shape
    r = torch.corrcoef(torch.stack([ref.flatten(), out.flatten()]))[0, 1].item()
    assert r > 0.99, r
