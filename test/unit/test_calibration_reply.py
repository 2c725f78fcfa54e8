"""The `~/calibrate` service's answer (flash_rt_ros/calibration_reply.py): the node wrote str(dict) into cache_path
before; a successful calibrate needs a GPU, where no ROS runs, so the answer is checked here as a function of what
the GPU frontends' calibrate() returns."""
from flash_rt_ros.calibration_reply import calibration_reply

RESULT = {"path": "cache/calibration/abc_pi05-hopper-fp8-v2-h50-s10-t64.json", "num_observations": 1,
          "percentile": None, "smoothing": None}


def test_the_cache_path_is_the_path_not_the_dict():
    path, msg, warn = calibration_reply(dict(RESULT))
    assert path == RESULT["path"]
    assert msg == f"calibrated on 1 observation(s); cache {RESULT['path']}" and not warn


def test_the_fp8_self_check_is_reported_and_warns_below_its_bar():
    ok = dict(RESULT, fp8_check={"cosine": 0.99991, "bar": 0.995, "ok": True, "advice": "x"})
    path, msg, warn = calibration_reply(ok)
    assert "worst cosine 0.99991 (bar 0.995)" in msg and "BELOW" not in msg and not warn
    bad = dict(RESULT, fp8_check={"cosine": 0.98811, "bar": 0.995, "ok": False,
                                  "advice": "try bf16_outlier_sites='blocks' or precision='bf16'"})
    path, msg, warn = calibration_reply(bad)
    assert warn and "0.98811" in msg and "BELOW THE BAR: try bf16_outlier_sites='blocks'" in msg
    assert path == RESULT["path"]


def test_the_held_out_probe_is_named_beside_the_calibrated_observations():
    """runtime/fp8_check.py's held-out probe (mirrored views, new noise): the answer says which side was worst."""
    bad = dict(RESULT, fp8_check={"cosine": 0.99205, "in_sample": 0.99882, "held_out": 0.99205, "bar": 0.995,
                                  "ok": False, "advice": "x"})
    path, msg, warn = calibration_reply(bad)
    assert warn and "worst cosine 0.99205 (bar 0.995; calibrated 0.99882, held-out probe 0.99205)" in msg


def test_a_plain_path_or_nothing():
    assert calibration_reply("some/file.json") == ("some/file.json", "calibrated; cache some/file.json", False)
    assert calibration_reply(None) == ("", "calibrated", False)
