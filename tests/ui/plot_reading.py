"""Reading the Training tab's loss plot as drawn: the line's points in (step, loss) from the SVG vega draws."""
from __future__ import annotations
from studio.train.run_folder import RunFolder


# What the loss plot drew: each axis's description and tick labels (value, centre on screen), and each line's
# vertices on screen (vega draws a line as one SVG path, "M x,y L x,y ...", in the coordinates of its group).
DRAWN_PLOT_JS = r"""() => {
  const svg = document.querySelector('#train-loss svg');
  if (!svg) return null;
  const centre = (el) => { const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; };
  const axes = {};
  for (const axis of svg.querySelectorAll('[aria-label^="X-axis"], [aria-label^="Y-axis"]')) {
    const key = axis.getAttribute('aria-label')[0].toLowerCase();
    const ticks = [...axis.querySelectorAll('.role-axis-label text')]
      .map(text => [Number(text.textContent.replace(/,/g, '')), ...centre(text)]);
    axes[key] = {description: axis.getAttribute('aria-label'), ticks};
  }
  const lines = [...svg.querySelectorAll('.mark-line path')].map(path => {
    const matrix = path.getScreenCTM();
    const numbers = (path.getAttribute('d') || '').match(/-?\d*\.?\d+(?:e-?\d+)?/g) || [];
    const points = [];
    for (let i = 0; i + 1 < numbers.length; i += 2) {
      const point = new DOMPoint(Number(numbers[i]), Number(numbers[i + 1])).matrixTransform(matrix);
      points.push([point.x, point.y]);
    }
    return {points, stroke: getComputedStyle(path).stroke};
  });
  return {axes, lines};
}"""


def _axis_map(ticks: list, coordinate: int):
    """Screen position → value along one axis, fitted through its tick labels (least squares)."""
    positions, values = [tick[coordinate] for tick in ticks], [tick[0] for tick in ticks]
    count = len(ticks)
    mean_p, mean_v = sum(positions) / count, sum(values) / count
    slope = sum((p - mean_p) * (v - mean_v) for p, v in zip(positions, values)) / sum(
        (p - mean_p) ** 2 for p in positions)
    return lambda position: mean_v + slope * (position - mean_p)


def drawn_losses(page, lines: int = 1) -> tuple[list[tuple[float, float]], float]:
    """The training line's points as (step, loss) read off the drawing, and the y axis's span of values; ``lines``
    is how many lines the plot must draw (2 when the run scores a validation loss: the training line is the one
    with a point per step)."""
    drawn = page.evaluate(DRAWN_PLOT_JS)
    assert drawn and {"x", "y"} <= set(drawn["axes"]), f"no loss plot with two axes: {drawn}"
    for key in ("x", "y"):  # numbers on a scale, not every value a category of its own
        assert "linear scale" in drawn["axes"][key]["description"], drawn["axes"][key]["description"]
        assert len(drawn["axes"][key]["ticks"]) >= 2, drawn["axes"][key]
    to_step, to_loss = _axis_map(drawn["axes"]["x"]["ticks"], 1), _axis_map(drawn["axes"]["y"]["ticks"], 2)
    assert len(drawn["lines"]) == lines, f"expected {lines} line(s), got {len(drawn['lines'])}"
    loss_ticks = [tick[0] for tick in drawn["axes"]["y"]["ticks"]]
    unseen = [line["stroke"] for line in drawn["lines"] if line["stroke"] in ("none", "", "transparent")]
    assert not unseen, f"a line is in the page without a stroke, so nobody sees it: {drawn['lines']}"
    training = max((line["points"] for line in drawn["lines"]), key=len)
    return [(to_step(x), to_loss(y)) for x, y in training], max(loss_ticks) - min(loss_ticks)


def assert_plot_matches_log(page, run_dir, at_least: int, lines: int = 1, step_tolerance: float = 0.1) -> int:
    """Every drawn point lies on the loss log's value for its step (within 2 % of the axis), steps 1, 2, … in
    order, each read within ``step_tolerance`` steps (a long run draws about 2 px a step: pass 2 there); returns
    how many points are drawn."""
    points, span = drawn_losses(page, lines)
    logged = {record["step"]: record["loss"] for record in RunFolder(run_dir).loss_log()}
    assert len(points) >= at_least, (len(points), at_least)
    for number, (step, loss) in enumerate(points, start=1):
        assert abs(step - number) < step_tolerance, f"point {number} drawn at step {step:.2f}"
        assert abs(loss - logged[number]) <= 0.02 * span, f"step {number}: drawn {loss:.4f}, log {logged[number]:.4f}"
    return len(points)
