"""flash_rt_ros.fastdds.choose: which Fast DDS setup our entry points use, for each environment a user may have.
Pure (no ROS); the measured effect of each setup is in docs/ros.md "Large camera frames", and test/ros/
test_camera_loss.py checks the default against real DDS."""
from __future__ import annotations

from pathlib import Path

import pytest

from flash_rt_ros import fastdds

REPO = Path(__file__).resolve().parents[2]


def choose(env, cwd):
    return fastdds.choose(env, cwd)


def test_localhost_gets_the_loopback_profile(tmp_path):
    s = choose({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, tmp_path)
    assert s.name == "loopback_shm"
    path = Path(s.env["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert path.name == "fastdds_loopback_shm.xml" and path.is_file()
    assert "LOCALHOST" in s.message and "fastdds_loopback_shm.xml" in s.message and "FLASH_RT_FASTDDS=off" in s.message


@pytest.mark.parametrize("rng", ["", "SUBNET", "SYSTEM_DEFAULT", "subnet"])
def test_other_ranges_keep_stock_transports_with_a_big_segment(tmp_path, rng):
    """Cameras may be on another host: never the loopback-only profile there."""
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": rng} if rng else {}
    s = choose(env, tmp_path)
    assert s.name == "large_shm"
    assert Path(s.env["FASTDDS_DEFAULT_PROFILES_FILE"]).name == "fastdds_large_shm.xml"
    assert (rng.upper() or "unset") in s.message


def test_localhost_with_a_discovery_server_is_not_loopback_only(tmp_path):
    s = choose({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DISCOVERY_SERVER": "10.0.0.5:11811"}, tmp_path)
    assert s.name == "large_shm"


@pytest.mark.parametrize("var", ["FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
                                 "FASTDDS_BUILTIN_TRANSPORTS"])
def test_the_users_own_configuration_is_respected(tmp_path, var):
    s = choose({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", var: "LARGE_DATA"}, tmp_path)
    assert s.name == "user" and s.env == {}
    assert f"{var}=LARGE_DATA" in s.message


def test_a_profiles_file_in_the_working_directory_is_respected(tmp_path):
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    s = choose({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, tmp_path)
    assert s.name == "user" and s.env == {} and "DEFAULT_FASTDDS_PROFILES.xml" in s.message


@pytest.mark.parametrize("rmw, applied", [("rmw_cyclonedds_cpp", False), ("rmw_zenoh_cpp", False),
                                          ("rmw_fastrtps_cpp", True), ("rmw_fastrtps_dynamic_cpp", True)])
def test_only_for_fast_dds(tmp_path, rmw, applied):
    s = choose({"RMW_IMPLEMENTATION": rmw}, tmp_path)
    assert bool(s.env) == applied
    if not applied:
        assert s.name == "other_rmw" and rmw in s.message


def test_switch_off(tmp_path):
    s = choose({"FLASH_RT_FASTDDS": "off", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, tmp_path)
    assert s.name == "off" and s.env == {}


def test_missing_profile_says_what_it_means(tmp_path):
    def nowhere(name):
        raise FileNotFoundError(f"config/{name} not found in any of: /a, /b")
    s = fastdds.choose({}, tmp_path, find=nowhere)
    assert s.name == "missing" and s.env == {}
    assert "512 kB" in s.message and "not found" in s.message


def test_apply_sets_the_variables_it_chose(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    s = fastdds.apply(env)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == s.env["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert fastdds.apply(env).name == "user"   # a second process inheriting it keeps it


@pytest.mark.parametrize("rng, name", [("LOCALHOST", "loopback_shm"), ("SUBNET", "large_shm")])
def test_bag_replay_uses_the_same_choice(monkeypatch, tmp_path, rng, name):
    """flash-rt-bag replay --allow-network toward a node on another host: it used to take the loopback-only profile
    whatever the discovery range, which cut it off from that node."""
    from flash_rt_ros.bag.rosutil import RosSession

    monkeypatch.chdir(tmp_path)
    for var in fastdds.USER_CONFIG_VARS + (fastdds.SWITCH, "RMW_IMPLEMENTATION", "ROS_DISCOVERY_SERVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", rng)
    assert RosSession("replay", shm_profile=True).dds.name == name
    assert RosSession("record").dds is None
