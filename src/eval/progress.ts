// Progress of a long scoring run on stderr: `arc_easy [####      ] 12/100 3.4 items/s ETA 26 s`
// redrawn in place on a terminal; on a pipe or log file a line every 10% (and at the end).
import type { ProgressStream } from '../io/progress.ts';

export interface CountProgress {
  update(done: number, total: number): void;
  end(): void;
}

export function countProgress(stream: ProgressStream, label: string, unit = 'items', now: () => number = () => performance.now()): CountProgress {
  const t0 = now();
  let lastDraw = -Infinity;
  let lastDecile = -1;
  let open = false;
  const text = (done: number, total: number): string => {
    const s = (now() - t0) / 1000;
    const rate = s > 0 ? done / s : 0;
    const eta = rate > 0 && done < total ? ` ETA ${Math.ceil((total - done) / rate)} s` : '';
    const w = 20;
    const filled = total > 0 ? Math.round((done / total) * w) : 0;
    return `${label} [${'#'.repeat(filled)}${' '.repeat(w - filled)}] ${done}/${total} ${rate.toFixed(2)} ${unit}/s${eta}`;
  };
  return {
    update(done, total) {
      if (stream.isTTY) {
        if (done < total && now() - lastDraw < 100) return;
        lastDraw = now();
        stream.write(`\r${text(done, total)}\x1b[K`);
        open = true;
      } else {
        const decile = total > 0 ? Math.floor((done / total) * 10) : 10;
        if (decile > lastDecile || done === total) {
          lastDecile = decile;
          stream.write(`${text(done, total)}\n`);
        }
      }
    },
    end() {
      if (open) stream.write('\n');
      open = false;
    },
  };
}
