// Adapter and device acquisition, identical for Node and browsers: the caller hands in a
// `GPU` object (navigator.gpu in a page, Dawn's in Node; see node-gpu.ts).

export interface DeviceFeatures {
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
}

export interface AcquiredDevice {
  adapter: GPUAdapter;
  device: GPUDevice;
  info: { vendor: string; architecture: string; device: string; description: string; isFallback: boolean };
  features: DeviceFeatures;
}

export const NO_ADAPTER_HELP =
  'no WebGPU adapter found. In Node, install a Vulkan driver (on Debian: apt-get install -y chromium libvulkan1, ' +
  'then VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json); in a browser, use Chrome 113+ or Safari 18+ ' +
  '(headless Chromium needs --enable-unsafe-webgpu).';

/**
 * The limits the engine reads (weight splitting, workgroup sizes, dispatch grids). The device is
 * asked for the adapter's best of each, so that large weights need as few splits as possible;
 * anything else stays at the default. The doctor, the benchmark and webGpuSupport report these.
 */
export const ENGINE_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
] as const;

export type EngineLimit = (typeof ENGINE_LIMITS)[number];

/** The engine's limits out of an adapter's or a device's. */
export function engineLimits(limits: GPUSupportedLimits): Record<EngineLimit, number> {
  const out = {} as Record<EngineLimit, number>;
  for (const name of ENGINE_LIMITS) out[name] = Number(limits[name]);
  return out;
}

export interface DeviceOptions {
  powerPreference?: GPUPowerPreference;
  /**
   * 'adapter' (default): the adapter's best of each engine limit. 'default': WebGPU's default
   * limits (128 MiB a storage binding, 256 MiB a buffer), what a page gets that asks for nothing:
   * to check that the engine runs within them.
   */
  limits?: 'adapter' | 'default';
}

export async function acquireDevice(gpu: GPU, opts: DeviceOptions = {}): Promise<AcquiredDevice> {
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error(NO_ADAPTER_HELP);
  const requiredLimits = opts.limits === 'default' ? {} : engineLimits(adapter.limits);
  const wanted: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ label: 'openelm', requiredLimits, requiredFeatures });
  const ai = adapter.info;
  return {
    adapter,
    device,
    info: {
      vendor: ai.vendor,
      architecture: ai.architecture,
      device: ai.device,
      description: ai.description,
      isFallback: (ai as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    },
    features: {
      shaderF16: device.features.has('shader-f16'),
      subgroups: device.features.has('subgroups'),
      timestampQuery: device.features.has('timestamp-query'),
    },
  };
}
