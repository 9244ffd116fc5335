// Dawn's WebGPU for Node (npm `webgpu`). Node-only: the browser bundle never imports this file.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
// Dawn's instances must outlive every device made from them: if one is garbage-collected the
// process later dies inside Dawn's event processing. They are kept here for the process's life.
const instances: GPU[] = [];

export async function nodeGpu(): Promise<GPU> {
  if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'xdg-'));
  const { create, globals } = (await import('webgpu')) as unknown as {
    create: (flags: string[]) => GPU;
    globals: Record<string, unknown>;
  };
  Object.assign(globalThis, globals);
  // A Linux machine without a GPU render node has no hardware Vulkan driver: go straight to
  // SwiftShader rather than letting the loader try (and loudly reject) Mesa's software drivers.
  if (process.platform === 'linux' && !process.env.VK_ICD_FILENAMES && !existsSync('/dev/dri') && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }
  // Expert knob: flags for Dawn's create(), e.g. OPENELM_DAWN_FLAGS=enable-dawn-features=disable_robustness
  // (drops the bounds checks on every buffer access: faster on SwiftShader, unsafe with a buggy kernel).
  const flags = (process.env.OPENELM_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const first = create(flags);
  instances.push(first);
  if (await first.requestAdapter()) return first;
  // No Vulkan driver chosen and none found: fall back to Chromium's SwiftShader when it is there.
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    const second = create(flags);
    instances.push(second);
    return second;
  }
  return first;
}
