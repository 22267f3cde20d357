"""Attention layers as torch-pruning prunes them: whole heads (or head dimensions) out of q, k,
v and the output projection together, MLP hidden channels beside them.

torch-pruning groups the channels of one head through its `num_heads` mapping (q, k, v ->
heads) and removes whole heads with `prune_num_heads`; the module's own head count, which its
forward reshapes by, is then set from the pruner's (its ViT and BERT examples do the same).

Two kinds of attention are found:
- transformers' self-attention (BERT, RoBERTa, HF ViT...): `query`, `key`, `value` Linears and
  `num_attention_heads` / `attention_head_size` / `all_head_size`, which its forward reads.
- torch's nn.MultiheadAttention (torchvision's VisionTransformer): its packed in_proj ties the
  head width to the model width, so a head cannot be removed from it; each one is replaced by
  HeadAttention, the same maths (checked on the model's own input) with q/k/v/out Linears.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# How close the rebuilt attention must stay to nn.MultiheadAttention: float reordering only.
_REBUILT_TOLERANCE = 1e-4


@dataclass
class AttentionSite:
    """One attention layer: its module, its q/k/v Linears, its kind ("hf" or "head")."""

    name: str
    module: Any
    q: Any
    k: Any
    v: Any
    kind: str

    @property
    def heads(self) -> int:
        return self.module.num_attention_heads if self.kind == "hf" else self.module.num_heads

    @property
    def head_size(self) -> int:
        return self.q.out_features // self.heads

    def set_heads(self, heads: int) -> None:
        """The module's own head count and width after pruning, which its forward reshapes by."""
        if self.kind == "hf":
            self.module.num_attention_heads = heads
            self.module.all_head_size = self.q.out_features
            self.module.attention_head_size = self.q.out_features // heads
        else:
            self.module.num_heads = heads
            self.module.head_dim = self.q.out_features // heads


def _is_hf_attention(module: Any) -> bool:
    from torch import nn

    return (all(isinstance(getattr(module, name, None), nn.Linear) for name in ("query", "key", "value"))
            and isinstance(getattr(module, "num_attention_heads", None), int))


def find_attention(model: "nn.Module") -> list[AttentionSite]:
    """The attention layers torch-pruning can remove heads from (after prepare_attention)."""
    sites = []
    for name, module in model.named_modules():
        if _is_hf_attention(module):
            sites.append(AttentionSite(name, module, module.query, module.key, module.value, "hf"))
        elif isinstance(module, head_attention_class()):
            sites.append(AttentionSite(name, module, module.q_proj, module.k_proj, module.v_proj, "head"))
    return sites


def prepare_attention(model: "nn.Module", example: Any) -> int:
    """Replace every nn.MultiheadAttention of `model` by HeadAttention with its weights;
    returns how many were replaced. The model's output on `example` must not move."""
    import torch
    from torch import nn

    from harness.optimize.prune import call_model

    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim]
    if not targets:
        return 0
    with torch.no_grad():
        before = call_model(model, example)
    for name, module in targets:
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, head_attention_class().from_multihead(module))
    with torch.no_grad():
        after = call_model(model, example)
    if isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor):
        scale = float(before.abs().max()) or 1.0
        drift = float((before - after).abs().max()) / scale
        if drift > _REBUILT_TOLERANCE:
            raise RuntimeError(f"rebuilding nn.MultiheadAttention moved the output by {drift:.2g} of its scale")
    return len(targets)


def num_heads_map(sites: list[AttentionSite]) -> dict:
    """torch-pruning's num_heads: each q/k/v Linear -> its layer's head count."""
    return {linear: site.heads for site in sites for linear in (site.q, site.k, site.v)}


def qkv_layers(sites: list[AttentionSite]) -> list:
    return [linear for site in sites for linear in (site.q, site.k, site.v)]


