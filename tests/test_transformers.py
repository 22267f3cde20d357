"""Issue 15: transformers. Whole attention heads pruned with torch-pruning (a BERT-tiny-like
classifier of transformers' BertForSequenceClassification and a small torchvision
VisionTransformer, both random init), token inputs through conversion and accuracy, and input
specs that do not fit the model. Real models, real LiteRT; nothing is mocked."""
from __future__ import annotations

import copy
import re
import json

import numpy as np
import pytest
import torch

from harness.benchmark.command import input_layer_flags
from harness.optimize.attention import find_attention, head_attention_class, prepare_attention
from harness.optimize.convert import FP32_RELATIVE_TOLERANCE, convert_to_tflite
from harness.optimize.evaluate import tflite_predict
from harness.optimize.profile import count_params_macs
from harness.optimize.prune import PruneSettings, structured_prune
from models.datasets import load_dataset, read_jsonl_samples
from models.errors import ModelInputError
from models.inputs import InputBatch, generated_inputs, parse_input, parse_inputs
from models.registry import resolve_model
from models.transformer_examples import SEQUENCE_LENGTH, VOCABULARY

BERT = "models.transformer_examples:bert_tiny"
VIT = "models.transformer_examples:vit_tiny"
VIT_TOKENS = (64 // 8) ** 2 + 1  # 8x8 patches of a 64x64 image, and the class token


@pytest.fixture(scope="module")
def bert():
    source = resolve_model(BERT)
    return source, source.load_torch()


@pytest.fixture(scope="module")
def vit():
    source = resolve_model(VIT)
    return source, source.load_torch()


def _linear_shapes(model) -> dict[str, tuple[int, int, bool]]:
    return {name: (m.in_features, m.out_features, m.bias is not None)
            for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _expected_drop(before: dict, after: dict, tokens: int) -> tuple[int, int]:
    """Parameters and MACs a pruning removed, computed from the Linear shapes: a Linear holds
    in*out weights (+ out biases) and does tokens*in*out multiply-adds (+ out bias adds, as
    torch-pruning's counter counts them)."""
    params = macs = 0
    for name, (fan_in, fan_out, bias) in before.items():
        new_in, new_out, _ = after[name]
        params += fan_in * fan_out - new_in * new_out + (fan_out - new_out if bias else 0)
        macs += tokens * (fan_in * fan_out - new_in * new_out) + (fan_out - new_out if bias else 0)
    return params, macs


def test_bert_loses_a_quarter_of_its_heads_as_computed_and_converts_within_parity(bert, tmp_path):
    source, baseline = bert
    model = copy.deepcopy(baseline)
    example = source.example_inputs()
    shapes_before = _linear_shapes(model)
    report = structured_prune(model, example, PruneSettings(ratio=None, heads=0.25), model_name=BERT)
    for site in find_attention(model):
        assert (site.heads, site.head_size) == (3, 32), site.name  # 4 heads of 32 -> 3 of 32
        assert site.q.out_features == site.k.out_features == site.v.out_features == 96
    params, macs = _expected_drop(shapes_before, _linear_shapes(model), SEQUENCE_LENGTH)
    assert params == 2 * (3 * (128 * 32 + 32) + 32 * 128)  # two layers, one head each
    assert report.params_before - report.params_after == params
    assert report.macs_before - report.macs_after == macs
    sample = generated_inputs(source.inputs, 8, seed=1)
    conversion = convert_to_tflite(model, sample, tmp_path / "bert-heads25.tflite", "bert")
    assert conversion.relative_diff <= FP32_RELATIVE_TOLERANCE
    # The .tflite takes the token inputs as they are (ids, mask), and agrees with torch.
    with torch.no_grad():
        torch_top1 = model(*[torch.from_numpy(a) for a in sample.arrays.values()]).argmax(1).numpy()
    assert (tflite_predict(tmp_path / "bert-heads25.tflite", sample).argmax(1) == torch_top1).all()


def test_bert_mlp_knob_narrows_only_the_feed_forward(bert):
    source, baseline = bert
    model = copy.deepcopy(baseline)
    structured_prune(model, source.example_inputs(), PruneSettings(ratio=None, mlp=0.3), model_name=BERT)
    for layer in model.model.bert.encoder.layer:
        # 30 % of 512 is 154 channels; torch-pruning rounds the cut up to 160, leaving a multiple of 8
        assert layer.intermediate.dense.out_features == 352
        assert layer.output.dense.in_features == 352
        assert layer.attention.self.num_attention_heads == 4
    assert model.model.bert.config.hidden_size == 128


def test_bert_head_dim_knob_keeps_every_head_and_narrows_each(bert):
    source, baseline = bert
    model = copy.deepcopy(baseline)
    structured_prune(model, source.example_inputs(), PruneSettings(ratio=None, head_dim=0.25), model_name=BERT)
    for site in find_attention(model):
        assert (site.heads, site.head_size) == (4, 24), site.name  # 32 - 25 % = 24 dims per head
    assert model.model.bert.config.hidden_size == 128  # the residual width is not touched


def test_bert_int8_is_calibrated_on_token_samples(bert, tmp_path):
    from harness.optimize.quantize import quantize_tflite

    source, model = bert
    fp32 = tmp_path / "bert.tflite"
    convert_to_tflite(model, generated_inputs(source.inputs, 2, seed=0), fp32, "bert")
    result = quantize_tflite(fp32, "int8", generated_inputs(source.inputs, 32, seed=5), tmp_path / "bert-int8.tflite",
                             parity_inputs=generated_inputs(source.inputs, 32, seed=6))
    assert result.size_bytes < 0.6 * fp32.stat().st_size
    assert result.parity["top1_agreement"] >= 0.9 and result.parity["cosine_similarity"] > 0.9


def test_analyze_shows_heads_per_layer_and_what_removing_one_costs(bert):
    from harness.optimize.analyze import analyze_model, format_analysis

    source, _ = bert
    report = analyze_model(source, load_dataset(source, max_test=64, max_train=0), max_groups=2)
    assert [(row["layer"], row["heads"], row["head_size"]) for row in report.heads] == [
        (f"model.bert.encoder.layer.{i}.attention.self", 4, 32) for i in range(2)]
    for row in report.heads:
        assert 0 <= row["metric_after"] <= 1 and row["drop"] == pytest.approx(1 - row["metric_after"])
    assert not any(row.get("error") for row in report.sensitivity)
    text = format_analysis(report)
    assert "attention heads (agreement after removing each layer's weakest head alone):" in text
    assert "2 attention layers of 4 heads" in report.verdict


def test_vit_multihead_attention_is_rebuilt_exactly_then_loses_whole_heads(vit, tmp_path):
    source, baseline = vit
    model = copy.deepcopy(baseline)
    example = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(example)
    assert prepare_attention(model, example) == 4
    assert all(isinstance(site.module, head_attention_class()) for site in find_attention(model))
    with torch.no_grad():
        assert torch.allclose(model(example), before, atol=1e-5)
    shapes_before = _linear_shapes(model)
    report = structured_prune(model, example, PruneSettings(ratio=None, heads=0.25), model_name=VIT)
    for site in find_attention(model):
        assert (site.heads, site.head_size) == (3, 48), site.name
    params, macs = _expected_drop(shapes_before, _linear_shapes(model), VIT_TOKENS)
    assert params == 4 * (3 * (192 * 48 + 48) + 48 * 192)
    assert report.params_before - report.params_after == params
    assert report.macs_before - report.macs_after == macs
    images = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    conversion = convert_to_tflite(model, images, tmp_path / "vit-heads25.tflite", "vit")
    assert conversion.relative_diff <= FP32_RELATIVE_TOLERANCE
    assert conversion.output_scale > 0  # the example's head is not zero-initialised: parity means something


def test_count_params_macs_takes_every_input_of_a_token_model(bert):
    source, model = bert
    params, macs = count_params_macs(model, source.example_inputs())
    assert params == sum(p.numel() for p in model.parameters()) and macs > 0


# -- token inputs ------------------------------------------------------------------------------
def test_generated_token_samples_look_like_a_padded_batch(bert):
    source, _ = bert
    ids, mask = (spec for spec in source.inputs)
    assert ids.value_range == (0, VOCABULARY - 1)  # found from the embedding input_ids feeds
    batch = generated_inputs(source.inputs, 50, seed=3)
    assert batch.arrays["input_ids"].dtype == np.int64 and batch.arrays["input_ids"].shape == (50, SEQUENCE_LENGTH)
    lengths = batch.arrays["attention_mask"].sum(axis=1)
    assert lengths.min() >= 1 and len(set(lengths.tolist())) > 5  # varied lengths
    for row_ids, row_mask in zip(batch.arrays["input_ids"], batch.arrays["attention_mask"]):
        assert (row_mask[: row_mask.sum()] == 1).all() and (row_ids[row_mask == 0] == 0).all()
    assert len(batch[10:20]) == 10 and isinstance(batch[[1, 2]], InputBatch)


def test_labelled_jsonl_samples_are_read_padded_and_scored(bert, tmp_path):
    source, _ = bert
    path = tmp_path / "samples.jsonl"
    rng = np.random.default_rng(0)
    with path.open("w") as out:
        for i in range(20):
            length = int(rng.integers(5, 80))  # longer than the model's 64 are cut, shorter padded
            out.write(json.dumps({"input_ids": rng.integers(1, VOCABULARY, length).tolist(),
                                  "attention_mask": [1] * length, "label": i % 2}) + "\n")
    inputs, labels = read_jsonl_samples(path, source)
    assert inputs.arrays["input_ids"].shape == (20, SEQUENCE_LENGTH) and labels.tolist() == [i % 2 for i in range(20)]
    data = load_dataset(source, path)
    assert data.y_test is not None and len(data.x_test) == 4 and len(data.x_train) == 16
    (tmp_path / "bad.jsonl").write_text('{"input_ids": [1, 2]}\n')
    with pytest.raises(ModelInputError, match="line 1 has no 'attention_mask'"):
        load_dataset(source, tmp_path / "bad.jsonl")


def test_benchmark_model_is_told_the_vocabulary_and_a_full_mask():
    # The flags' syntax is LiteRT's benchmark_model: tflite/tools/benchmark/README.md and
    # benchmark_tflite_model.cc (google-ai-edge/LiteRT @ f674577): input_layer and input_layer_shape
    # ":"-separated per input, input_layer_value_range "name,low,high:name2,low,high" for integer inputs.
    inputs = [{"name": "serving_default_args_0", "source_name": "input_ids", "dtype": "int64",
               "shape": [1, 64], "value_range": [0, 999]},
              {"name": "serving_default_args_1", "source_name": "attention_mask", "dtype": "int64",
               "shape": [1, 64], "value_range": None}]
    assert input_layer_flags(inputs) == [
        "--input_layer=serving_default_args_0,serving_default_args_1",
        "--input_layer_shape=1,64:1,64",
        "--input_layer_value_range=serving_default_args_0,0,999:serving_default_args_1,1,1"]
    assert input_layer_flags([{"name": "x", "dtype": "float32", "shape": [1, 3], "value_range": None}]) == []
    assert input_layer_flags(None) == []


# -- input specs that do not fit (acceptance 4) ------------------------------------------------
@pytest.mark.parametrize("inputs, message", [
    (["input_ids:float32:1,64", "attention_mask:int64:1,64"],
     "input input_ids feeds an embedding of 1000 entries, so it takes token ids, not float32; "
     "write --input input_ids:int64:1,64"),
    (["token_ids:int64:1,64"], "has no input 'token_ids'; its forward takes input_ids, attention_mask"),
    (["input_ids:int64:1,64:0,5000"],
     "input input_ids feeds an embedding of 1000 entries, so its values are 0..999, not 0..5000; "
     "write --input input_ids:int64:1,64:0,999"),
    (["input_ids:int64:1,600"], "rejects inputs input_ids:int64:1,600"),
])
def test_an_input_spec_that_does_not_fit_the_model_names_the_input_and_what_it_takes(inputs, message):
    with pytest.raises(ModelInputError) as info:
        resolve_model(BERT, inputs=parse_inputs(inputs))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("input_ids:int64", "write NAME:DTYPE:SHAPE[:LOW,HIGH]"),
    ("input_ids:int8:1,64", "dtype 'int8' is not one of float32, int64, int32"),
    ("input_ids:int64:2,64", "must be batch 1"),
    ("input_ids:int64:1,64:9,1", "HIGH below LOW"),
    ("pixels:float32:1,3:0,1", "a value range is for integer inputs"),
])
def test_a_malformed_input_spec_says_how_to_write_it(text, message):
    with pytest.raises(ModelInputError, match=re.escape(message)):
        parse_input(text)


