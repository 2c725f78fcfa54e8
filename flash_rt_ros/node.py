"""flash_rt_node: a managed (lifecycle) ROS 2 node that turns camera + joint-state topics into action chunks.

  configure  read + validate parameters, load the checkpoint (flash_rt.load_model), set the prompt, warm up,
             create the ~/set_prompt and ~/calibrate services        (failure -> stays unconfigured, says why)
  activate   subscribe to cameras (sensor-data QoS) and joint states, start the control-rate timer, enable
             ~/action_chunk and ~/joint_trajectory
  deactivate stop the timer and the subscriptions;  cleanup  drop the model

Hot path (ARCHITECTURE.md section 4): image callbacks resize straight into the policy's preallocated slots,
the joint-state callback maps by name into a preallocated state vector; the timer checks freshness, writes the
state (and seeded noise; with realtime_chunking the previous chunk's remaining rows), runs policy.step(), turns
the actions into a joint trajectory by their meaning (action_semantics.py), puts it through the safety envelope
(safety.py: a non-finite or rejected chunk is never published) and fills preallocated messages. All callbacks
run on one executor thread, so a slot is never written while step() reads it. A prompt change runs
policy.set_prompt on a worker thread (the service coroutine awaits it; EventsExecutor keeps ticking): the engine
prepares the new prompt aside while the old one keeps serving, then switches with one reference assignment, so the
tick never waits for it.
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import gc
import time

import numpy as np
import rclpy
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image, JointState
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from flash_rt.errors import FlashRTError, HardwareError, InputError
from flash_rt.noise import SeededNoise
from flash_rt_ros import diagnostics as diag
from flash_rt_ros import safety as safety_mod
from flash_rt_ros.action_semantics import SemanticsError, TrajectoryBuilder, resolve as resolve_semantics
from flash_rt_ros import params as params_mod
from flash_rt_ros import startup_log
from flash_rt_ros.calibration_reply import calibration_reply
from flash_rt_ros.chunk_msgs import ChunkMessages
from flash_rt_ros.conversions import SlotWriter
from flash_rt_ros.input_health import HealthWindow
from flash_rt_ros.joint_state import JointStateMapper
from flash_rt_ros.msg import ActionChunk
from flash_rt_ros.params import NodeParams, ParamError
from flash_rt_ros.policy_loader import load_policy
from flash_rt_ros.srv import Calibrate, SetPrompt
from flash_rt_ros.stats import TickStats

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class FlashRTNode(LifecycleNode):
    def __init__(self, node_name: str = "flash_rt_node", **kwargs):
        super().__init__(node_name, **kwargs)
        params_mod.declare(self)
        self.p: NodeParams | None = None
        self.policy = None
        self.stats: TickStats | None = None
        self.config_error = ""           # why the last configure failed (for diagnostics)
        self._clock_handle = self.get_clock().handle
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self._timer = None
        self._subs: list = []
        self._srv_handles: list = []
        self._urdf_sub = None
        # prompt changes run on a worker thread; results come back through a deque that a 2 ms timer drains on the
        # executor thread (only while a change is pending), so rclpy Futures are only completed there
        self.async_prompt = True
        self._prompt_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flash_rt_prompt")
        self._prompt_results: collections.deque = collections.deque()
        self._prompt_pending = 0
        self._prompt_poll = self.create_timer(0.002, self._drain_prompt_results)
        self._prompt_poll.cancel()
        self._first_chunk_pending = False
        self._reset_runtime()

    # ------------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            p = params_mod.read(self)
        except ParamError as e:
            return self._configure_failed(f"invalid parameters: {e}")
        self.p = p
        log = self.get_logger()
        log.info(f"loading {p.model} checkpoint {p.checkpoint!r} on hardware={p.hardware} ...")
        t0 = time.perf_counter()
        self._startup: list = []          # startup_log.NodePhase, in order
        try:
            policy = self._timed("load", lambda: load_policy(p))
        except HardwareError as e:   # the checkpoint is not the problem: the engine's message says what is
            return self._configure_failed(str(e) if p.hardware in str(e) else f"hardware={p.hardware!r}: {e}")
        except (FlashRTError, OSError, ValueError, RuntimeError, TypeError) as e:
            return self._configure_failed(f"cannot load checkpoint {p.checkpoint!r}: {type(e).__name__}: {e}")
        try:
            self._setup(policy, p)
        except (FlashRTError, ValueError) as e:   # ParamError, SemanticsError, LimitsError are ValueErrors
            return self._configure_failed(str(e))
        self.policy = policy
        self.config_error = ""
        self._diag_timer.timer_period_ns = int(p.diagnostics_period_s * 1e9)
        total = time.perf_counter() - t0
        log.info(f"configured in {total:.2f} s: {policy.num_views} views, horizon "
                 f"{policy.action_horizon}, action_dim {policy.action_dim}, state_dim {policy.state_dim}, "
                 f"{p.control_rate_hz:g} Hz, hardware {policy.hardware}, prompt {policy.prompt!r}")
        log.info(startup_log.configure_line(self._startup, total))
        self._engine_phases_seen = len(startup_log.engine_phases(policy))
        return SUCCESS

    def _timed(self, name: str, fn, policy=None):
        """Run fn() as the node's start-up phase `name`; the engine phases it added are nested under it."""
        n = len(startup_log.engine_phases(policy))
        t = time.perf_counter()
        out = fn()
        policy = out if policy is None else policy   # "load" returns the policy
        self._startup.append(startup_log.NodePhase(name, time.perf_counter() - t,
                                                   startup_log.engine_phases(policy)[n:]))
        return out

    def _configure_failed(self, why: str) -> TransitionCallbackReturn:
        self.get_logger().error(f"configure failed, the node stays unconfigured and will not activate: {why}")
        self.config_error = why
        self.policy = None
        self._publish_diagnostics()
        return FAILURE

    def _setup(self, policy, p: NodeParams) -> None:
        """Validate the parameters against the loaded model and allocate everything the hot path uses."""
        if p.views > policy.num_views:
            raise ParamError(f"camera_slots need {p.views} camera slots; the model has {policy.num_views}")
        if policy.state_dim is not None and policy.state_dim != len(p.state_joint_names):
            raise ParamError(f"state_joint_names has {len(p.state_joint_names)} joints but the model's state "
                             f"has {policy.state_dim} dims (norm stats)")
        adim = policy.action_dim
        names = list(p.action_joint_names) or [f"action_{i}" for i in range(adim)]
        if len(names) != adim:
            raise ParamError(f"action_joint_names has {len(names)} names but the model returns {adim} "
                             "action dims (set action_dim or fix the list)")
        self._cams = [SlotWriter(policy.image_slot(s), p.image_interpolation, p.expected_size, p.min_image_side)
                      for s in p.camera_slots]
        self._state = np.zeros(len(p.state_joint_names), np.float32)
        self._joints = JointStateMapper(p.state_joint_names, self._state)
        self._setup_actions(policy, p, names)
        self._msgs = ChunkMessages(names, policy.action_horizon, adim, p.dt,
                                   traj_joint_names=self._space.traj_joint_names, velocities=True)
        self._msgs.check_against_rclpy()
        self._noise = np.zeros((policy.action_horizon, policy.config.action_dim), np.float32)
        self._seeded = SeededNoise(p.noise_seed, self._noise) if p.noise_seed >= 0 else None
        n_inputs = len(p.camera_topics) + 1
        self._input_names = [p.subscription_topic(i) for i in range(len(p.camera_topics))] + [p.joint_state_topic]
        self._rx_ns = np.zeros(n_inputs, np.int64)
        self._stamp_ns = np.zeros(n_inputs, np.int64)
        self._bad_count = np.zeros(n_inputs, np.int64)
        self._bad_reported = np.zeros(n_inputs, np.int64)
        self._rx_count = np.zeros(n_inputs, np.int64)      # messages taken, per input (rates for /diagnostics)
        self._lost_count = np.zeros(n_inputs, np.int64)    # messages DDS reported lost (message_lost event)
        self._health = HealthWindow()
        self._loss_warned = [False] * n_inputs
        self._last_error = [""] * n_inputs
        self._last_logged = [0.0] * n_inputs
        self.stats = TickStats(p.period_s)
        if p.prompt:
            self._timed("prompt", lambda: policy.set_prompt(p.prompt), policy)
        self._timed("warm-up", lambda: self._warm_up(policy, p), policy)
        # the services work while inactive too (set the prompt before activating)
        self._srv_handles = [self.create_service(SetPrompt, "~/set_prompt", self._srv_set_prompt),
                          self.create_service(Calibrate, "~/calibrate", self._srv_calibrate)]
        self._chunk_pub = self.create_lifecycle_publisher(ActionChunk, "~/action_chunk", QoSProfile(depth=10))
        self._traj_pub = (self.create_lifecycle_publisher(JointTrajectory, "~/joint_trajectory", QoSProfile(depth=10))
                          if p.publish_trajectory else None)

    def _setup_actions(self, policy, p: NodeParams, names: list) -> None:
        """Action semantics, the safety envelope and real-time chunking: everything the tick needs after step()."""
        mask = getattr(policy, "action_delta_mask", None)
        try:
            space = resolve_semantics(p.action_semantics, names, p.state_joint_names, policy.action_dim,
                                      p.command_in_trajectory, None if mask is None else tuple(mask))
        except SemanticsError as e:
            raise ParamError(str(e)) from None
        h = policy.action_horizon
        self._space = space
        self._traj = TrajectoryBuilder(space, h, p.dt)
        tj = space.traj_joint_names
        has_state = [i >= 0 for i in space.traj_state_index]
        if p.on_reject == "hold" and not all(has_state):
            raise ParamError(f"on_reject 'hold' holds every trajectory joint at its observed position, but "
                             f"{[j for j, h_ in zip(tj, has_state) if not h_]} are not in state_joint_names (use "
                             "'skip', or command_in_trajectory false)")
        self._safety = sf = safety_mod.SafetyEnvelope(tj, h, p.dt, p.safety_mode, p.max_relative_target, has_state)
        unknown = [n for n in p.joint_limits_names if n not in tj]
        if unknown:
            raise ParamError(f"joint_limits_names has {unknown}, which are not trajectory joints {list(tj)}")
        sf.set_limits(safety_mod.limits_from_params(p.joint_limits_names, tj, p.joint_limits_lower,
                                                    p.joint_limits_upper, p.joint_limits_velocity), "parameters")
        if p.robot_description:
            self._apply_urdf(p.robot_description, "robot_description parameter")
        if sf.unchecked_relative:
            self.get_logger().warning(f"max_relative_target does not apply to {sf.unchecked_relative}: not in "
                                      "state_joint_names (no observed position)")
        self._safety_counts = np.zeros(2, np.int64)       # clamped, rejected (totals)
        self._safety_reported = np.zeros(2, np.int64)
        self._safety_reason = ""
        self._safety_key: tuple = ()       # the checks that fired last (the log repeats only when they change)
        self._safety_logged_ns = 0
        if p.robot_description_topic and self._urdf_sub is None:
            qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
            self._urdf_sub = self.create_subscription(String, p.robot_description_topic, self._on_urdf, qos)
        # real-time chunking: the previous published chunk (model output units) and when it was observed
        self._rtc = bool(p.realtime_chunking)
        if self._rtc and not hasattr(policy, "write_action_prefix"):
            raise ParamError("realtime_chunking needs an engine with Policy.write_action_prefix (flash_rt's "
                             "real-time chunking); this flash_rt has none")
        self._prev_actions = np.zeros((h, policy.action_dim), np.float32)
        self._prev_obs_ns = 0
        self._latency_ns = np.zeros(8, np.int64)          # the last 8 obs stamp -> publish latencies (ring)
        self._latency_i = 0
        self._horizon_ns = int(h * p.dt * 1e9)
        self.rtc_frozen = 0                               # rows fixed in the last chunk (diagnostics)
        src = getattr(policy, "action_delta_mask_source", None)
        mask_text = ("none" if mask is None else str([int(m) for m in mask])) + (
            f" (from {src})" if src else " (nobody declared one; an openpi checkpoint cannot: set action_delta_mask "
                                         "if the policy was trained on deltas)")
        self.get_logger().info(f"actions: {space.describe()}; engine delta mask {mask_text}; trajectory joints "
                               f"{list(tj)}; safety "
                               f"{p.safety_mode}, on reject {p.on_reject}; limits from "
                               f"{sorted({v for v in sf.source.values() if v}) or 'nowhere'}")

    def _apply_urdf(self, text: str, source: str) -> None:
        try:
            lim = safety_mod.urdf_limits(text)
        except safety_mod.LimitsError as e:
            raise ParamError(str(e)) from None
        hit = self._safety.set_limits(lim, source, keep=("parameters",))
        self.get_logger().info(f"joint limits from the {source}: {len(hit)} of the trajectory joints ({hit})")

    def _on_urdf(self, msg: String) -> None:
        """robot_description topic (latched): limits for the joints the parameters do not set."""
        if self.policy is None:
            return
        try:
            self._apply_urdf(msg.data, "robot_description topic")
        except ParamError as e:
            self.get_logger().error(f"ignored the robot_description topic: {e}")

    def _warm_up(self, policy, p: NodeParams) -> None:
        if p.warmup_steps <= 0 or policy.prompt is None:
            return
        for s in p.camera_slots:
            policy.image_slot(s).fill(0)
            policy.set_image_mask(s, True)
        policy.write_state(self._state)
        policy.warmup(p.warmup_steps, self._noise)  # GPU: compiles + captures, calibrates on live frames
        for s in p.camera_slots:
            policy.set_image_mask(s, False)

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self.p
        self._reset_runtime()
        self._rx_ns[:] = 0
        self._stamp_ns[:] = 0
        self._rx_count[:] = 0
        self._lost_count[:] = 0
        self._health.reset()
        self._loss_warned = [False] * len(self._input_names)
        self.stats.reset()
        self._prev_obs_ns = 0
        self._latency_ns[:] = 0
        for i, topic in enumerate(self._input_names[:-1]):
            if p.compressed[i]:
                cb = functools.partial(self._on_compressed, i)
                self._subs.append(self.create_subscription(CompressedImage, topic, cb, qos_profile_sensor_data,
                                                           event_callbacks=self._loss_events(i)))
            else:
                # raw: the callback gets the serialized bytes and reads the pixels in place (conversions.py)
                cb = functools.partial(self._on_image_cdr, i)
                self._subs.append(self.create_subscription(Image, topic, cb, qos_profile_sensor_data, raw=True,
                                                           event_callbacks=self._loss_events(i)))
        self._subs.append(self.create_subscription(JointState, p.joint_state_topic, self._on_joint_state,
                                                   qos_profile_sensor_data,
                                                   event_callbacks=self._loss_events(len(self._input_names) - 1)))
        self._timer = self.create_timer(p.period_s, self._tick)
        self._freeze_heap()
        self._activated_at = time.perf_counter()
        self._first_chunk_pending = True
        self.get_logger().info(f"active: {p.control_rate_hz:g} Hz, cameras {self._input_names[:-1]} -> slots "
                               f"{list(p.camera_slots)}, joints from {p.joint_state_topic!r}")
        return super().on_activate(state)

    @staticmethod
    def _freeze_heap() -> None:
        """Collect once, then move every live object out of the cyclic GC's reach (gc.freeze) so that a later
        full collection does not stall the executor. Why: after configure the process holds ~190k objects (torch,
        rclpy, the model); a full collection over them takes ~108 ms on the 2-core VM, i.e. a missed tick whenever
        it happens to run; frozen, it takes ~0.01 ms. Refcounting still frees frozen objects; cleanup unfreezes."""
        gc.collect()
        gc.freeze()

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        return SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        return SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in lifecycle transition from {state.label}; cleaning up")
        self._stop_io()
        self._release()
        return SUCCESS

    def _stop_io(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []

    def destroy_node(self):
        self._prompt_pool.shutdown(wait=False)
        return super().destroy_node()

    def _release(self) -> None:
        gc.unfreeze()  # the model is dropped: let the cyclic GC see what it leaves behind
        for s in self._srv_handles:
            self.destroy_service(s)
        self._srv_handles = []
        if self._urdf_sub is not None:
            self.destroy_subscription(self._urdf_sub)
            self._urdf_sub = None
        for pub in (getattr(self, "_chunk_pub", None), getattr(self, "_traj_pub", None)):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._chunk_pub = self._traj_pub = None
        self.policy = None

    def _reset_runtime(self) -> None:
        self.sequence = 0
        self._skip_reason = ""
        self._skip_key = None        # what the last WARN was about (the stale inputs, not their ages)
        self._skip_logged_ns = 0

    # ------------------------------------------------------------------------------------------------
    # inputs
    # ------------------------------------------------------------------------------------------------
    def _stamp_of(self, msg, now_ns: int) -> int:
        s = msg.header.stamp
        t = s.sec * 1_000_000_000 + s.nanosec
        return t if t > 0 else now_ns

    def _on_image_cdr(self, i: int, data: bytes) -> None:
        """Raw subscription callback (serialized sensor_msgs/Image): skips rclpy's deserialization, which copies
        the pixels three times (0.71 -> 0.53 ms CPU a 640x480 frame, docs/benchmarks.md)."""
        try:
            stamp = self._cams[i].write_cdr(data)
        except InputError as e:
            return self._bad_input(i, e)
        now_ns = self._now_ns()
        self._received(i, stamp if stamp > 0 else now_ns, now_ns)

    def _on_compressed(self, i: int, msg: CompressedImage) -> None:
        try:
            self._cams[i].write_compressed(msg)
        except InputError as e:
            return self._bad_input(i, e)
        now_ns = self._now_ns()
        self._received(i, self._stamp_of(msg, now_ns), now_ns)

    def _received(self, i: int, stamp_ns: int, now_ns: int) -> None:
        self.policy.set_image_mask(self.p.camera_slots[i], True)
        self._rx_ns[i] = now_ns
        self._stamp_ns[i] = stamp_ns
        self._rx_count[i] += 1

    def _loss_events(self, i: int) -> SubscriptionEventCallbacks:
        """DDS's own report of messages lost on the way to input i (input_health.py says what it counts)."""
        return SubscriptionEventCallbacks(message_lost=functools.partial(self._on_lost, i))

    def _on_lost(self, i: int, info) -> None:
        self._lost_count[i] += info.total_count_change

    def _now_ns(self) -> int:
        """The node clock (ROS time, so use_sim_time works) in ns, without building an rclpy Time object:
        Clock.now() costs 2.8 us p50 warm / 38 us cold (caches evicted), the handle's get_now 0.7 / 19 us."""
        return self._clock_handle.get_now().nanoseconds

    def _on_joint_state(self, msg: JointState) -> None:
        j = len(self._input_names) - 1
        try:
            self._joints.write_msg(msg)
        except InputError as e:
            return self._bad_input(j, e)
        now_ns = self._now_ns()
        self._rx_ns[j] = now_ns
        self._stamp_ns[j] = self._stamp_of(msg, now_ns)
        self._rx_count[j] += 1

    def _bad_input(self, i: int, err: Exception) -> None:
        """Count it, keep the reason for /diagnostics, log it: at once when the reason is new for this input,
        else at most once a second (a camera stuck on a bad encoding must not flood the log)."""
        self._bad_count[i] += 1
        msg = str(err)
        now = time.monotonic()
        if msg != self._last_error[i] or now - self._last_logged[i] >= 1.0:
            self._last_logged[i] = now
            self.get_logger().error(f"rejected message on {self._input_names[i]!r}: {msg}")
        self._last_error[i] = msg

    # ------------------------------------------------------------------------------------------------
    # the control tick
    # ------------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        t0 = time.perf_counter_ns()
        st = self.stats
        st.tick_start(t0)
        p, policy = self.p, self.policy
        now_ns = self._now_ns()
        oldest_rx = int(self._rx_ns.min())
        if oldest_rx == 0 or now_ns - oldest_rx > p.max_observation_age_s * 1e9:
            return self._skip(*self._stale_reason(now_ns))
        if policy.prompt is None:
            return self._skip("no prompt set: call ~/set_prompt")
        obs_ns = int(self._stamp_ns.min())
        try:
            policy.write_state(self._state)
            noise = None if self._seeded is None else self._seeded.fill(self.sequence)
            if self._rtc:
                self._write_prefix(policy, obs_ns)
            t1 = time.perf_counter_ns()
            actions = policy.step(noise)
            t2 = time.perf_counter_ns()
            # label with the prompt step() actually used (a switch on the worker thread may land in between)
            prompt = policy.last_step_prompt
        except (FlashRTError, ValueError) as e:
            return self._skip(f"engine rejected the observation: {e}")
        if self._skip_reason:
            self.get_logger().info(f"publishing again (was skipping: {self._skip_reason})")
            self._skip_reason = ""
            self._skip_key = None
            self._publish_diagnostics()
        sf, tb = self._safety, self._traj
        verdict = sf.check_actions(actions)
        if verdict == safety_mod.OK:
            pos, vel = tb.build(actions, self._state)     # the state this chunk was computed from
            verdict = sf.check(pos, vel, tb.observed, tb)
        if verdict == safety_mod.REJECTED:
            return self._reject(obs_ns)
        if verdict == safety_mod.CLAMPED:
            self._safety_event(0)
        m = self._msgs
        m.fill(actions, obs_ns, self.sequence, (t2 - t1) * 1e-9, prompt, trajectory=self._traj_pub is not None,
               positions=pos, velocities=vel)
        self._chunk_pub.publish(m.chunk_bytes())  # serialized: see chunk_msgs.py for why
        if self._traj_pub is not None:
            self._traj_pub.publish(m.trajectory_bytes())
        self.sequence += 1
        t3 = time.perf_counter_ns()
        lat = self._now_ns() - obs_ns
        st.published_chunk(t2 - t1, (t3 - t0) - (t2 - t1), lat)
        if self._rtc:
            self._prev_actions[...] = actions
            self._prev_obs_ns = obs_ns
            if not 0 <= lat <= self._horizon_ns:   # stamps not in this clock (a replay's bag times): the oldest
                lat = self._now_ns() - int(self._rx_ns[self._stamp_ns.argmin()])   # input's receipt instead
            self._latency_ns[self._latency_i] = lat
            self._latency_i = (self._latency_i + 1) % self._latency_ns.shape[0]
        if self._first_chunk_pending:
            self._log_first_chunk(t0, t3)

    def _write_prefix(self, policy, obs_ns: int) -> None:
        """Real-time chunking: the previous chunk's rows from this observation on (row `shift` of chunk k-1 runs
        at this chunk's row 0: both are stamped with their observation and rows are dt apart), of which the ones
        that will have executed by the time this chunk is published are frozen. The latency is the largest of the
        last 8 measured observation -> publish times (from the input's receipt when its stamp is not in the node's
        clock, e.g. a replay that stamps with bag times), rounded up to whole rows."""
        dt_ns = self.p.dt * 1e9
        h = self._prev_actions.shape[0]
        shift = int(round((obs_ns - self._prev_obs_ns) / dt_ns)) if self._prev_obs_ns else h
        if shift < 0 or shift >= h:
            self.rtc_frozen = 0
            policy.write_action_prefix(None, 0)
            return
        frozen = min(h - shift, int(np.ceil(int(self._latency_ns.max()) / dt_ns)))
        self.rtc_frozen = frozen
        policy.write_action_prefix(self._prev_actions[shift:], frozen)

    def _reject(self, obs_ns: int) -> None:
        """A chunk the safety envelope refused: never published. on_reject hold publishes a trajectory that stays
        at the observed joint positions instead; the sequence number is used up (a gap shows the rejection)."""
        self.sequence += 1
        self.stats.skipped += 1
        self._safety_event(1)
        if self.p.on_reject == "hold" and self._traj_pub is not None:
            tb = self._traj
            tb.observe(self._state)
            pos, vel = tb.hold()
            self._msgs.fill_trajectory(obs_ns, pos, vel)
            self._traj_pub.publish(self._msgs.trajectory_bytes())
            self._prev_obs_ns = 0      # the arm holds now, not the previous chunk: no prefix for the next one

    def _safety_event(self, kind: int) -> None:
        """Count a clamp (0) or a rejection (1); log and publish /diagnostics when the checks that fired change
        (safety.key: which checks, not their values), else at most every SKIP_REPEAT_S (a policy stuck on NaN, or
        one clamped every tick, must not flood the log). /diagnostics carries the latest reason every period."""
        self._safety_counts[kind] += 1
        reason, key = self._safety.reason, self._safety.key
        self._safety_reason = reason
        now = time.monotonic_ns()
        changed = key != self._safety_key
        if changed or now - self._safety_logged_ns >= self.SKIP_REPEAT_S * 1e9:
            self._safety_key, self._safety_logged_ns = key, now
            text = f"safety: chunk {self.sequence - kind} {reason}"
            if kind:
                self.get_logger().error(text + f" (on_reject {self.p.on_reject})")
            else:
                self.get_logger().warning(text)
            if changed:   # at once when it starts; while it lasts the periodic status carries it
                self._publish_diagnostics()

    def _log_first_chunk(self, tick_start_ns: int, done_ns: int) -> None:
        """Once per activation: how long from activate to the first chunk, and what the first tick cost (on GPU
        targets the engine may calibrate FP8 here; its phases say so)."""
        self._first_chunk_pending = False
        now = time.perf_counter()
        tick_s = (done_ns - tick_start_ns) * 1e-9
        since = now - self._activated_at
        phases = startup_log.engine_phases(self.policy)
        added, self._engine_phases_seen = phases[self._engine_phases_seen:], len(phases)
        self.get_logger().info(startup_log.first_chunk_line(since, max(0.0, since - tick_s), tick_s, added))

    def _stale_reason(self, now_ns: int) -> tuple[str, tuple]:
        """(the message, with ages; the key: which inputs are missing / stale, without the ages)."""
        max_ns = self.p.max_observation_age_s * 1e9
        parts, key = [], []
        for name, rx in zip(self._input_names, self._rx_ns):
            if rx == 0:
                parts.append(f"{name}: no message yet")
                key.append((name, "none"))
            elif now_ns - rx > max_ns:
                parts.append(f"{name}: last message {(now_ns - rx) * 1e-9:.2f} s ago")
                key.append((name, "stale"))
        msg = "stale input (max_observation_age_s=%g): %s" % (self.p.max_observation_age_s, "; ".join(parts))
        return msg, ("stale", tuple(key))

    SKIP_REPEAT_S = 5.0   # while the same condition lasts, repeat the WARN (with fresh ages) this often

    def _skip(self, reason: str, key=None) -> None:
        """Skip this tick. The WARN log and a /diagnostics update go out when the condition changes (another
        input goes stale, or a different reason) and then every SKIP_REPEAT_S while it lasts -- not every tick:
        the message carries the inputs' ages, so comparing messages logged 20 lines a second (seen in CI)."""
        self.stats.skipped += 1
        self._skip_reason = reason
        key = reason if key is None else key
        now = time.monotonic_ns()
        if key != self._skip_key or now - self._skip_logged_ns >= self.SKIP_REPEAT_S * 1e9:
            self._skip_key, self._skip_logged_ns = key, now
            self.get_logger().warning(f"skipping ticks: {reason}")
            self._publish_diagnostics()

    # ------------------------------------------------------------------------------------------------
    # services
    # ------------------------------------------------------------------------------------------------
    def _apply_prompt(self, text: str, policy=None):
        policy = policy or self.policy
        try:
            return True, float(policy.set_prompt(text)), f"prompt set: {policy.prompt!r}"
        except (FlashRTError, ValueError) as e:
            return False, 0.0, f"prompt rejected ({type(e).__name__}): {e}"

    async def _srv_set_prompt(self, request, response):
        """policy.set_prompt validates and tokenizes the new prompt aside (the live one keeps serving) and then
        switches with one reference assignment, so a tick sees the old or the new prompt, never a mix. It runs on
        a worker thread while this coroutine waits, so the executor keeps ticking meanwhile (async_prompt=False
        runs it inline instead, ~0.2-3 ms on CPU)."""
        policy = self.policy
        if policy is None:
            response.success, response.message = False, "node is not configured (no model loaded)"
            return response
        if self.async_prompt:
            fut = Future()
            self._prompt_pending += 1
            if self._prompt_pending == 1:
                self._prompt_poll.reset()
            self._prompt_pool.submit(self._prompt_job, policy, fut, request.prompt)
            ok, setup, msg = await fut
        else:
            ok, setup, msg = self._apply_prompt(request.prompt)
        response.success, response.setup_time, response.message = ok, setup, msg
        text = f"set_prompt: {msg} (setup {setup * 1e3:.2f} ms)"[:600]
        if ok:  # rclpy's logger rejects one call site used with two severities, hence two lines
            self.get_logger().info(text)
        else:
            self.get_logger().error(text)
        return response

    def _prompt_job(self, policy, fut, text: str) -> None:  # worker thread: no rclpy calls here
        try:
            result = self._apply_prompt(text, policy)
        except Exception as e:  # noqa: BLE001 - always answer the service
            result = (False, 0.0, f"prompt rejected ({type(e).__name__}): {e}")
        self._prompt_results.append((fut, result))

    def _drain_prompt_results(self) -> None:  # executor thread; the timer runs only while a change is pending
        while self._prompt_results:
            fut, result = self._prompt_results.popleft()
            self._prompt_pending -= 1
            fut.set_result(result)
        if self._prompt_pending <= 0:
            self._prompt_pending = 0
            self._prompt_poll.cancel()

    def _srv_calibrate(self, request, response):
        """FP8 recalibration on the latest observation (GPU frontends; blocks the executor while it runs, which is
        why it is an explicit maintenance call). The CPU frontend answers success=false with its reason."""
        policy = self.policy
        if policy is None:
            response.success, response.message = False, "node is not configured (no model loaded)"
            return response
        if request.num_observations > 1:
            response.success = False
            response.message = ("num_observations > 1 is not supported by the node yet: use 0 or 1 (the latest "
                                "observation), or calibrate offline with flash_rt")
            return response
        try:
            result = policy.calibrate(None, float(request.percentile) or None)
        except NotImplementedError as e:
            response.success, response.message = False, f"calibration not available: {e}"
        except (FlashRTError, ValueError, RuntimeError) as e:
            response.success, response.message = False, f"calibration failed ({type(e).__name__}): {e}"
        else:
            response.success = True
            response.cache_path, response.message, warn = calibration_reply(result)
            if warn:   # the FP8 self-check is below its bar: once, as a warning
                self.get_logger().warning(f"calibrate: success=True: {response.message}")
                return response
        self.get_logger().info(f"calibrate: success={response.success}: {response.message}")
        return response

    # ------------------------------------------------------------------------------------------------
    # diagnostics
    # ------------------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        name = self.get_fully_qualified_name()
        now = self.get_clock().now()
        if self.policy is None or self.stats is None:
            why = self.config_error or "waiting for configure"
            level = diag.ERROR if self.config_error else diag.WARN
            sts = [diag.status(f"{name}: engine", level, f"not configured: {why}")]
        else:
            active = self._timer is not None
            s = self.stats.summary(time.perf_counter_ns())
            if not active:
                level, msg = diag.OK, "configured, inactive"
            elif self._skip_reason:
                level, msg = diag.WARN, f"skipping ticks: {self._skip_reason}"
            else:
                level, msg = diag.OK, (f"{s['rate_hz']:.1f} chunks/s, inference p50 {s['inference_ms']['p50']:.1f} "
                                       f"ms, jitter p99 {s['jitter_ms']['p99']:.2f} ms")
            state = "active" if active else "inactive"
            sts = [diag.status(f"{name}: engine", level, msg, self.policy.hardware,
                               diag.engine_values(s, self.policy.prompt, state))]
            max_ns = self.p.max_observation_age_s * 1e9
            health = (self._health.update(time.monotonic_ns(), self._rx_count, self._lost_count) if active
                      else [None] * len(self._input_names))
            for i, topic in enumerate(self._input_names):
                rx, bad = int(self._rx_ns[i]), int(self._bad_count[i] - self._bad_reported[i])
                age = (now.nanoseconds - rx) * 1e-9 if rx else float("nan")
                h = health[i]
                if bad:
                    lvl, m = diag.WARN, f"{bad} bad message(s): {self._last_error[i]}"
                elif active and (rx == 0 or now.nanoseconds - rx > max_ns):
                    lvl, m = diag.WARN, "stale: " + ("no message yet" if rx == 0 else f"last message {age:.2f} s ago")
                elif h is not None and h.significant_loss:
                    lvl, m = diag.WARN, h.describe()
                else:
                    lvl, m = diag.OK, "ok" + (f": {h.describe()}" if h is not None else "")
                self._report_loss(i, topic, h)
                self._bad_reported[i] = self._bad_count[i]
                values = {"age_s": age, "rejected_total": int(self._bad_count[i]),
                          "lost_total": int(self._lost_count[i])}
                if h is not None:
                    values.update(received_hz=h.received_hz, lost_pct=100 * h.lost_fraction)
                sts.append(diag.status(f"{name}: input {topic}", lvl, m, "", values))
            sts.append(self._safety_status(name))
        self._diag_pub.publish(diag.array_msg(now.to_msg(), sts))

    def _safety_status(self, name: str):
        """ERROR when a chunk was rejected since the last report, WARN when one was clamped, with the reason."""
        new = self._safety_counts - self._safety_reported
        self._safety_reported[:] = self._safety_counts
        if new[1]:
            lvl, msg = diag.ERROR, f"{int(new[1])} chunk(s) not published: {self._safety_reason}"
        elif new[0]:
            lvl, msg = diag.WARN, f"{int(new[0])} chunk(s) {self._safety_reason}"
        else:
            lvl, msg = diag.OK, "ok" + ("" if self._safety.limited else " (no limits configured)")
        sf = self._safety
        values = {"mode": self.p.safety_mode, "on_reject": self.p.on_reject,
                  "clamped_total": int(self._safety_counts[0]), "rejected_total": int(self._safety_counts[1]),
                  "limits_from": ",".join(sorted({v for v in sf.source.values() if v})) or "none",
                  "last_reason": self._safety_reason, "realtime_chunking": self._rtc,
                  "rtc_frozen_rows": self.rtc_frozen}
        return diag.status(f"{name}: safety", lvl, msg, "", values)

    def _report_loss(self, i: int, topic: str, h) -> None:
        """Log when an input starts and stops losing messages (the /diagnostics status says it every period)."""
        lossy = h is not None and h.significant_loss
        if lossy and not self._loss_warned[i]:
            self.get_logger().warning(f"input {topic!r}: {h.describe()}")
        elif self._loss_warned[i] and h is not None and not lossy:
            self.get_logger().info(f"input {topic!r}: no more significant loss ({h.describe()})")
        if h is not None:
            self._loss_warned[i] = lossy
