"""Small transformers to try bench's head pruning and token inputs on, built from their
libraries' own classes with random init (nothing is downloaded):

    bench optimize models.transformer_examples:bert_tiny --variant heads=0.25,mlp=0.3
    bench optimize models.transformer_examples:vit_tiny --variant heads=0.25

- bert_tiny: transformers' BertForSequenceClassification, the shape of Google's BERT-tiny
  (2 layers, hidden 128, 2 heads) but 4 heads of 32 so that 25 % of heads is a whole head, a
  vocabulary of 1000 and 64-token sequences; inputs input_ids and attention_mask (int64).
- vit_tiny: torchvision's VisionTransformer, 4 layers of 4 heads of 48 (hidden 192, MLP 768) on
  64x64 images in 8x8 patches, 10 classes.
"""
from __future__ import annotations

SEQUENCE_LENGTH = 64
VOCABULARY = 1000


def bert_tiny():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCABULARY, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=SEQUENCE_LENGTH, num_labels=2,
                        attn_implementation="eager")
    return BertForSequenceClassification(config)


bert_tiny.INPUTS = [f"input_ids:int64:1,{SEQUENCE_LENGTH}", f"attention_mask:int64:1,{SEQUENCE_LENGTH}"]


def vit_tiny():
    from torchvision.models import VisionTransformer

    from torch import nn

    model = VisionTransformer(image_size=64, patch_size=8, num_layers=4, num_heads=4, hidden_dim=192,
                              mlp_dim=768, num_classes=10)
    # torchvision zero-initialises the head (for fine-tuning): every output would be 0, and
    # parity and agreement would say nothing. Random weights, as the other layers have.
    nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


vit_tiny.INPUT_SHAPE = (1, 3, 64, 64)
