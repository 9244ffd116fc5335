// Shader variants: WGSL files may hold `#if NAME` / `#elif NAME` / `#else` / `#endif` lines.
// They are resolved by wgsl-preprocessor, whose tag expects a template literal, so the file is
// cut at each `#if NAME` and the define's value is passed as the template argument.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';

export type Defines = Record<string, boolean>;

export function preprocess(source: string, defines: Defines = {}): string {
  const strings: string[] = [];
  const values: boolean[] = [];
  const re = /#(if|elif)[ \t]+([A-Za-z_][A-Za-z0-9_]*)/g;
  let last = 0;
  for (const m of source.matchAll(re)) {
    const name = m[2];
    if (!(name in defines)) throw new Error(`shader define ${name} has no value (known: ${Object.keys(defines).join(', ') || 'none'})`);
    strings.push(source.slice(last, m.index) + `#${m[1]} `);
    values.push(defines[name]);
    last = m.index + m[0].length;
  }
  strings.push(source.slice(last));
  const raw = Object.assign([...strings], { raw: strings }) as unknown as TemplateStringsArray;
  return wgsl(raw, ...values);
}
