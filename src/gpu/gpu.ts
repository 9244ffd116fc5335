// One device and the things every kernel needs from it: labelled buffers, a pipeline cache keyed
// by source and constants, explicit bind group layouts, uploads, readbacks and error tracking.
import type { AcquiredDevice, DeviceFeatures } from './device.ts';

export type BindingKind = 'uniform' | 'read' | 'write';

export interface PipelineSpec {
  label: string;
  code: string;
  entryPoint?: string;
  bindings: readonly BindingKind[];
  constants?: Record<string, number>;
}

export interface Pipeline {
  label: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  bindings: readonly BindingKind[];
}

export class Gpu {
  readonly device: GPUDevice;
  readonly features: DeviceFeatures;
  readonly limits: GPUSupportedLimits;
  readonly info: AcquiredDevice['info'];
  private readonly pipelines = new Map<string, Pipeline>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private firstError: string | undefined;
  private lost: string | undefined;
  private bytesAllocated = 0;
  private peak = 0;
  private readonly sizes = new WeakMap<GPUBuffer, number>();

  constructor(acquired: AcquiredDevice) {
    this.device = acquired.device;
    this.features = acquired.features;
    this.limits = acquired.device.limits;
    this.info = acquired.info;
    // Dawn in Node only prints validation errors; a failed bind group makes a dispatch a silent
    // no-op. Record the first one so that the next readback throws instead of returning garbage.
    this.device.addEventListener('uncapturederror', (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      if (!this.firstError) this.firstError = msg;
    });
    void this.device.lost.then((info) => {
      this.lost = `${info.reason}: ${info.message}`;
    });
  }

  /** Throws if the device reported an error or was lost since the last check. */
  checkErrors(): void {
    if (this.lost && this.lost !== 'destroyed: ') throw new Error(`GPU device lost (${this.lost})`);
    if (this.firstError) {
      const e = this.firstError;
      this.firstError = undefined;
      throw new Error(`GPU error: ${e}`);
    }
  }

  get allocatedBytes(): number {
    return this.bytesAllocated;
  }
  get peakAllocatedBytes(): number {
    return this.peak;
  }

  createBuffer(label: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    // WebGPU wants sizes in multiples of 4 and refuses zero-sized bindings.
    const padded = Math.max(16, Math.ceil(size / 16) * 16);
    if (padded > this.limits.maxBufferSize) {
      throw new Error(
        `buffer "${label}" needs ${fmtBytes(padded)} but this GPU allows ${fmtBytes(this.limits.maxBufferSize)} per buffer (maxBufferSize); use a smaller model, a smaller context or a quantized --dtype`,
      );
    }
    const buf = this.device.createBuffer({ label, size: padded, usage });
    this.sizes.set(buf, padded);
    this.bytesAllocated += padded;
    this.peak = Math.max(this.peak, this.bytesAllocated);
    return buf;
  }

  destroyBuffer(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size !== undefined) {
      this.bytesAllocated -= size;
      this.sizes.delete(buf);
    }
    buf.destroy();
  }

  /** A storage buffer holding `data` (padded to 16 bytes). */
  upload(label: string, data: ArrayBufferView, extraUsage: GPUBufferUsageFlags = 0): GPUBuffer {
    const buf = this.createBuffer(label, data.byteLength, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage);
    this.write(buf, data);
    return buf;
  }

  write(buf: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    // writeBuffer needs a multiple of 4 bytes.
    const len = data.byteLength;
    if (len % 4 === 0) {
      this.device.queue.writeBuffer(buf, offset, data.buffer, data.byteOffset, len);
    } else {
      const tmp = new Uint8Array(Math.ceil(len / 4) * 4);
      tmp.set(new Uint8Array(data.buffer, data.byteOffset, len));
      this.device.queue.writeBuffer(buf, offset, tmp);
    }
  }

  /** A uniform buffer from 32-bit words (u32 unless a float is given as {f: x}). */
  uniform(label: string, words: readonly (number | { f: number })[]): GPUBuffer {
    const data = new ArrayBuffer(Math.max(16, Math.ceil((words.length * 4) / 16) * 16));
    const u = new Uint32Array(data);
    const f = new Float32Array(data);
    words.forEach((w, i) => {
      if (typeof w === 'number') {
        if (!Number.isInteger(w) || w < 0 || w > 0xffffffff) throw new Error(`uniform ${label}[${i}] = ${w} is not a u32`);
        u[i] = w;
      } else f[i] = w.f;
    });
    const buf = this.createBuffer(label, data.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.device.queue.writeBuffer(buf, 0, data);
    return buf;
  }

  /** Copies `size` bytes of `src` from `offset` back to the CPU. */
  async read(src: GPUBuffer, size: number, offset = 0): Promise<ArrayBuffer> {
    const n = Math.ceil(size / 4) * 4;
    const staging = this.device.createBuffer({ label: 'readback', size: n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder({ label: 'readback' });
    enc.copyBufferToBuffer(src, offset, staging, 0, n);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, size);
    staging.unmap();
    staging.destroy();
    this.checkErrors();
    return out;
  }

  async readF32(src: GPUBuffer, count: number, offsetElems = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(src, count * 4, offsetElems * 4));
  }

  async readU32(src: GPUBuffer, count: number, offsetElems = 0): Promise<Uint32Array> {
    return new Uint32Array(await this.read(src, count * 4, offsetElems * 4));
  }

  bindGroupLayout(bindings: readonly BindingKind[]): GPUBindGroupLayout {
    const key = bindings.join(',');
    let layout = this.layouts.get(key);
    if (!layout) {
      layout = this.device.createBindGroupLayout({
        label: `layout(${key})`,
        entries: bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
        })),
      });
      this.layouts.set(key, layout);
    }
    return layout;
  }

  pipeline(spec: PipelineSpec): Pipeline {
    const entryPoint = spec.entryPoint ?? 'main';
    const key = JSON.stringify([spec.code, entryPoint, spec.bindings, spec.constants ?? {}]);
    let p = this.pipelines.get(key);
    if (!p) {
      const layout = this.bindGroupLayout(spec.bindings);
      const module = this.device.createShaderModule({ label: spec.label, code: spec.code });
      const pipeline = this.device.createComputePipeline({
        label: spec.label,
        layout: this.device.createPipelineLayout({ label: spec.label, bindGroupLayouts: [layout] }),
        compute: { module, entryPoint, constants: spec.constants },
      });
      p = { label: spec.label, pipeline, layout, bindings: spec.bindings };
      this.pipelines.set(key, p);
    }
    return p;
  }

  bindGroup(p: Pipeline, buffers: readonly GPUBuffer[], label = p.label): GPUBindGroup {
    if (buffers.length !== p.bindings.length) {
      throw new Error(`${p.label}: ${buffers.length} buffers bound, pipeline has ${p.bindings.length} bindings`);
    }
    return this.device.createBindGroup({
      label,
      layout: p.layout,
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }

  destroy(): void {
    this.device.destroy();
  }
}

export function fmtBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}
