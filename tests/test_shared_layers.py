"""models/layers.py and the timm feature adapter: the state-dict keys checkpoints and the PP-OCR importer rely on,
attention equal to PyTorch's, one timm build for DBNet's strides."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from ocrforge.errors import ConfigError
from ocrforge.models import backbones
from ocrforge.models.backbones import TimmFeatures
from ocrforge.models.layers import SelfAttention, conv_norm_act, multihead_attention, squeeze_excite_gate


def test_conv_norm_act_keeps_sequential_keys() -> None:
    assert list(conv_norm_act(3, 8).state_dict()) == [
        "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]
    fused = conv_norm_act(3, 8, norm=False)  # a deploy form: bias in the conv, Identity where the norm was
    assert list(fused.state_dict()) == ["0.weight", "0.bias"] and isinstance(fused[1], nn.Identity)
    assert conv_norm_act(4, 4, (1, 3), act=None)[0].padding == (0, 1) and len(conv_norm_act(4, 4, act=None)) == 2
    assert list(squeeze_excite_gate(8, bias=False).state_dict()) == ["1.weight", "3.weight"]


def test_written_out_attention_equals_pytorch_multihead_attention() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    query, source = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    expected, _ = mha(query, source, source, need_weights=False)
    torch.testing.assert_close(multihead_attention(mha, query, source, causal=False), expected)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    expected, _ = mha(query, query, query, attn_mask=causal, need_weights=False)
    torch.testing.assert_close(multihead_attention(mha, query, query, causal=True), expected)
    attention = SelfAttention(16, 4, 0.0).eval()
    mha.in_proj_weight.data, mha.in_proj_bias.data = attention.qkv.weight.data, attention.qkv.bias.data
    mha.out_proj.weight.data, mha.out_proj.bias.data = attention.proj.weight.data, attention.proj.bias.data
    torch.testing.assert_close(attention(query), mha(query, query, query, need_weights=False)[0])


def _counting_builds(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []
    create = backbones.create_timm_backbone

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return create(*args, **kwargs)

    monkeypatch.setattr(backbones, "create_timm_backbone", counted)
    return calls


def test_dbnet_strides_build_the_timm_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = _counting_builds(monkeypatch)
    features = TimmFeatures("resnet18", [4, 8, 16, 32])
    assert len(builds) == 1
    reference = timm.create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4))
    assert list(features.body.state_dict()) == list(reference.state_dict())
    assert features.channels == [64, 128, 256, 512]
    reference.load_state_dict(features.body.state_dict())
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for ours, timms in zip(features.eval()(images), reference.eval()(images), strict=True):
            assert torch.equal(ours, timms)


def test_an_early_stride_leaves_the_later_stages_out(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = _counting_builds(monkeypatch)
    features = TimmFeatures("resnet18", [8])  # a recogniser's width stride
    assert builds[-1]["out_indices"] == (2,)
    assert list(features.body.state_dict()) == list(
        timm.create_model("resnet18", features_only=True, out_indices=(2,)).state_dict())
    assert [f.shape for f in features(torch.rand(1, 3, 32, 64))] == [(1, 128, 4, 8)]


def test_a_missing_stride_is_a_config_error_listing_the_model_strides() -> None:
    with pytest.raises(ConfigError, match=r"strides \[2, 4, 8, 16, 32\]; strides \[64\] are missing"):
        TimmFeatures("resnet18", [4, 64])
