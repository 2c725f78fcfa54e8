"""bf16_outlier_sites' scope (frontends/torch/_pi05_cuda_outliers.py, runtime/outlier_sites.py) on the CPU: the
option's values, the blocks a flagged group sits in, the site predicate, and a calibration key that tells the two
scopes apart (the same flagged groups in BF16 alone or as whole blocks are different engines with different scales)."""
import pytest

from flash_rt.errors import InputError
from flash_rt.frontends.torch._pi05_cuda_outliers import OutlierRemedies
from flash_rt.runtime.outlier_sites import SiteSet, block_gemms, blocks_of


def remedies(value, precision="fp8", smoothing=None):
    r = OutlierRemedies.__new__(OutlierRemedies)
    r._init_outlier_remedies(smoothing, None, value, precision)
    return r


@pytest.mark.parametrize("value,scope", [(False, None), (None, "blocks"), (True, "groups"), ("groups", "groups"),
                                         ("blocks", "blocks")])
def test_the_option_values(value, scope):
    r = remedies(value)
    assert r.bf16_scope == scope and r.bf16_outliers is (scope is not None)
    assert remedies(value, precision="bf16").bf16_scope is None     # a bf16 build has no FP8 sites


def test_the_default_gives_way_to_smoothing_and_an_explicit_choice_does_not():
    r = remedies(None, smoothing=0.5)
    assert r.bf16_scope is None and r.smooth_alpha == 0.5
    with pytest.raises(InputError, match="alternatives"):
        remedies("blocks", smoothing=0.5)


@pytest.mark.parametrize("bad", ["block", 2, 1.0, ["blocks"]])
def test_another_value_is_refused_with_the_choices(bad):
    with pytest.raises(InputError, match="bf16_outlier_sites must be False, True, 'groups' or 'blocks'"):
        remedies(bad)


def test_blocks_of_flagged_groups_and_their_gemms():
    assert blocks_of(["vis.3.ln1"]) == ("vision",)
    assert blocks_of(["llm.0.norm1", "ex.1.geglu"]) == ("prefix", "expert")
    assert blocks_of(["attn.2"]) == ("prefix", "expert")       # the expert attends over the prefix's V rows
    assert blocks_of([]) == ()
    gemms = ["proj_w", "vis.0.fc2_w", "llm.0.qkv_w", "ex.0.down_w"]
    assert block_gemms(gemms, ("vision",)) == ["proj_w", "vis.0.fc2_w"]
    assert block_gemms(gemms, ()) == []


def test_the_site_predicate_covers_a_blocks_sites_outside_any_group():
    groups_only = SiteSet(["vis.0.ln1"])
    whole = SiteSet(["vis.0.ln1"], ("vision",))
    assert groups_only("vis.0.ln1") and not groups_only("vis.0.gelu") and not groups_only("vis.1.ln1")
    assert whole("vis.0.gelu") and whole("vis.1.ln1") and whole("vis.post_ln")
    assert not whole("llm.0.norm1") and not whole("ex.3.0.norm1")


def test_the_calibration_key_tells_the_scopes_apart():
    keys = {}
    for scope in ("groups", "blocks"):
        r = remedies(scope)
        assert r._outlier_key() is None           # nothing measured yet: the key is the plain one
        r.bf16_groups = []
        assert r._outlier_key() is None           # measured, nothing flagged: still the plain engine
        r.bf16_groups = ["llm.0.norm1", "vis.2.ln2"]
        keys[scope] = r._outlier_key()
    assert keys["groups"] != keys["blocks"] and all(len(k) == 8 for k in keys.values())
