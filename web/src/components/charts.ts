// The usage charts, drawn with uPlot (canvas, ~50 KB): loaded only with the
// tenant overview.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { bytes, fraction } from '../lib/format';

export interface ChartSpec {
  title: string;
  unit: 'count' | 'bytes' | 'minutes';
  x: number[];
  series: { label: string; values: number[]; color: string }[];
}

function axisValue(unit: ChartSpec['unit'], v: number): string {
  if (unit === 'bytes') return bytes(v);
  if (unit === 'minutes') return `${fraction(v)} min`;
  return fraction(v);
}

/** Draws `spec` into `target` at its current width; returns a cleanup. */
export function drawChart(target: HTMLElement, spec: ChartSpec): () => void {
  const width = () => Math.max(260, target.clientWidth);
  const plot = new uPlot(
    {
      title: spec.title,
      width: width(),
      height: 200,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: '#5b6472', grid: { stroke: '#e6e8ec' } },
        {
          stroke: '#5b6472',
          grid: { stroke: '#e6e8ec' },
          size: 70,
          values: (_u, ticks) => ticks.map((v) => axisValue(spec.unit, v)),
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
          value: (_u: uPlot, v: number | null) => (v == null ? '–' : axisValue(spec.unit, v)),
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
