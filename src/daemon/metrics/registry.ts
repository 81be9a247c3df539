/**
 * The few Prometheus kinds brig needs, rendered in the text exposition
 * format (version 0.0.4): counters and histograms kept as events happen,
 * gauges read when scraped. Label values are escaped as the format says;
 * names are brig's own, never the caller's.
 */

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([key, value]) => `${key}="${value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`).join(',')}}`;
}

function header(name: string, help: string, type: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
}

export class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    private readonly help: string,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }

  render(): string {
    return header(this.name, this.help, 'counter') + [...this.values.values()].map(({ labels, value }) => `${this.name}${labelText(labels)} ${value}\n`).join('');
  }
}

export class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();

  constructor(
    readonly name: string,
    private readonly help: string,
    /** Upper bounds, rising, in the unit the name says (seconds). */
    private readonly buckets: number[],
  ) {}

  observe(value: number, labels: Labels = {}): void {
    const key = labelText(labels);
    const entry = this.series.get(key) ?? { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
    this.buckets.forEach((bound, index) => {
      if (value <= bound) entry.counts[index] = (entry.counts[index] ?? 0) + 1;
    });
    entry.sum += value;
    entry.count += 1;
    this.series.set(key, entry);
  }

  render(): string {
    let text = header(this.name, this.help, 'histogram');
    for (const { labels, counts, sum, count } of this.series.values()) {
      this.buckets.forEach((bound, index) => (text += `${this.name}_bucket${labelText({ ...labels, le: String(bound) })} ${counts[index]}\n`));
      text += `${this.name}_bucket${labelText({ ...labels, le: '+Inf' })} ${count}\n${this.name}_sum${labelText(labels)} ${sum}\n${this.name}_count${labelText(labels)} ${count}\n`;
    }
    return text;
  }
}

/** A gauge read at scrape time: each series as the reader gives it. */
export function gauge(name: string, help: string, series: Array<{ labels?: Labels; value: number }>): string {
  return header(name, help, 'gauge') + series.map(({ labels, value }) => `${name}${labelText(labels ?? {})} ${value}\n`).join('');
}
