// Which attention kernel one-token and verify passes run: the single-pass kernel or split-K.
import type { Gpu } from '../gpu/gpu.ts';
import { MIN_SPLIT_KEYS } from '../../kernels/attention_split.ts';

export type AttentionChoice = 'auto' | 'single' | 'split';
export const ATTENTION_CHOICES: readonly AttentionChoice[] = ['auto', 'single', 'split'];

/**
 * 'auto' picks split-K unless it cannot pay off. Its cost is one more dispatch a layer (the
 * combine) and, at a short context, nothing else: a row with at most MIN_SPLIT_KEYS keys is one
 * split. Its gain is parallelism: the single-pass kernel runs only numQ workgroups for a decode
 * step, which leaves a GPU mostly idle and walks a long context serially.
 * - A cache of at most 2 * MIN_SPLIT_KEYS positions never has more than two splits: 'single'.
 * - SwiftShader (the fallback adapter) runs workgroups on a few CPU cores, which numQ workgroups
 *   already keep busy; measured there (270M decode at 32/512/2048 tokens, and the kernel alone at
 *   the 270M shape), split-K showed no gain beyond a shared machine's noise: 'single'.
 * - Anywhere else: 'split'.
 */
export function chooseAttention(gpu: Gpu, asked: AttentionChoice, contextLength: number): 'single' | 'split' {
  if (!ATTENTION_CHOICES.includes(asked)) throw new Error(`attention must be ${ATTENTION_CHOICES.join(', ')}, got ${String(asked)}`);
  if (asked !== 'auto') return asked;
  if (contextLength <= 2 * MIN_SPLIT_KEYS || gpu.info.isFallback) return 'single';
  return 'split';
}
