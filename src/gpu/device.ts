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

// The limits a language model leans on; we ask for everything the adapter offers for these so that
// large weights need as few splits as possible. Anything else stays at the default.
const LIMITS_TO_RAISE = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
] as const;

export async function acquireDevice(gpu: GPU, opts: { powerPreference?: GPUPowerPreference } = {}): Promise<AcquiredDevice> {
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error(NO_ADAPTER_HELP);
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMITS_TO_RAISE) requiredLimits[name] = adapter.limits[name];
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
