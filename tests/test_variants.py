import pytest

from harness.errors import UserError
from harness.variants import VariantSpec, parse_variant, parse_variants


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
