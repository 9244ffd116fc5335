// Residual add: y += x over n floats.
import type { Gpu } from '../src/gpu/gpu.ts';
import builtIn from '../shaders/add.wgsl';
import { shaderSource } from '../src/gpu/kernel-variants.ts';
import { grid, makeDispatch, type Dispatch } from '../src/gpu/dispatch.ts';

const WG = 64;

export function addDispatch(gpu: Gpu, n: number, x: GPUBuffer, y: GPUBuffer, label = 'add'): Dispatch {
  const p = gpu.pipeline({ label: 'add', code: shaderSource('add', builtIn), bindings: ['uniform', 'read', 'write'], constants: { WG } });
  return makeDispatch(gpu, p, label, [n], [x, y], grid(gpu, Math.ceil(n / WG)));
}

export function addRef(x: Float32Array, y: Float32Array): Float32Array {
  return y.map((v, i) => v + x[i]);
}
