// Types of import-graph.mjs, for the tests that use it.
export interface GraphReport {
  files: number;
  cycles: string[][];
  long: { file: string; lines: number }[];
  folders: Record<string, string[]>;
}
export function importGraph(root?: string): { edges: Map<string, string[]>; lines: Map<string, number> };
export function cycles(edges: Map<string, string[]>): string[][];
export function report(root?: string): GraphReport;