def test_a_tflite_of_token_inputs_checks_given_specs_against_its_own(bert, tmp_path):
    source, model = bert
    path = tmp_path / "bert.tflite"
    convert_to_tflite(model, generated_inputs(source.inputs, 2, seed=0), path, "bert")
    own = resolve_model(str(path))  # no --input: its own inputs, ids in benchmark_model's [0, 99]
    assert [(s.dtype, s.shape, s.value_range) for s in own.inputs] == [
        ("int32", (1, 64), (0, 99)), ("int32", (1, 64), (0, 99))]
    names = [s.name for s in own.inputs]
    with pytest.raises(ModelInputError, match=f"input {names[0]} is int32 of shape 1,64, not int64 1,64; "
                                              f"write --input {names[0]}:int32:1,64"):
        resolve_model(str(path), inputs=parse_inputs([f"{names[0]}:int64:1,64", f"{names[1]}:int32:1,64"]))
    with pytest.raises(ModelInputError, match="has no input 'ids'; its inputs are"):
        resolve_model(str(path), inputs=parse_inputs(["ids:int32:1,64", "mask:int32:1,64"]))
    given = resolve_model(str(path), inputs=parse_inputs([f"{names[0]}:int32:1,64:0,999", f"{names[1]}:int32:1,64"]))
    assert given.inputs[0].value_range == (0, 999)


def test_bad_input_spec_on_the_command_line_is_one_line_and_exit_2(monkeypatch, capsys):
    from tests.test_bad_input import bench_in_process

    code, err = bench_in_process(monkeypatch, capsys, "optimize", BERT, "--input", "input_ids:float32:1,64",
                                 "--input", "attention_mask:int64:1,64")
    assert code == 2
    assert err == ["error: model 'models.transformer_examples:bert_tiny': input input_ids feeds an embedding "
                   "of 1000 entries, so it takes token ids, not float32; write --input input_ids:int64:1,64"]
