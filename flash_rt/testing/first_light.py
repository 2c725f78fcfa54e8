"""The first-light cosine routing table: the cosine an integrator sees at first inference -> the likely cause.

One place for the data: docs/plugin_model_template.md prints `markdown_table()` verbatim, and
test/unit/test_routing_table.py injects every fault below into the tiny Pi0.5 on the CPU and asserts that the
measured cosines fall inside the band printed here. The cosine is `flash_rt.models.pi05.oracle.cosine64` of
the chunk the policy returns (unnormalized robot actions) against `policy.reference_chunk()` on the same inputs
and noise, over 4 observations; a band is the measured range widened by a small margin.

Measured on the tiny Pi0.5 (2 layers, width 64) with the DROID norm stats and sharpened attention (see the test's
`sharp_tiny`): a full-size model gives other numbers, and bands overlap, so read a row as "faults that gave this
cosine here", ordered from the most to the least destructive. Regenerate the doc's table with
`python -m flash_rt.testing.first_light`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    fault: str      # the injector's name in test_routing_table.py
    lo: float       # the band the test asserts: lo <= every measured cosine <= hi
    hi: float
    mistake: str    # what was done wrong
    look_at: str    # where to look first


ROUTES = (
    Route("unmatched_noise", 0.05, 0.50, "engine and reference ran with different noise",
          "the comparison, not the engine: pass the same `noise=` to both (`reference_chunk()` reuses the step's)"),
    Route("flow_direction_reversed", 0.35, 0.60, "Euler steps run t from 0 to 1 (dt > 0)",
          "the flow schedule: t starts at 1, dt = -1 / num_steps"),
    Route("ada_norm_unused", 0.68, 0.80, "the expert's adaRMS modulation dropped (plain RMSNorm, no gate)",
          "the expert norms: scale, shift and gate from the time embedding (Pi0.5), none in Pi0"),
    Route("missing_unnormalize", 0.83, 0.89, "actions returned in model space (norm stats not applied)",
          "the host IO's `finish_step` / the Normalizer mode (quantile for Pi0.5, z-score for Pi0)"),
    Route("norm_scale_w_not_1_plus_w", 0.84, 0.95, "Gemma RMSNorm scale folded as `w` instead of `1 + w`",
          "`norm_fuse=` of FusedQKV / FusedGateUp (folds 1 + w), or a norm kernel given the raw w"),
    Route("transposed_square_weight", 0.88, 0.975, "a square nn.Linear weight stored without its transpose",
          "the spec item of the square GEMMs (`tT()`): a shape check cannot catch them"),
    Route("rope_pairs_not_halves", 0.89, 0.975, "RoPE rotates pairs (2j, 2j+1) where the model rotates halves",
          "`rope_interleave_rows` in the spec vs the RoPE kernel's convention"),
    Route("rope_rotation_reversed", 0.87, 0.99, "RoPE's rotate_half with the sign on the wrong half ([x2, -x1])",
          "the RoPE kernel / reference: q' = q cos + [-q2, q1] sin"),
    Route("image_range_0_1", 0.89, 0.97, "images given in [0, 1] instead of [-1, 1]",
          "the image conversion (`uint8_to_model`: x / 255 * 2 - 1)"),
    Route("qkv_head_interleave", 0.90, 0.975, "q rows read as [head_dim, heads] instead of [heads, head_dim]",
          "the QKV fusion's reshape / `FusedQKV(head_dim=...)` and the head counts in config.json"),
    Route("state_not_in_prompt", 0.93, 0.99, "Pi0.5's discretized state missing from the prompt",
          "the prompt format (`discrete_state_input`) and where the state enters (prompt for Pi0.5, a suffix "
          "token for Pi0)"),
    Route("state_not_normalized", 0.94, 0.997, "the raw state discretized into the prompt (not normalized first)",
          "the state path: Normalizer before `discretize_state` (Pi0.5) or before `state_proj` (Pi0)"),
    Route("state_tokens_misplaced", 0.95, 0.99, "the state in the wrong place of the prompt (before the task)",
          "the prompt string: \"Task: <text>, State: <bins>;\\nAction: \" (Pi0.5); Pi0's state is a suffix token"),
    Route("time_mlp_transposed", 0.93, 0.99, "the time MLP's square input weight not transposed",
          "the time-embedding path (sinusoid width, min/max period, the MLP's weights)"),
    Route("image_bgr", 0.94, 0.99, "camera frames fed as BGR",
          "the camera conversion (flash_rt_ros conversions: encoding)"),
    Route("embed_not_scaled", 0.985, 0.999, "token embeddings not multiplied by sqrt(width)",
          "the prompt embedding (`embed_scale`)"),
    Route("one_gemm_scale_off", 0.997, 0.9995, "one GEMM 25 % off (e.g. an FP8 scale taken from another tensor)",
          "bisect per site: the calibration's amax per site, or swap one site at a time to BF16"),
    Route("prompt_padding_not_masked", 0.9995, 1.0, "prompt padding keys not masked",
          "the key-padding bias; invisible at FP8 precision: only the CPU cell's 1e-4 max abs difference shows it"),
)


def markdown_table() -> str:
    rows = ["| cosine seen | likely mistake | where to look |", "|---|---|---|"]
    for r in sorted(ROUTES, key=lambda r: (r.lo, r.hi)):
        rows.append(f"| {r.lo:g} – {r.hi:g} | {r.mistake} (`{r.fault}`) | {r.look_at} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
