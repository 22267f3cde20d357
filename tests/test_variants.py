from dataclasses import fields

import pytest

from harness.errors import UserError
from harness.optimize.finetune import FineTuneSettings
from harness.optimize.prune import PruneSettings
from harness.optimize.variants import KNOBS, VariantSpec, parse_variant, parse_variants


@pytest.mark.parametrize("text, name", [
    ("baseline", "baseline"),
    ("fp32", "baseline"),
    ("prune=0.35,ft=2,quant=int8", "pruned35-ft2-int8"),
    ("prune=0.5,ft=0.5", "pruned50-ft0.5"),
    ("int8", "int8"),
    ("quant=int8,io=int8", "int8io8"),
    ("quant=fp16", "fp16"),
    ("quant=dynamic_int8", "dyn8"),
    ("sparsity=0.5,fp16", "sparse50-fp16"),
    ("prune=0.3,importance=taylor,scope=global,steps=3,ft=3,kd=1", "pruned30-taylor-global-x3-ft3-kd"),
    ("prune=0.25,round_to=none,lt=1,ft=1", "pruned25-r1-lt-ft1"),
    ("prune=0.125", "pruned12p5"),
    ("heads=0.25", "heads25"),
    ("heads=0.25,mlp=0.3,quant=int8", "heads25-mlp30-int8"),
    ("head_dim=0.25", "hdim25"),
    ("prune=0.2,heads=0.5,importance=taylor", "pruned20-heads50-taylor"),
    ("sparsity=0.8,lt=1", "sparse80-lt"),
    ("heads=0.25,lt=1,ft=2", "heads25-lt-ft2"),
])
def test_readable_names(text, name):
    assert parse_variant(text).name == name


@pytest.mark.parametrize("text, words", [
    ("prune=1.2", "prune=1.2"),
    ("prune=0", "prune=0"),
    ("prune=abc", "prune=abc"),
    ("sparsity=-0.1", "sparsity"),
    ("quant=int4", "quant=int4"),
    ("importance=magic,prune=0.2", "importance"),
    ("colour=blue", "colour"),
    ("io=int8", "io=int8"),
    ("lt=1", "lt=1"),
    ("heads=1", "heads=1"),
    ("mlp=0", "mlp=0"),
    ("kd=1,prune=0.3", "kd=1"),
    ("", "empty"),
])
def test_bad_specs_name_the_part(text, words):
    with pytest.raises(UserError, match=words):
        parse_variant(text)


def test_spec_knobs_and_dedup():
    spec = parse_variant("prune=0.35,ft=2,quant=int8")
    assert (spec.prune, spec.ft, spec.quant, spec.round_to) == (0.35, 2.0, "int8", 8)
    assert spec.torch_stage == parse_variant("prune=0.35,ft=2")
    assert parse_variants(["baseline", "fp32", "int8"]) == [VariantSpec(), parse_variant("int8")]
    assert parse_variants([]) == [VariantSpec()]


def test_every_spec_field_is_a_knob_of_the_one_table():
    assert list(KNOBS) == [f.name for f in fields(VariantSpec)]
    for knob in KNOBS.values():  # every default is allowed, or None (the knob is off)
        default = getattr(VariantSpec(), knob.name)
        assert default is None or knob.rule.allows(default), knob.name


@pytest.mark.parametrize("settings, words", [
    (PruneSettings(ratio=1.5), r"pruning ratio 1.5 is outside \(0, 1\); give e.g. prune=0.35"),
    (PruneSettings(ratio=0.5, importance="magic"), "unknown pruning importance 'magic'; choose one of l1"),
    (PruneSettings(ratio=0.5, scope="galactic"), "unknown pruning scope 'galactic'"),
    (PruneSettings(ratio=0.5, round_to=0), "round_to 0 must be an integer >= 1"),
    (PruneSettings(ratio=0.5, iterative_steps=0), "iterative_steps 0 must be an integer >= 1"),
    (FineTuneSettings(lr=0.0), "fine-tune learning rate 0.0 must be a number > 0"),
    (FineTuneSettings(lr=float("nan")), "fine-tune learning rate nan"),
])
def test_library_settings_follow_the_same_rules(settings, words):
    # PruneSettings and FineTuneSettings are also built directly, without a spec: same rules,
    # named the way their callers name them.
    with pytest.raises(UserError, match=words):
        settings.validate()


@pytest.mark.parametrize("text, key", [
    ("prune=1.2", "prune"), ("steps=0,prune=0.3", "steps"), ("lr=nan", "lr"), ("ft=-1", "ft"),
    ("round_to=-8,prune=0.3", "round_to"), ("kd=maybe", "kd"), ("scope=x", "scope"),
])
def test_a_bad_knob_in_a_spec_ends_with_its_help_from_the_table(text, key):
    with pytest.raises(UserError) as raised:
        parse_variant(text)
    message = str(raised.value)
    assert message.startswith(f"--variant {text}: {key}=") and message.endswith(KNOBS[key].help)
    assert "\n" not in message
