"""Baseline models the benchmarks compare against, built to match ours in width/depth/heads/tokens.

* ``monai-vit``: :class:`monai.networks.nets.ViT` with the same width, depth, heads, a 4× GELU MLP (the
  parameter count of our 8/3× SwiGLU) and a conv patch embedding whose patch is **our adaptive patch**
  ``(pd, P, P)``, so both see exactly the same number of tokens. Its attention is switched to
  :func:`torch.nn.functional.scaled_dot_product_attention` (``use_flash_attention``), as ours uses,
  so the comparison is not won by a slow attention kernel.
* ``timm-vit`` / ``timm-eva`` (only when ``import timm`` works): timm's 2D
  ``VisionTransformer`` / ``Eva`` (EVA-02 style: SwiGLU, RoPE) on a 2D image whose patch grid has the
  same number of tokens as ours (a 3D grid ``(d, h, w)`` is laid out as ``(d·h, w)``).
* ``SwinUNETR`` (feature size 48, the published BTCV configuration), ``UNETR`` (ViT-B encoder,
  SDPA attention) and ``DynUNet`` configured like nnU-Net 3d_fullres (:func:`nnunet_dynunet`) from MONAI
  for segmentation.

All MIM baselines share ours' head ``Linear(C, C) → GELU → Linear(C, K)`` and loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmarks.common import timm_status


def _mim_head(dim: int, codebook: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, codebook))


def enable_sdpa(module: nn.Module) -> int:
    """Switch MONAI ``SABlock`` attention to SDPA (a runtime flag); returns how many blocks were switched."""
    n = 0
    for m in module.modules():
        if hasattr(m, "use_flash_attention") and hasattr(m, "save_attn") and not m.save_attn:
            m.use_flash_attention = True
            n += 1
    return n


class MonaiViTMIM(nn.Module):
    """MONAI ViT + mask token + [CLS] + MIM head. ``forward(x, mask) → logits (B, N, K)``."""

    name = "monai-vit"

    def __init__(self, *, dim: int, depth: int, heads: int, codebook: int, img_size: tuple[int, ...], patch: tuple[int, ...]):
        super().__init__()
        from monai.networks.nets import ViT

        spatial_dims = len(img_size)
        self.vit = ViT(
            in_channels=1, img_size=img_size, patch_size=patch, hidden_size=dim, mlp_dim=4 * dim, num_layers=depth,
            num_heads=heads, proj_type="conv", pos_embed_type="learnable", classification=False,
            spatial_dims=spatial_dims, qkv_bias=True,
        )
        self.sdpa_blocks = enable_sdpa(self.vit)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.mim_head = _mim_head(dim, codebook)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 2 and x.ndim == 5:
            x = x[:, :, 0]
        t = self.vit.patch_embedding(x)  # (B, N, C), learnable position embedding added
        t = torch.where(mask.unsqueeze(-1), self.mask_token.to(t.dtype), t)
        h = torch.cat([self.cls_token.expand(t.shape[0], -1, -1).to(t.dtype), t], dim=1)
        for blk in self.vit.blocks:
            h = blk(h)
        h = self.vit.norm(h)
        return self.mim_head(h[:, 1:])


class TimmMIM(nn.Module):
    """timm ViT/EVA on a 2D layout of our token grid. The mask token is not applied (timm's
    ``forward_features`` has no mask input across versions); its cost, one elementwise select, is
    negligible next to the blocks."""

    def __init__(self, kind: str, *, dim: int, depth: int, heads: int, codebook: int, grid: tuple[int, int, int], patch: int,
                 depth_patch: int = 1):
        super().__init__()
        d, h, w = grid
        self.depth_patch = depth_patch
        img = (d * h * patch, w * patch)
        self.img_size = img
        if kind == "timm-eva":
            from timm.models.eva import Eva

            self.net = Eva(img_size=img, patch_size=patch, in_chans=1, num_classes=0, embed_dim=dim, depth=depth,
                           num_heads=heads, qkv_bias=True, mlp_ratio=4 * 2 / 3, swiglu_mlp=True, scale_mlp=True,
                           use_rot_pos_emb=True, ref_feat_shape=(d * h, w))
        else:
            from timm.models.vision_transformer import VisionTransformer

            self.net = VisionTransformer(img_size=img, patch_size=patch, in_chans=1, num_classes=0, embed_dim=dim,
                                         depth=depth, num_heads=heads, mlp_ratio=4.0, qkv_bias=True)
        self.name = kind
        self.prefix = int(getattr(self.net, "num_prefix_tokens", 1))
        self.mim_head = _mim_head(dim, codebook)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """Our ``(B, 1, D, H, W)`` batch laid out as the 2D image timm sees (same voxels, same tokens)."""
        # one slice per depth patch (a 2D patch embedding cannot fold depth taps), slices stacked along H
        return x[:, :, :: self.depth_patch].reshape(x.shape[0], 1, *self.img_size).contiguous()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.net.forward_features(x)
        return self.mim_head(h[:, self.prefix:])


def mim_baselines(*, dim: int, depth: int, heads: int, codebook: int, img_size: tuple[int, int, int], patch: tuple[int, int, int],
                  grid: tuple[int, int, int], use_timm: bool = True) -> tuple[list[nn.Module], list[str]]:
    """The MIM baselines available here, and notes on the ones that are not."""
    notes: list[str] = []
    planar = img_size[0] == 1
    models: list[nn.Module] = [
        MonaiViTMIM(dim=dim, depth=depth, heads=heads, codebook=codebook,
                    img_size=img_size[1:] if planar else img_size, patch=patch[1:] if planar else patch)
    ]
    ok, why = timm_status()
    if use_timm and ok:
        for kind in ("timm-vit", "timm-eva"):
            try:
                m = TimmMIM(kind, dim=dim, depth=depth, heads=heads, codebook=codebook, grid=grid, patch=patch[-1],
                             depth_patch=patch[0])
                n_patches = getattr(m.net.patch_embed, "num_patches", None)
                if n_patches is None:  # older/newer timm: count the tokens with a forward pass instead
                    with torch.no_grad():
                        n_patches = m.net.forward_features(torch.zeros(1, 1, *m.img_size)).shape[1] - m.prefix
                n = grid[0] * grid[1] * grid[2]
                if n_patches != n:
                    notes.append(f"{kind} skipped: {n_patches} tokens, ours {n}")
                    continue
                models.append(m)
            except Exception as e:  # noqa: BLE001 - timm's API differs across versions: fall back cleanly
                notes.append(f"{kind} skipped: {type(e).__name__}: {str(e)[:160]}")
    else:
        notes.append(f"timm baselines not run ({why})")
    return models, notes


def nnunet_plan(roi: tuple[int, int, int], spacing: tuple[float, float, float], max_stages: int = 6
                ) -> tuple[list[list[int]], list[list[int]]]:
    """Kernel sizes and strides by nnU-Net's 3d_fullres planning rules for a ``roi`` (D, H, W) patch at
    ``spacing`` (mm, same order): an axis is downsampled by 2 while its spacing is at most 2x the finest
    current spacing and it keeps at least 4 voxels (nnU-Net: feature map >= 4); its kernel is 3, or 1 while
    the axis is more than 2x coarser than the finest (so 1x3x3 on thick slices); at most ``max_stages``."""
    size, sp = list(roi), [float(v) for v in spacing]
    kernels = [[3 if s <= 2 * min(sp) else 1 for s in sp]]
    strides = [[1, 1, 1]]
    while len(strides) < max_stages:
        st = [2 if (s <= 2 * min(sp) and n // 2 >= 4) else 1 for s, n in zip(sp, size)]
        if 2 not in st:
            break
        strides.append(st)
        size = [n // v for n, v in zip(size, st)]
        sp = [s * v for s, v in zip(sp, st)]
        kernels.append([3 if s <= 2 * min(sp) else 1 for s in sp])
    return kernels, strides


def nnunet_dynunet(in_channels: int, num_classes: int, roi: tuple[int, int, int], spacing: tuple[float, float, float],
                   base_filters: int = 32, max_filters: int = 320) -> tuple[nn.Module, tuple[int, int, int]]:
    """MONAI ``DynUNet`` configured like nnU-Net 3d_fullres (:func:`nnunet_plan`; filters 32·2^k capped at 320,
    instance norm + LeakyReLU, two convs per stage, no deep supervision at inference). Returns the network and its
    total stride per axis (the input must be divisible by it)."""
    from monai.networks.nets import DynUNet

    kernels, strides = nnunet_plan(roi, spacing)
    filters = [min(base_filters * 2**i, max_filters) for i in range(len(strides))]
    net = DynUNet(3, in_channels, num_classes, kernel_size=kernels, strides=strides, upsample_kernel_size=strides[1:],
                  filters=filters, norm_name="instance", deep_supervision=False, res_block=False)
    total = [1, 1, 1]
    for st in strides:
        total = [t * v for t, v in zip(total, st)]
    return net, (total[0], total[1], total[2])


def segmentation_baselines(num_classes: int, roi: tuple[int, int, int], swin_feature_size: int = 48, tiny: bool = False,
                           spacing: tuple[float, float, float] = (2.5, 0.8, 0.8)) -> dict[str, nn.Module]:
    """MONAI SwinUNETR, UNETR and nnU-Net-like DynUNet for ``roi`` (D, H, W) windows at ``spacing`` (DynUNet's
    plan depends on it); ``tiny``: toy widths for the smoke test."""
    from monai.networks.nets import UNETR, SwinUNETR

    if tiny:
        swin = SwinUNETR(in_channels=1, out_channels=num_classes, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))
        swin_name = "SwinUNETR(tiny)"
    else:
        swin = SwinUNETR(in_channels=1, out_channels=num_classes, feature_size=swin_feature_size)
        swin_name = f"SwinUNETR(fs={swin_feature_size})"
    if tiny:
        unetr = UNETR(in_channels=1, out_channels=num_classes, img_size=roi, feature_size=8, hidden_size=64, mlp_dim=128, num_heads=2)
        name = "UNETR(tiny)"
    else:
        unetr = UNETR(in_channels=1, out_channels=num_classes, img_size=roi, feature_size=16, hidden_size=768, mlp_dim=3072, num_heads=12)
        name = "UNETR(ViT-B)"
    enable_sdpa(unetr)
    dyn, _ = nnunet_dynunet(1, num_classes, roi, spacing, base_filters=8 if tiny else 32, max_filters=32 if tiny else 320)
    return {swin_name: swin, name: unetr, "DynUNet(nnU-Net)" if not tiny else "DynUNet(tiny)": dyn}


def describe(model: nn.Module) -> dict[str, Any]:
    return {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
