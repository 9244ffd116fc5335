// Download progress for people: a one-line bar redrawn in place on a terminal, and one quiet line
// per finished file when the output is a pipe or a log file.

/** One progress report of a download (see downloadModel's onProgress). */
export interface DownloadProgress {
  /** File name inside the model folder, e.g. `model.safetensors`. */
  file: string;
  /** Bytes of the file on disk so far (bytes resumed from an earlier attempt count). */
  received: number;
  /** Size of the file when the server said, else undefined. */
  total: number | undefined;
  /** True on the last report for a file, sent once it is verified and in place. */
  done?: boolean;
}

/** What progressBar needs of a stream: process.stderr or process.stdout, or a fake in tests. */
export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const UNITS: [number, string][] = [
  [1e9, 'GB'],
  [1e6, 'MB'],
  [1e3, 'kB'],
];

function unitFor(n: number): [number, string] {
  for (const u of UNITS) if (n >= u[0]) return u;
  return [1, 'B'];
}

function fmt(n: number, [div, name]: [number, string]): string {
  return div === 1 ? `${n} ${name}` : `${(n / div).toFixed(1)} ${name}`;
}

/** `120.3/270.1 MB` (the unit chosen by the total), or `120.3 MB` when the total is unknown. */
export function formatBytes(received: number, total?: number): string {
  if (total === undefined) return fmt(received, unitFor(received));
  const u = unitFor(total);
  const [div, name] = u;
  return div === 1 ? `${received}/${total} ${name}` : `${(received / div).toFixed(1)}/${(total / div).toFixed(1)} ${name}`;
}

/** `35 MB/s`, `2.4 MB/s`, `812 kB/s`. */
export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return '';
  const [div, name] = unitFor(bytesPerSecond);
  const v = bytesPerSecond / div;
  return `${v < 10 && div !== 1 ? v.toFixed(1) : Math.round(v)} ${name}/s`;
}

/** An onProgress callback; `end()` finishes a line left open (call it before printing an error). */
export type ProgressCallback = ((p: DownloadProgress) => void) & { end(): void };

/**
 * Returns an onProgress callback for downloadModel that draws
 * `file [#####     ] 45% 120.3/270.1 MB 35 MB/s` on a TTY, redrawn in place with \r (at most
 * ten times a second, and always on completion, which ends the line). On a non-TTY it prints one
 * line per finished file (`file 270.1 MB`) and nothing while downloading.
 */
export function progressBar(stream: ProgressStream, opts: { now?: () => number } = {}): ProgressCallback {
  const now = opts.now ?? (() => performance.now());
  let current: string | undefined; // file of the line currently on screen (TTY)
  let lineOpen = false;
  let startTime = 0;
  let startBytes = 0;
  let lastDraw = -Infinity;
  let lastComplete = false;
  const finished = new Set<string>();

  // `name [bar] pct size rate`; when the terminal is narrow, the bar shrinks, then goes, then
  // the rate, and last the name is shortened from the left.
  const line = (p: DownloadProgress, t: number): string => {
    const cols = (stream.columns ?? 0) >= 20 ? (stream.columns as number) : 80;
    const max = cols - 1;
    const elapsed = (t - startTime) / 1000;
    const rate = elapsed > 0.05 ? formatRate((p.received - startBytes) / elapsed) : '';
    const size = formatBytes(p.received, p.total);
    const known = p.total !== undefined && p.total > 0;
    const frac = known ? Math.min(1, p.received / (p.total as number)) : 0;
    const pct = known ? ` ${String(Math.floor(frac * 100)).padStart(3)}%` : '';
    const name = p.file;
    const bar = (w: number) => {
      const filled = Math.round(frac * w);
      return ` [${'#'.repeat(filled)}${' '.repeat(w - filled)}]`;
    };
    const rest = (withRate: boolean) => `${pct} ${size}${withRate && rate ? ' ' + rate : ''}`;
    const minName = Math.min(name.length, 12);
    if (known) {
      // Room for the rate is kept even before it is known, so the bar does not change width.
      const room = max - name.length - rest(false).length - Math.max(11, rate.length + 1) - 3;
      if (room >= 10) return name + bar(Math.min(30, room)) + rest(true);
    }
    for (const withRate of [true, false]) {
      const tail = rest(withRate);
      if (minName + tail.length <= max || !withRate) {
        const roomForName = max - tail.length;
        const shown = name.length <= roomForName ? name : roomForName > 1 ? '…' + name.slice(name.length - (roomForName - 1)) : '';
        return (shown + tail).slice(0, max);
      }
    }
    return name.slice(0, max);
  };

  const cb = (p: DownloadProgress): void => {
    const t = now();
    const complete = p.done === true || (p.total !== undefined && p.received >= p.total);
    if (!stream.isTTY) {
      if (p.done === true && !finished.has(p.file)) {
        finished.add(p.file);
        stream.write(`${p.file} ${formatBytes(p.received)}\n`);
      }
      return;
    }
    if (p.file !== current) {
      if (lineOpen) stream.write('\n');
      current = p.file;
      lineOpen = false;
      startTime = t;
      startBytes = p.received;
      lastDraw = -Infinity;
      lastComplete = false;
      finished.delete(p.file);
    }
    if (finished.has(p.file)) return;
    if (!complete && t - lastDraw < 100) return;
    const same = complete && lastComplete && lineOpen;
    lastDraw = t;
    lastComplete = complete;
    if (!same) {
      stream.write(`\r${line(p, t)}\x1b[K`);
      lineOpen = true;
    }
    if (p.done === true) {
      stream.write('\n');
      lineOpen = false;
      finished.add(p.file);
    }
  };
  return Object.assign(cb, {
    end(): void {
      if (lineOpen) stream.write('\n');
      lineOpen = false;
    },
  });
}
