// A forward pass is a list of ops: kernel dispatches, and buffer copies between them. Consecutive
// dispatches share one compute pass; everything goes into one command encoder.
import { encodeDispatches, type Dispatch } from '../gpu/dispatch.ts';

export interface CopyOp {
  kind: 'copy';
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
}
export type Op = { kind: 'dispatch'; d: Dispatch } | CopyOp;

export function dispatchOps(ds: readonly Dispatch[]): Op[] {
  return ds.map((d) => ({ kind: 'dispatch', d }));
}

export function encodeOps(enc: GPUCommandEncoder, ops: readonly Op[], label: string): void {
  let run: Dispatch[] = [];
  const flush = () => {
    if (run.length === 0) return;
    const pass = enc.beginComputePass({ label });
    encodeDispatches(pass, run);
    pass.end();
    run = [];
  };
  for (const op of ops) {
    if (op.kind === 'dispatch') run.push(op.d);
    else {
      flush();
      enc.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.size);
    }
  }
  flush();
}

export function countDispatches(ops: readonly Op[]): number {
  return ops.filter((o) => o.kind === 'dispatch').length;
}
