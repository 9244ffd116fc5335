// --json output must stay valid JSON, and JSON has no NaN or Infinity: a non-finite logit means the
// weights or the engine went wrong, so it is reported as an error naming the position, never printed.

/** Throws `position P: the logit of token T is NaN (...)` for the first non-finite value. */
export function checkFiniteRows(rows: readonly Float32Array[], positionOf: (row: number) => number): void {
  rows.forEach((r, i) => {
    for (let t = 0; t < r.length; t++) {
      if (!Number.isFinite(r[t])) {
        throw new Error(`position ${positionOf(i)}: the logit of token ${t} is ${r[t]}, not a finite number (non-finite weights, or an engine fault)`);
      }
    }
  });
}
