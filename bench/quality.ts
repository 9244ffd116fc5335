// How far a weight format moves the model's predictions: top-1 agreement and mean KL divergence
// of its next-token distributions against a reference format's, over the same token stream.

export interface Agreement {
  reference: string;
  positions: number;
  top1: number;
  mean_kl: number;
}

function logSumExp(x: Float32Array): number {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  return m + Math.log(s);
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** KL(reference || other) averaged over rows, and the fraction of rows with the same argmax. */
export function agreement(reference: readonly Float32Array[], other: readonly Float32Array[], referenceName: string): Agreement {
  if (reference.length !== other.length) throw new Error(`agreement: ${reference.length} reference rows, ${other.length} others`);
  let kl = 0;
  let same = 0;
  reference.forEach((a, r) => {
    const b = other[r];
    const la = logSumExp(a);
    const lb = logSumExp(b);
    for (let i = 0; i < a.length; i++) {
      const lp = a[i] - la;
      kl += Math.exp(lp) * (lp - (b[i] - lb));
    }
    if (argmax(a) === argmax(b)) same++;
  });
  const n = Math.max(1, reference.length);
  return { reference: referenceName, positions: reference.length, top1: same / n, mean_kl: kl / n };
}
