// The usage API lists only the hours with activity; charts want every hour of
// the window, zeros included, on one time axis.

import type { UsageCounters, UsageReport } from './types';

export const HOUR_MS = 3_600_000;

export interface UsageSeries {
  /** Start of each UTC hour, seconds since the epoch (uPlot's x axis). */
  hours: number[];
  connectionMinutes: number[];
  messagesIn: number[];
  messagesOut: number[];
  bytesIn: number[];
  bytesOut: number[];
}

/** The query string for the last `hours` hours ending at the hour after `now`. */
export function usageWindow(now: Date, hours = 24): { from: string; to: string } {
  const end = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
  return {
    from: new Date(end - hours * HOUR_MS).toISOString(),
    to: new Date(end).toISOString(),
  };
}

/** One point per hour from `report.from` (inclusive) to `report.to` (exclusive). */
export function usageSeries(report: UsageReport): UsageSeries {
  const start = Math.floor(Date.parse(report.from) / HOUR_MS) * HOUR_MS;
  const end = Date.parse(report.to);
  const byHour = new Map<number, UsageCounters>();
  for (const hour of report.hours) byHour.set(Date.parse(hour.hour), hour);
  const series: UsageSeries = {
    hours: [],
    connectionMinutes: [],
    messagesIn: [],
    messagesOut: [],
    bytesIn: [],
    bytesOut: [],
  };
  for (let t = start; t < end; t += HOUR_MS) {
    const c = byHour.get(t);
    series.hours.push(t / 1000);
    series.connectionMinutes.push(c?.connection_minutes ?? 0);
    series.messagesIn.push(c?.messages_in ?? 0);
    series.messagesOut.push(c?.messages_out ?? 0);
    series.bytesIn.push(c?.bytes_in ?? 0);
    series.bytesOut.push(c?.bytes_out ?? 0);
  }
  return series;
}
