// Strict command-line parsing: every option is declared; anything else is an error that names it.

export type OptionKind = 'flag' | 'string' | 'list';
export interface OptionSpec {
  kind: OptionKind;
  help: string;
  value?: string; // the value's name in --help
}
export type Spec = Record<string, OptionSpec>;
export type Parsed = { flags: Set<string>; values: Map<string, string>; lists: Map<string, string[]> };

export class UsageError extends Error {}

/** Runs `f`, turning any error it throws into a UsageError (exit code 2): for validators shared with the library. */
export function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw e instanceof UsageError ? e : new UsageError((e as Error).message);
  }
}

/** Token ids given on the command line must exist in the model's vocabulary. */
export function checkIdsInVocab(ids: readonly number[], vocabSize: number, what: string): void {
  const i = ids.findIndex((id) => id >= vocabSize);
  if (i >= 0) throw new UsageError(`${what}: token id ${ids[i]} (position ${i}) is outside the model's vocabulary of ${vocabSize} (ids 0..${vocabSize - 1})`);
}

export function parseArgs(argv: readonly string[], spec: Spec, command: string): Parsed {
  const out: Parsed = { flags: new Set(), values: new Map(), lists: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new UsageError(`${command}: unexpected argument "${arg}" (options start with --; see openelm ${command} --help)`);
    let name = arg.slice(2);
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    // Hugging Face spells options with underscores, we with dashes: accept both.
    const canonical = [name, name.replace(/_/g, '-'), name.replace(/-/g, '_')].find((k) => Object.hasOwn(spec, k));
    if (!canonical) {
      throw new UsageError(`${command}: unknown option --${name} (known: ${Object.keys(spec).map((k) => `--${k}`).join(', ')})`);
    }
    const s = spec[canonical];
    if (s.kind === 'flag') {
      if (inline !== undefined) throw new UsageError(`${command}: --${name} takes no value`);
      out.flags.add(canonical);
    } else if (s.kind === 'string') {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new UsageError(`${command}: --${name} needs a value (${s.value ?? 'VALUE'})`);
      out.values.set(canonical, v);
    } else {
      const vals: string[] = inline !== undefined ? [inline] : [];
      while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) vals.push(argv[++i]);
      if (vals.length === 0) throw new UsageError(`${command}: --${name} needs at least one ${s.value ?? 'value'}`);
      out.lists.set(canonical, [...(out.lists.get(canonical) ?? []), ...vals]);
    }
  }
  return out;
}

export function helpText(command: string, summary: string, spec: Spec): string {
  const lines = [`openelm ${command}: ${summary}`, '', 'Options:'];
  const width = Math.max(...Object.entries(spec).map(([k, s]) => k.length + (s.value ? s.value.length + 1 : 0))) + 4;
  for (const [k, s] of Object.entries(spec)) {
    const left = `--${k}${s.value ? ` ${s.value}` : ''}`;
    lines.push(`  ${left.padEnd(width)} ${s.help}`);
  }
  return lines.join('\n');
}

export function intOption(p: Parsed, name: string, min: number, fallback: number): number {
  const v = p.values.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export function parseIdList(text: string, what: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => s === '')) throw new UsageError(`${what} must be comma-separated token ids like 1,5,9; got "${text}"`);
  return parts.map((s) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`${what}: "${s}" is not a token id (a non-negative integer)`);
    return Number(s);
  });
}
