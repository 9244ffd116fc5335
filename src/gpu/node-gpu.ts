// Dawn's WebGPU for Node (npm `webgpu`). Node-only: the browser bundle never imports this file.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

// One Dawn instance for the whole process, shared by every device (every loadModel): an instance
// holds native state that is never given back while the process runs, so one per load grew the
// process by megabytes a load. Instances must also outlive every device made from them (if one is
// garbage-collected the process later dies inside Dawn's event processing), so they are kept in
// module state, including one that found no adapter before the SwiftShader fallback.
let shared: Promise<GPU> | undefined;
const retained: GPU[] = [];

/** The process's Dawn GPU object, created on first use. */
export function nodeGpu(): Promise<GPU> {
  shared ??= createNodeGpu();
  // A failed start (no `webgpu` package, say) is not remembered: the next call tries again.
  shared.catch(() => (shared = undefined));
  return shared;
}

/**
 * Dawn's Vulkan loader wants XDG_RUNTIME_DIR; when the environment has none we give it a private
 * temporary folder and remove that folder when the process exits, so runs leave nothing in TMPDIR.
 */
function ensureRuntimeDir(): void {
  if (process.env.XDG_RUNTIME_DIR) return;
  const dir = mkdtempSync(join(tmpdir(), 'openelm-xdg-'));
  process.env.XDG_RUNTIME_DIR = dir;
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
}

async function createNodeGpu(): Promise<GPU> {
  ensureRuntimeDir();
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
  retained.push(first);
  if (await first.requestAdapter()) return first;
  // No Vulkan driver chosen and none found: fall back to Chromium's SwiftShader when it is there.
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    const second = create(flags);
    retained.push(second);
    return second;
  }
  return first;
}
