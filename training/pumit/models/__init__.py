"""PUMIT model library: SAC layers, universal tokenizer, SPAD-ViT, task heads, checkpoints.

Tensor convention: ``(B, C, D, H, W)``, D = slice axis; spacing ``(thickness, H, W)`` in mm
(see :mod:`pumit.spacing`). Every model's ``forward`` takes ``(x, spacing)``.
"""

from pumit.models.checkpoint import MODEL_TYPES, build_model, load_pretrained, read_record, save_pretrained, save_single_file
from pumit.models.convert import inflate_patch_embed, inflate_pos_embed, load_pumit_vit
from pumit.models.discriminator import PatchDiscriminator
from pumit.models.heads import ClassifierConfig, ModalityDiscriminator, ScaleClassifier, SpadViTClassifier, grad_reverse
from pumit.models.losses import TokenizerLoss, build_perceptual
from pumit.models.sac import SACConv, SACDownsample, SACMaxPool, SACUpsample
from pumit.models.segmentation import SegmenterConfig, SpadViTSegmenter
from pumit.models.tokenizer import SoftQuantizer, TokenizerConfig, UniversalTokenizer, prior_regularization
from pumit.models.vit import SpadViT, SpadViTMIM, ViTConfig, random_mask, soft_cross_entropy

__all__ = [
    "MODEL_TYPES", "build_model", "load_pretrained", "read_record", "save_pretrained", "save_single_file",
    "inflate_patch_embed", "inflate_pos_embed", "load_pumit_vit", "PatchDiscriminator", "ClassifierConfig",
    "ModalityDiscriminator", "ScaleClassifier", "SpadViTClassifier", "grad_reverse", "TokenizerLoss",
    "build_perceptual", "SACConv", "SACDownsample", "SACMaxPool", "SACUpsample", "SegmenterConfig",
    "SpadViTSegmenter", "SoftQuantizer", "TokenizerConfig", "UniversalTokenizer", "prior_regularization",
    "SpadViT", "SpadViTMIM", "ViTConfig", "random_mask", "soft_cross_entropy",
]
