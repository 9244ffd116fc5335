// Shader variants and shared snippets. WGSL files may hold `#include NAME` lines, replaced by the
// snippet shaders/include/NAME.wgsl (snippets may include others; each is pasted once a shader,
// as WGSL forbids a second definition), and `#if NAME` / `#elif NAME` / `#else` / `#endif`
// lines, resolved by wgsl-preprocessor. Its tag expects a template literal, so the file is cut at
// each `#if NAME` and the define's value is passed as the template argument.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import argmaxReduce from '../../shaders/include/argmax_reduce.wgsl';
import drawChunk from '../../shaders/include/draw_chunk.wgsl';
import half from '../../shaders/include/half.wgsl';
import isNan from '../../shaders/include/is_nan.wgsl';
import matmulOut from '../../shaders/include/matmul_out.wgsl';
import quantDecode from '../../shaders/include/quant_decode.wgsl';
import silu from '../../shaders/include/silu.wgsl';

export type Defines = Record<string, boolean>;

/** The snippets `#include NAME` can name: shaders/include/NAME.wgsl. */
export const SHADER_INCLUDES: Readonly<Record<string, string>> = {
  argmax_reduce: argmaxReduce,
  draw_chunk: drawChunk,
  half,
  is_nan: isNan,
  matmul_out: matmulOut,
  quant_decode: quantDecode,
  silu,
};

const INCLUDE = /^[ \t]*#include[ \t]+(\S+)[ \t]*$/gm;

/** Pastes the snippets named by `#include` lines (recursively, each once). */
export function resolveIncludes(source: string, includes: Readonly<Record<string, string>> = SHADER_INCLUDES): string {
  const done = new Set<string>();
  const expand = (text: string, chain: string[]): string =>
    text.replace(INCLUDE, (_, name: string) => {
      if (chain.includes(name)) throw new Error(`shader include cycle: ${[...chain, name].join(' -> ')}`);
      if (!Object.hasOwn(includes, name)) throw new Error(`shader include ${name} is unknown (known: ${Object.keys(includes).join(', ') || 'none'})`);
      if (done.has(name)) return `// #include ${name}: pasted above`;
      done.add(name);
      return expand(includes[name], [...chain, name]).replace(/\n$/, '');
    });
  return expand(source, []);
}

export function preprocess(source: string, defines: Defines = {}): string {
  const text = resolveIncludes(source);
  const strings: string[] = [];
  const values: boolean[] = [];
  const re = /#(if|elif)[ \t]+([A-Za-z_][A-Za-z0-9_]*)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    const name = m[2];
    if (!(name in defines)) throw new Error(`shader define ${name} has no value (known: ${Object.keys(defines).join(', ') || 'none'})`);
    strings.push(text.slice(last, m.index) + `#${m[1]} `);
    values.push(defines[name]);
    last = m.index + m[0].length;
  }
  strings.push(text.slice(last));
  const raw = Object.assign([...strings], { raw: strings }) as unknown as TemplateStringsArray;
  return wgsl(raw, ...values);
}
