// The last 24 hours of a tenant's usage: totals, then three charts.

import { useEffect, useRef } from 'preact/hooks';
import { api, tenantPath } from '../lib/api';
import { bytes, count, fraction } from '../lib/format';
import { useLoad, useModule } from '../lib/hooks';
import type { UsageReport } from '../lib/types';
import { usageSeries, usageWindow } from '../lib/usage';
import type { ChartSpec } from './charts';
import { ErrorNote, Loading } from './ui';

const IN = '#2563eb';
const OUT = '#d97706';

export function UsageCharts({ tid }: { tid: string }) {
  const usage = useLoad(() => {
    const { from, to } = usageWindow(new Date());
    const query = new URLSearchParams({ from, to });
    return api<UsageReport>('GET', tenantPath(tid, `/usage?${query}`));
  }, [tid]);
  const charts = useModule(() => import('./charts'));
  if (usage.error) return <ErrorNote error={usage.error} />;
  if (!usage.data || !charts.module) return <Loading what="usage" />;
  const s = usageSeries(usage.data);
  const t = usage.data.totals;
  const specs: ChartSpec[] = [
    {
      title: 'Connection-minutes per hour',
      unit: 'minutes',
      x: s.hours,
      series: [{ label: 'connection-minutes', values: s.connectionMinutes, color: '#059669' }],
    },
    {
      title: 'Messages per hour',
      unit: 'count',
      x: s.hours,
      series: [
        { label: 'in', values: s.messagesIn, color: IN },
        { label: 'out', values: s.messagesOut, color: OUT },
      ],
    },
    {
      title: 'Payload bytes per hour',
      unit: 'bytes',
      x: s.hours,
      series: [
        { label: 'in', values: s.bytesIn, color: IN },
        { label: 'out', values: s.bytesOut, color: OUT },
      ],
    },
  ];
  return (
    <div>
      <dl class="totals" data-testid="usage-totals">
        <div>
          <dt>Connection-minutes</dt>
          <dd>{fraction(t.connection_minutes)}</dd>
        </div>
        <div>
          <dt>Messages in / out</dt>
          <dd>
            {count(t.messages_in)} / {count(t.messages_out)}
          </dd>
        </div>
        <div>
          <dt>Bytes in / out</dt>
          <dd>
            {bytes(t.bytes_in)} / {bytes(t.bytes_out)}
          </dd>
        </div>
      </dl>
      <div class="charts">
        {specs.map((spec) => (
          <Chart key={spec.title} spec={spec} draw={charts.module!.drawChart} />
        ))}
      </div>
      <p class="hint">
        Usage is written every few seconds; hours are UTC.{' '}
        <button type="button" class="button-small" onClick={usage.reload}>
          Refresh
        </button>
      </p>
    </div>
  );
}

function Chart({ spec, draw }: { spec: ChartSpec; draw: (el: HTMLElement, spec: ChartSpec) => () => void }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => (ref.current ? draw(ref.current, spec) : undefined), [spec, draw]);
  return <figure class="chart" ref={ref} data-testid="usage-chart" aria-label={spec.title} role="img" />;
}
