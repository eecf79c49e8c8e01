"""The Pareto picture: far points summarised on the top edge instead of stretching the
axis, ids that do not overlap, the float model as a reference, a compression scale."""
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from qaev.config import QuantConfig
from qaev.report.gather import Point, ReportData
from qaev.report.pareto import MAX_LABELS, draw_pareto, focus_limit, label_order

OBJECTIVES = [{"name": "acc_drop", "kind": "measured", "unit": "points"},
              {"name": "size_mb", "kind": "exact", "unit": "MB"}]


def _data(drops, sizes, *, recommended="p03", exported=()):
    points = [Point(id=f"p{i:02d}", objectives={"acc_drop": d, "size_mb": s}, metric=None, config=QuantConfig(),
                    config_text="", exported=f"p{i:02d}" in exported) for i, (d, s) in enumerate(zip(drops, sizes))]
    doc = {"objectives": OBJECTIVES, "float": {"acc_drop": 0.0, "size_mb": 40.0}, "metric": "top1",
           "evaluations": 99, "recommended": {"id": recommended, "tolerance": 1.0}}
    return ReportData(run_dir=None, doc=doc, points=points, layer_names=[], baselines=[], other_bytes=None,
                      hardware=None)


def _draw(data):
    fig = Figure(layout="constrained")
    axes = draw_pareto(fig, data)
    FigureCanvasAgg(fig).draw()
    return fig, axes[0]


def test_focus_limit_is_five_times_the_tolerance_and_at_least_five_points():
    assert (focus_limit(1.0), focus_limit(0.5), focus_limit(2.0), focus_limit(None)) == (5.0, 5.0, 10.0, 5.0)


def test_a_far_point_does_not_stretch_the_drop_axis_and_is_counted():
    drops = [0.0, 0.1, 0.3, 0.8, 1.5, 42.0]
    _, ax = _draw(_data(drops, [10, 8, 6, 4, 3, 2]))
    assert ax.get_ylim()[1] < 2.0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("1 point(s) with drop > 5 (up to 42)") for t in legend)
    assert "tolerance: drop 1" in legend and any(t.startswith("float model: acc_drop 0 (size_mb 40") for t in legend)


def test_without_far_points_every_point_stays_on_the_axes():
    _, ax = _draw(_data([0.0, 0.1, 3.0], [10, 8, 6]))
    assert ax.get_ylim()[1] > 3.0


def test_ids_are_few_and_do_not_overlap_on_a_crowded_front():
    rng = np.random.default_rng(0)
    sizes = np.sort(rng.uniform(2, 30, 60))[::-1]
    drops = np.sort(rng.uniform(0, 4, 60))
    fig, ax = _draw(_data(list(drops), list(sizes), recommended="p30", exported=("p10",)))
    renderer = fig.canvas.get_renderer()
    ids = [t for t in ax.texts if t.get_text().startswith("p")]
    assert 3 <= len(ids) <= MAX_LABELS and {"p30", "p10"} <= {t.get_text() for t in ids}
    boxes = [t.get_window_extent(renderer) for t in ids]
    assert not any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])


def test_the_compression_scale_has_round_ratios():
    fig, ax = _draw(_data([0.0, 0.5, 1.0], [20, 10, 5]))
    top = [child for child in ax.child_axes][0]
    labels = [t.get_text() for t in top.get_xticklabels()]
    assert labels and all(label.endswith("x") for label in labels) and "4x" in labels


@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_label_order_names_every_point_once_recommended_first(n):
    order = label_order(_data([0.0] * n, list(range(n, 0, -1)), recommended=f"p{n - 1:02d}"))
    assert sorted(order) == list(range(n)) and order[0] == n - 1


def test_readable_names_keep_the_block_number_and_the_last_parts():
    from qaev.report.plots import readable_names

    names = readable_names(["/encoder/layer.0/attention/self/query/MatMul",
                            "/encoder/layer.11/attention/output/dense/quantized_part/MatMul"])
    assert names == ["layer.0/attention/self/query/MatMul", "layer.11/.../quantized_part/MatMul"]
    assert all(len(n) <= 38 for n in readable_names(["x" * 80, "/a/" + "b" * 70]))


@pytest.mark.parametrize("layers,points,panels", [(50, 2, 2), (60, 20, 2), (12, 6, 1), (226, 40, 1)])
def test_the_bit_map_wraps_a_long_narrow_list_and_stays_under_16_inches(layers, points, panels):
    from qaev.report.plots import _COMPACT_LAYERS, _panels

    got, (width, height) = _panels(layers, points, layers > _COMPACT_LAYERS)
    assert got == panels and height <= 18.0 and width / height > 0.5


def test_a_narrow_size_range_still_gets_ratios_on_the_compression_scale():
    fig, ax = _draw(_data([0.0, 0.5, 1.0], [4.06, 4.04, 4.02]))
    labels = [t.get_text() for t in ax.child_axes[0].get_xticklabels()]
    assert len(labels) >= 2 and all(label.endswith("x") for label in labels)


def test_a_point_near_the_front_is_drawn_hollow_off_the_step_line():
    data = _data([0.0, 0.3, 0.2, 1.0], [10, 8, 6, 4], recommended="p02")
    data.points[1].near = True  # 8 MB at 0.3: beaten by the 6 MB point at 0.2
    _, ax = _draw(data)
    step = next(line for line in ax.get_lines() if 10 in set(np.asarray(line.get_xdata(), float)))
    assert set(np.asarray(step.get_xdata(), float)) == {10, 6, 4}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("near the front") for t in legend)
