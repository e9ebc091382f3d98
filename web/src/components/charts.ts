// The usage charts, drawn with uPlot (canvas, ~50 KB): loaded only with the
// tenant overview.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { axisLabel, yTicks, type AxisUnit } from '../lib/axis';

export interface ChartSpec {
  title: string;
  unit: AxisUnit;
  x: number[];
  series: { label: string; values: number[]; color: string }[];
}

/** Draws `spec` into `target` at its current width; returns a cleanup. */
export function drawChart(target: HTMLElement, spec: ChartSpec): () => void {
  const width = () => Math.max(260, target.clientWidth);
  const plot = new uPlot(
    {
      title: spec.title,
      width: width(),
      height: 200,
      // The scale ends on the last tick, and the ticks are ours (lib/axis.ts).
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, yTicks(spec.unit, max).at(-1)!] } },
      axes: [
        { stroke: '#5b6472', grid: { stroke: '#e6e8ec' } },
        {
          stroke: '#5b6472',
          grid: { stroke: '#e6e8ec' },
          size: 70,
          splits: (_u, _axis, _min, max) => yTicks(spec.unit, max),
          values: (_u, ticks) => ticks.map((v) => axisLabel(spec.unit, v)),
        },
      ],
      series: [
        {},
        ...spec.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: `${s.color}22`,
          width: 2,
          // Each value is a whole hour's: a step per hour, not a slope between hours.
          paths: uPlot.paths.stepped!({ align: 1 }),
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v == null ? '–' : axisLabel(spec.unit, v)),
        })),
      ],
    },
    [spec.x, ...spec.series.map((s) => s.values)],
    target,
  );
  const resize = new ResizeObserver(() => plot.setSize({ width: width(), height: 200 }));
  resize.observe(target);
  return () => {
    resize.disconnect();
    plot.destroy();
  };
}
