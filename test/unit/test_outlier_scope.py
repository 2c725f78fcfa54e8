"""bf16_outlier_sites' scope (frontends/torch/_pi05_cuda_outliers.py, runtime/outlier_sites.py) on the CPU: the
option's values, the blocks a flagged group sits in, the site predicate, and a calibration key that tells the two
scopes apart (the same flagged groups in BF16 alone or as whole blocks are different engines with different scales)."""
import pytest

from flash_rt.errors import CacheError, InputError
from flash_rt.frontends.torch._pi05_cuda_outliers import OutlierRemedies
from flash_rt.models.pi05.config import Pi05Config
from flash_rt.runtime.outlier_sites import (BF16_MIN_RATIO, SiteSet, bf16_blocks_for, block_gemms, blocks_of,
                                            load_outlier_groups, save_outlier_groups)


def remedies(value, precision="fp8", smoothing=None, ratio=None):
    r = OutlierRemedies.__new__(OutlierRemedies)
    r._init_outlier_remedies(smoothing, None, value, ratio, precision)
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


def test_the_bf16_blocks_run_from_the_first_through_the_last_flagged_one():
    """A sensitive block amplifies the rounding of what flows into it: plain llm_norm 30x held on an H200 with SigLIP
    and the LLM in BF16 (0.99984), not with the flagged groups alone (0.98856)."""
    assert bf16_blocks_for(["llm.4.norm2"]) == ("vision", "prefix")
    assert bf16_blocks_for(["vis.20.ln2"]) == ("vision",)
    assert bf16_blocks_for(["ex.1.norm1"]) == ("vision", "prefix", "expert")
    assert bf16_blocks_for(["attn.9"]) == ("vision", "prefix", "expert")
    assert bf16_blocks_for(["vis.0.ln1", "llm.2.geglu"]) == ("vision", "prefix")
    assert bf16_blocks_for([]) == ()


def test_the_outlier_bar_defaults_to_30_and_refuses_what_is_not_a_ratio():
    """30, not smoothing's 6: at full size an ordinary checkpoint's GeGLU outputs reach 19 (docs/calibration.md)."""
    assert BF16_MIN_RATIO == 30.0 and remedies(None).bf16_min_ratio == 30.0
    assert remedies(None).smooth_min_ratio == 6.0          # smoothing keeps its own bar
    assert remedies(None, ratio=12).bf16_min_ratio == 12.0
    for bad in (1.0, 0, -3, float("inf"), float("nan"), "30", True):
        with pytest.raises(InputError, match="outlier_min_ratio must be a number > 1"):
            remedies(None, ratio=bad)


def test_a_choice_cached_at_another_bar_is_measured_again(tmp_path):
    """The outlier-site file records its bar: a file written at 6 (before the bar moved) is not read at 30."""
    path = tmp_path / "x.outliers.json"
    save_outlier_groups(path, ["llm.0.norm1"], ckpt_hash="abc", min_ratio=6.0, num_observations=1)
    assert load_outlier_groups(path, Pi05Config(), ckpt_hash="abc", min_ratio=6.0) == ["llm.0.norm1"]
    with pytest.raises(CacheError):
        load_outlier_groups(path, Pi05Config(), ckpt_hash="abc", min_ratio=30.0)


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