def mlp_layers(model: "nn.Module", sites: list[AttentionSite], ignored: list) -> list:
    """The first Linear of each feed-forward block: a Linear that widens (out > in), outside the
    attention projections and the output layers (BERT's intermediate.dense, ViT's mlp.0)."""
    from torch import nn

    attention = {id(m) for site in sites for m in site.module.modules()}
    ignored_ids = {id(m) for m in ignored}
    return [m for m in model.modules()
            if isinstance(m, nn.Linear) and m.out_features > m.in_features
            and id(m) not in attention and id(m) not in ignored_ids]


def sync_widths(model: "nn.Module") -> None:
    """Widths a model keeps as plain attributes and reshapes by, set from its pruned layers:
    torchvision's VisionTransformer reshapes its patches by `hidden_dim`."""
    for module in model.modules():
        conv = getattr(module, "conv_proj", None)
        if isinstance(getattr(module, "hidden_dim", None), int) and hasattr(conv, "out_channels"):
            module.hidden_dim = conv.out_channels


def heads_per_layer(model: "nn.Module") -> list[dict]:
    """Per attention layer: its name, heads and head width (for analysis and reports); torch's
    nn.MultiheadAttention counted too, as it is before prepare_attention rebuilds it."""
    from torch import nn

    rows = [{"layer": site.name, "heads": site.heads, "head_size": site.head_size}
            for site in find_attention(model)]
    rows += [{"layer": name, "heads": m.num_heads, "head_size": m.head_dim}
             for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    order = {name: position for position, (name, _) in enumerate(model.named_modules())}
    return sorted(rows, key=lambda row: order.get(row["layer"], 0))


@functools.cache
def head_attention_class() -> type:
    """HeadAttention, built on first use (torch loads lazily)."""
    import torch
    from torch import nn

    class HeadAttention(nn.Module):
        """nn.MultiheadAttention's maths with separate q/k/v/out Linears, so torch-pruning can
        remove whole heads; the scale stays the original 1/sqrt(head_dim), as trained."""

        def __init__(self, embed_dim: int, num_heads: int, *, batch_first: bool, dropout: float,
                     bias: bool = True) -> None:
            super().__init__()
            self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
            self.scale = self.head_dim ** -0.5
            self.batch_first, self.dropout = batch_first, dropout
            self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

        @classmethod
        def from_multihead(cls, mha: nn.MultiheadAttention) -> "HeadAttention":
            bias = mha.in_proj_bias is not None
            new = cls(mha.embed_dim, mha.num_heads, batch_first=mha.batch_first, dropout=mha.dropout, bias=bias)
            with torch.no_grad():
                for index, linear in enumerate((new.q_proj, new.k_proj, new.v_proj)):
                    linear.weight.copy_(mha.in_proj_weight[index * mha.embed_dim:(index + 1) * mha.embed_dim])
                    if bias:
                        linear.bias.copy_(mha.in_proj_bias[index * mha.embed_dim:(index + 1) * mha.embed_dim])
                new.out_proj.weight.copy_(mha.out_proj.weight)
                if bias:
                    new.out_proj.bias.copy_(mha.out_proj.bias)
            return new.train(mha.training)

        def forward(self, query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None,
                    average_attn_weights=True, is_causal=False):
            if not self.batch_first:
                query, key, value = (t.transpose(0, 1) for t in (query, key, value))
            batch, target, source = query.shape[0], query.shape[1], key.shape[1]
            q = self.q_proj(query).reshape(batch, target, self.num_heads, -1).transpose(1, 2)
            k = self.k_proj(key).reshape(batch, source, self.num_heads, -1).transpose(1, 2)
            v = self.v_proj(value).reshape(batch, source, self.num_heads, -1).transpose(1, 2)
            scores = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None:
                scores = (scores.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                          else scores + attn_mask)
            if key_padding_mask is not None:
                scores = scores.masked_fill(key_padding_mask[:, None, None, :].bool(), float("-inf"))
            weights = torch.nn.functional.dropout(scores.softmax(dim=-1), self.dropout, self.training)
            out = (weights @ v).transpose(1, 2).reshape(batch, target, -1)
            out = self.out_proj(out)
            if not self.batch_first:
                out = out.transpose(0, 1)
            return out, (weights.mean(dim=1) if average_attn_weights else weights) if need_weights else None

    return HeadAttention
