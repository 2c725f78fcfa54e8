"""The report's PNG: node (engine) vs FP32 reference action trajectories per joint, drawn with OpenCV only
(no matplotlib dependency; cv2 is already a dependency of the node's image conversions).

Layout: a title with the verdict numbers and a legend; one panel per action dimension (two columns) with grid,
tick labels in the data's units and seconds, the joint name and that joint's max |node - reference|; and a
bottom panel with 1 - cos per chunk on a log scale against the threshold.

In a joint panel, each chunk is drawn as a faint line over its full horizon (row r at t_chunk + r * dt), and
the *executed* trajectory (each chunk's rows until the next chunk starts, as a receding-horizon controller would
run them) as a bold line for the node and a dashed line for the reference. Vertical dotted lines mark prompt
changes.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

WHITE = (255, 255, 255)
BLACK = (20, 20, 20)
GRID = (225, 225, 225)
AXIS = (120, 120, 120)
NODE = (190, 100, 20)        # BGR: blue
NODE_FAINT = (240, 215, 190)
REF = (0, 130, 255)          # BGR: orange
THRESH = (40, 40, 220)       # BGR: red
PROMPT = (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round-numbered ticks (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return out


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.1e}"
    return f"{v:.3g}"


def _text(img, s, org, scale=0.45, color=BLACK, thick=1) -> None:
    cv2.putText(img, s, (int(org[0]), int(org[1])), FONT, scale, color, thick, cv2.LINE_AA)


def _text_w(s, scale=0.45, thick=1) -> int:
    return cv2.getTextSize(s, FONT, scale, thick)[0][0]


def _dashed(img, pts, color, thick=1, dash=7, gap=5) -> None:
    """Polyline with dashes that run on across vertices."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        seg = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while pos < seg:
            run = min(left, seg - pos)
            if on:
                a, b = pos / seg, (pos + run) / seg
                p0 = (int(round(x0 + (x1 - x0) * a)), int(round(y0 + (y1 - y0) * a)))
                p1 = (int(round(x0 + (x1 - x0) * b)), int(round(y0 + (y1 - y0) * b)))
                cv2.line(img, p0, p1, color, thick, cv2.LINE_AA)
            pos += run
            left -= run
            if left <= 1e-9:
                on = not on
                left = dash if on else gap


