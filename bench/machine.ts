// Facts about the machine a benchmark ran on, and the load around each measurement: the machine
// is shared, so every figure carries the load average and the CPU time other processes took
// while it was measured.
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem, type as osType } from 'node:os';
import type { Gpu } from '../src/gpu/gpu.ts';
import { engineLimits } from '../src/gpu/device.ts';

export interface LoadSample {
  /** /proc/loadavg (1, 5, 15 min) before and after. */
  loadavg_before: number[];
  loadavg_after: number[];
  /**
   * CPU time taken by other processes during the measurement, in percent of all cores
   * (/proc/stat busy time minus this process's own CPU time). 0-100.
   */
  other_cpu_pct: number;
  wall_ms: number;
}

export function readLoadavg(): number[] {
  try {
    return readFileSync('/proc/loadavg', 'utf8').trim().split(/\s+/).slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

/** Busy jiffies of all CPUs (user + nice + system + irq + softirq + steal), or NaN off Linux. */
function busyJiffies(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0);
  } catch {
    return NaN;
  }
}

const USER_HZ = 100;

export class LoadProbe {
  private readonly t0 = performance.now();
  private readonly load0 = readLoadavg();
  private readonly busy0 = busyJiffies();
  private readonly cpu0 = process.cpuUsage();

  stop(): LoadSample {
    const wallMs = performance.now() - this.t0;
    const busy = (busyJiffies() - this.busy0) / USER_HZ; // seconds, all processes
    const cpu = process.cpuUsage(this.cpu0);
    const ours = (cpu.user + cpu.system) / 1e6;
    const cores = cpus().length || 1;
    const other = Number.isFinite(busy) && wallMs > 0 ? Math.max(0, busy - ours) / ((wallMs / 1000) * cores) : 0;
    return {
      loadavg_before: this.load0,
      loadavg_after: readLoadavg(),
      other_cpu_pct: Math.min(100, Math.round(other * 1000) / 10),
      wall_ms: wallMs,
    };
  }
}

/** Runs `fn` between two load samples. */
export async function withLoad<T>(fn: () => Promise<T>): Promise<{ value: T; load: LoadSample }> {
  const probe = new LoadProbe();
  const value = await fn();
  return { value, load: probe.stop() };
}

export interface MachineFacts {
  cpu_model: string;
  cores: number;
  memory_bytes: number;
  os: string;
  node: string;
  loadavg_start: number[];
  adapter: Gpu['info'];
  features: string[];
  limits: Record<string, number>;
}

export function machineFacts(gpu: Gpu): MachineFacts {
  const c = cpus();
  return {
    cpu_model: c[0]?.model ?? 'unknown',
    cores: c.length,
    memory_bytes: totalmem(),
    os: `${osType()} ${release()}`,
    node: process.version,
    loadavg_start: readLoadavg(),
    adapter: gpu.info,
    features: [...gpu.device.features].map(String).sort(),
    limits: engineLimits(gpu.limits), // the ones the engine relies on, and so the figures depend on
  };
}