class _Axes:
    def __init__(self, img, x, y, w, h, xlim, ylim, log_y=False):
        self.img, self.x, self.y, self.w, self.h = img, x, y, w, h
        self.xlim, self.ylim, self.log_y = xlim, ylim, log_y

    def px(self, t, v):
        x0, x1 = self.xlim
        y0, y1 = self.ylim
        if self.log_y:
            v = math.log10(max(v, 10 ** y0))
        fx = (t - x0) / (x1 - x0) if x1 > x0 else 0.5
        fy = (v - y0) / (y1 - y0) if y1 > y0 else 0.5
        return (self.x + fx * self.w, self.y + self.h - fy * self.h)

    def frame(self, xlabel: str | None = "time (s)") -> None:
        img = self.img
        xt = nice_ticks(*self.xlim, n=8)
        if self.log_y:
            lo, hi = math.ceil(self.ylim[0]), math.floor(self.ylim[1])
            every = max(1, math.ceil((hi - lo + 1) / 6))
            yt = [v for v in range(lo, hi + 1) if (hi - v) % every == 0]
        else:
            yt = nice_ticks(*self.ylim, n=6)
        for t in xt:
            if self.xlim[0] <= t <= self.xlim[1]:
                X = int(round(self.px(t, self.ylim[0] if not self.log_y else 10 ** self.ylim[0])[0]))
                cv2.line(img, (X, self.y), (X, self.y + self.h), GRID, 1)
                s = fmt(t)
                _text(img, s, (X - _text_w(s, 0.4) / 2, self.y + self.h + 15), 0.4, AXIS)
        for v in yt:
            if self.ylim[0] <= v <= self.ylim[1]:
                Y = int(round(self.y + self.h - (v - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * self.h))
                cv2.line(img, (self.x, Y), (self.x + self.w, Y), GRID, 1)
                s = f"1e{int(v)}" if self.log_y else fmt(v)
                _text(img, s, (self.x - 6 - _text_w(s, 0.4), Y + 4), 0.4, AXIS)
        cv2.rectangle(img, (self.x, self.y), (self.x + self.w, self.y + self.h), AXIS, 1)
        if xlabel:
            _text(img, xlabel, (self.x + self.w - _text_w(xlabel, 0.4), self.y + self.h + 30), 0.4, AXIS)

    def poly(self, ts, vs):
        return [self.px(t, v) for t, v in zip(ts, vs)]

    def clip(self):
        """Sub-image view for drawing lines that must not leave the panel."""
        return self.img[self.y:self.y + self.h + 1, self.x:self.x + self.w + 1]


def executed_path(t: list[float], dt: list[float], arrays: list[np.ndarray]) -> tuple[list[float], np.ndarray]:
    """Receding-horizon path: chunk i's rows r with t_i + r*dt_i < t_{i+1} (at least row 0); all rows of the last."""
    ts, rows = [], []
    for i, a in enumerate(arrays):
        end = t[i + 1] if i + 1 < len(t) else math.inf
        for r in range(a.shape[0]):
            tr = t[i] + r * dt[i]
            if r > 0 and tr >= end - 1e-12:
                break
            ts.append(tr)
            rows.append(a[r])
    return ts, np.asarray(rows)


def _boundary_panel(img, bnd: dict, x: int, y: int, w: int, h: int, xlim) -> None:
    """Position jump at every switch between chunks (report.py "Boundary"), one marker style per series."""
    series = bnd["series"]
    vals = [v for vs in series.values() for v in vs]
    hi = max(max(vals), 1e-9)
    ax = _Axes(img, x, y, w, h, xlim, (0.0, hi * 1.08))
    ax.frame()
    _text(img, "boundary: max |position jump| at each switch to the next chunk (action units)", (x, y - 8), 0.5,
          BLACK)
    lx = x + w - 10
    for (label, vs), color in zip(reversed(list(series.items())), (REF, NODE)):
        lx -= _text_w(label) + 24
        cv2.circle(img, (lx, y - 12), 4, color, -1, cv2.LINE_AA)
        _text(img, label, (lx + 8, y - 8))
    for (label, vs), color in zip(series.items(), (NODE, REF)):
        for t, v in zip(bnd["t"], vs):
            X, Y = ax.px(t, v)
            cv2.circle(img, (int(round(X)), int(round(Y))), 4, color, -1 if color == NODE else 1, cv2.LINE_AA)


def plot_trajectories(path, series: dict, title: str = "", min_cos: float | None = None, width: int = 1600) -> Path:
    """Write the PNG. `series`: t, dt, node, reference (lists of [H, D] arrays), cos, prompts, joint_names."""
    t, dt = list(series["t"]), list(series["dt"])
    node = [np.asarray(a, np.float64) for a in series["node"]]
    ref = [np.asarray(a, np.float64) for a in series["reference"]]
    if not node:
        raise ValueError("nothing to plot")
    dims = node[0].shape[1]
    names = list(series.get("joint_names") or [f"action_{j}" for j in range(dims)])
    cols = 2 if dims > 1 else 1
    rows = math.ceil(dims / cols)
    head, panel_h, cos_h, pad = 78, 230, 190, 18
    bnd = series.get("boundary") if series.get("boundary") and series["boundary"]["t"] else None
    bnd_h = 190 if bnd else 0
    height = head + rows * panel_h + cos_h + bnd_h + pad
    img = np.full((height, width, 3), 255, np.uint8)

    _text(img, title or "node vs FP32 reference", (20, 28), 0.6, BLACK, 1)
    # legend
    lx, ly = 20, 56
    cv2.line(img, (lx, ly), (lx + 36, ly), NODE, 3, cv2.LINE_AA)
    _text(img, "node (engine), executed", (lx + 44, ly + 5))
    lx += 44 + _text_w("node (engine), executed") + 30
    _dashed(img, [(lx, ly), (lx + 36, ly)], REF, 2)
    _text(img, "FP32 reference, executed", (lx + 44, ly + 5))
    lx += 44 + _text_w("FP32 reference, executed") + 30
    cv2.line(img, (lx, ly), (lx + 36, ly), NODE_FAINT, 1, cv2.LINE_AA)
    _text(img, "node chunk, full horizon", (lx + 44, ly + 5))
    lx += 44 + _text_w("node chunk, full horizon") + 30
    cv2.line(img, (lx, ly - 8), (lx, ly + 8), PROMPT, 1)
    _text(img, "prompt change", (lx + 8, ly + 5))

    t_end = max(t[i] + (node[i].shape[0] - 1) * dt[i] for i in range(len(t)))
    xlim = (0.0, max(t_end, 1e-6))
    ex_t, ex_node = executed_path(t, dt, node)
    _, ex_ref = executed_path(t, dt, ref)
    changes = [t[i] for i in range(1, len(t)) if series["prompts"][i] != series["prompts"][i - 1]]
    col_w = (width - 40) // cols
    for j in range(dims):
        r, c = divmod(j, cols)
        x = 20 + c * col_w + 70
        y = head + r * panel_h + 26
        w, h = col_w - 70 - 20, panel_h - 26 - 40
        vals = np.concatenate([a[:, j] for a in node] + [a[:, j] for a in ref])
        lo, hi = float(vals.min()), float(vals.max())
        span = hi - lo if hi > lo else max(abs(hi), 1e-3)
        ax = _Axes(img, x, y, w, h, xlim, (lo - 0.08 * span, hi + 0.08 * span))
        ax.frame()
        diff = max(float(np.max(np.abs(a[:, j] - b[:, j]))) for a, b in zip(node, ref))
        label = f"{names[j] if j < len(names) else f'action_{j}'}   max |node - ref| = {diff:.2e}"
        _text(img, label, (x, y - 8), 0.5, BLACK)
        for tc in changes:
            X = int(round(ax.px(tc, ax.ylim[0])[0]))
            _dashed(img, [(X, y), (X, y + h)], PROMPT, 1, 2, 4)
        for i, a in enumerate(node):
            pts = ax.poly([t[i] + k * dt[i] for k in range(a.shape[0])], a[:, j])
            cv2.polylines(img, [np.round(np.asarray(pts)).astype(np.int32)], False, NODE_FAINT, 1, cv2.LINE_AA)
        pts = np.round(np.asarray(ax.poly(ex_t, ex_node[:, j]))).astype(np.int32)
        cv2.polylines(img, [pts], False, NODE, 3, cv2.LINE_AA)
        _dashed(img, ax.poly(ex_t, ex_ref[:, j]), REF, 2)

    # 1 - cos per chunk, log scale
    y = head + rows * panel_h + 26
    x, w, h = 20 + 70, width - 40 - 70 - 20, cos_h - 26 - 40
    err = [max(1.0 - c, 1e-16) for c in series["cos"]]
    floor = min(-12, math.floor(math.log10(min(err))))
    ceil_ = max(-1, math.ceil(math.log10(max(err)))) if err else -1
    ax = _Axes(img, x, y, w, h, xlim, (floor, min(0, ceil_)), log_y=True)
    ax.frame()
    _text(img, "1 - cos(node, reference) per chunk (float64, whole chunk; log scale)", (x, y - 8), 0.5, BLACK)
    if min_cos is not None and min_cos < 1:
        ty = ax.px(0, 1 - min_cos)[1]
        if y <= ty <= y + h:
            _dashed(img, [(x, ty), (x + w, ty)], THRESH, 1)
            s = f"threshold cos {min_cos:g}"
            _text(img, s, (x + w - _text_w(s, 0.4) - 4, ty - 5), 0.4, THRESH)
    for tc, e in zip(t, err):
        X, Y = ax.px(tc, e)
        cv2.circle(img, (int(round(X)), int(round(Y))), 3, NODE, -1, cv2.LINE_AA)
    if bnd:
        _boundary_panel(img, bnd, 20 + 70, head + rows * panel_h + cos_h + 26, width - 40 - 70 - 20, bnd_h - 26 - 40,
                        xlim)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {out}")
    return out
